"""Command line: ``msinet-reid <command>`` (also ``python -m msinet_reid <command>``)."""
import argparse
import dataclasses
from typing import List, Optional

from .demo import DemoConfig, run_demo


def _add_demo(commands) -> None:
    parser = commands.add_parser(
        'demo', help='train MSINet on synthetic data on the CPU and show Rank-1/mAP',
        description='Generate a small synthetic Market-1501-style dataset (once), evaluate '
                    "an untrained MSINet, train it with the paper's losses "
                    '(ImageMSINetEngine) and evaluate again.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = DemoConfig()
    for field in dataclasses.fields(DemoConfig):
        flag = '--' + field.name.replace('_', '-')
        default = getattr(defaults, field.name)
        parser.add_argument(flag, type=type(default), default=default, help=field.metadata['help'])
    parser.set_defaults(run=lambda args: run_demo(DemoConfig(**{
        field.name: getattr(args, field.name) for field in dataclasses.fields(DemoConfig)
    })))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='msinet-reid', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    _add_demo(commands)
    args = parser.parse_args(argv)
    args.run(args)
    return 0
