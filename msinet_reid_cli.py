"""The ``msinet-reid`` command's launcher (also ``python -m msinet_reid_cli``).

The command owns its process, so it may hide torchreid's import-time warning that its
Cython evaluation is not compiled: this package ranks with its own code, and a user can
do nothing about it. That needs a filter set before ``msinet_reid`` imports torchreid, hence
a module outside the package; the library itself leaves its users' warnings alone.
"""
import sys
import warnings


def main() -> int:
    warnings.filterwarnings('ignore', message='Cython evaluation', category=UserWarning)
    from msinet_reid.cli import main as run

    return run()


if __name__ == '__main__':
    sys.exit(main())
