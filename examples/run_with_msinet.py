"""Run a SpCL-family training script with the MSINet encoders registered.

SpCL, IDM and their kin pick the backbone with ``models.create(args.arch, ...)`` from
their ``<project>.models`` package. This launcher adds MSINet to that factory (with the
outputs that project's trainers unpack), then runs the script as ``python SCRIPT ARGS``
would, so ``-a msinet`` works without editing it. Run it from the project's checkout:
the working directory goes on ``sys.path``, as IDM's scripts (IDM has no setup.py) put
it there themselves. From a SpCL checkout::

    python /path/to/msinet-reid/examples/run_with_msinet.py spcl \\
        examples/spcl_train_usl.py -d market1501 -a msinet --iters 400

and from an IDM checkout (``--featureSize 768``: XBM stores MSINet's pooled features;
``--stage`` 0-3; ``train_baseline.py -a msinet`` likewise)::

    python /path/to/msinet-reid/examples/run_with_msinet.py idm \\
        examples/train_idm.py -ds market1501 -dt msmt17 -a msinet_idm \\
        --use-xbm --featureSize 768 --stage 0

The same, as the one line to add to the script itself after ``from spcl import models``
(or ``from idm import models``)::

    from msinet_reid.integrations import register_models; register_models(models.__factory)
"""
import importlib
import os
import runpy
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Optional

from msinet_reid.integrations import register_models


def import_models(project: str) -> ModuleType:
    """``<project>.models``, installed or in the working directory (a checkout)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # last, as IDM's scripts do: an install comes first
    try:
        return importlib.import_module(f'{project}.models')
    except ModuleNotFoundError as error:
        if error.name not in (project, f'{project}.models'):
            raise
        sys.exit(f'cannot import {project}.models ({error}): run this launcher from the root '
                 f'of your {project} checkout (where the {project}/ package folder is), or '
                 f'install {project}')


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        sys.exit(f'usage: {Path(__file__).name} PROJECT SCRIPT [ARGS...]  '
                 f'(PROJECT: the package whose .models has the factory, e.g. spcl or idm)')
    project, script, *args = argv
    models = import_models(project)
    register_models(vars(models)['__factory'])
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))  # as `python SCRIPT` does
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
