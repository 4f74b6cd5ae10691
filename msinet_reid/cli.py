"""Command line: ``msinet-reid <command>`` (also ``python -m msinet_reid <command>``)."""
import argparse
import dataclasses
import functools
from pathlib import Path
from typing import List, Optional

import numpy as np

from .atomic import atomic_write
from .demo import DemoConfig, run_demo
from .models import list_models
from .weights import PretrainedWeightsError


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


def _add_model_command(commands, name: str, run, help: str,
                       description: str) -> argparse.ArgumentParser:
    """A subcommand working on a trained checkpoint of a registered MSINet model."""
    parser = commands.add_parser(name, help=help, description=description,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--model', default='msinet', choices=list_models(),
                        help='registered MSINet model the checkpoint belongs to')
    parser.add_argument('--weights', required=True, type=Path,
                        help="trained checkpoint (torchreid engine's or a state_dict)")
    parser.add_argument('--height', type=int, default=256, help='input image height')
    parser.add_argument('--width', type=int, default=128, help='input image width')
    parser.set_defaults(run=run)
    return parser


def _export(args: argparse.Namespace) -> None:
    from .deploy import load_trained
    from .export import export_onnx, require_onnxruntime

    require_onnxruntime()  # fail before loading anything
    path = export_onnx(load_trained(args.model, args.weights), args.out,
                       height=args.height, width=args.width, opset=args.opset)
    print(f'Wrote {path}: input images (batch, 3, {args.height}, {args.width}), '
          f'output features (batch, 768); checked with onnxruntime')


def _add_export(commands) -> None:
    parser = _add_model_command(
        commands, 'export', _export,
        help='export a trained model to ONNX (needs msinet-reid[onnx])',
        description='Export the inference model (BatchNorm folded, classifiers dropped) of a '
                    'trained checkpoint to ONNX with a dynamic batch axis, and check its '
                    'features against PyTorch with onnxruntime.',
    )
    parser.add_argument('--out', required=True, type=Path, help='ONNX file to write')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, 'wb') as file:  # a file object: np.save would add '.npy' to a name
        np.save(file, array)


def _extract(args: argparse.Namespace) -> None:
    import torch

    from .deploy import InferenceModel, load_trained
    from .extract import extract_image_features, find_images

    paths = find_images(args.images)
    model = InferenceModel(load_trained(args.model, args.weights))
    features = extract_image_features(
        model, paths, (args.height, args.width), batch_size=args.batch_size,
        workers=args.workers, device=torch.device(args.device),
    )
    atomic_write(args.out, functools.partial(_save_npy, features))
    listing = args.out.with_suffix('.txt')
    listing.write_text(''.join(f'{path}\n' for path in paths))
    print(f'Wrote {features.shape[0]} x {features.shape[1]} features to {args.out}; '
          f'row i is the image on line i of {listing}')


def _add_extract(commands) -> None:
    parser = _add_model_command(
        commands, 'extract', _extract,
        help='extract features of a folder of images with a trained model',
        description='Compute the eval-mode features of every image under a folder '
                    '(recursively, sorted by path) and save them as a .npy array, with the '
                    'image paths in a .txt file of the same name.',
    )
    parser.add_argument('--images', required=True, type=Path, help='folder of images')
    parser.add_argument('--out', required=True, type=Path, help='.npy file to write')
    parser.add_argument('--batch-size', type=int, default=64, help='images per batch')
    parser.add_argument('--workers', type=int, default=2, help='image loading processes')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='msinet-reid', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    _add_demo(commands)
    _add_export(commands)
    _add_extract(commands)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (PretrainedWeightsError, FileNotFoundError, ImportError) as error:
        parser.exit(2, f'msinet-reid {args.command}: error: {error}\n')
    return 0
