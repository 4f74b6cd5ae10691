"""Command line: ``msinet-reid <command>`` (also ``python -m msinet_reid_cli <command>``)."""
import argparse
import dataclasses
import functools
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .atomic import atomic_write
from .demo import DemoConfig, run_demo
from .deploy.checks import ExportCheckError
from .deploy.quantize import (CALIBRATION_METHODS, DEFAULT_CALIBRATION, MIN_COSINE,
                              QuantizationError)
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
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> None:
    run_demo(DemoConfig(**{field.name: getattr(args, field.name)
                           for field in dataclasses.fields(DemoConfig)}))


def _add_model_command(commands, name: str, run, help: str, description: str,
                       exported: bool = True) -> argparse.ArgumentParser:
    """A subcommand working on a trained checkpoint of a registered MSINet model."""
    parser = commands.add_parser(name, help=help, description=description,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--model', choices=list_models(),
                        help='registered MSINet model the checkpoint belongs to (default: the '
                             "model card's beside the checkpoint, else msinet)")
    parser.add_argument('--weights', required=True, type=Path,
                        help="trained checkpoint (torchreid engine's or a state_dict: .pth, "
                             '.pth.tar)' + (', or an exported model run on its runtime on '
                                            'the CPU: .onnx (onnxruntime), .xml (OpenVINO), '
                                            '.pt (TorchScript)' if exported else ''))
    parser.add_argument('--height', type=int, help="input image height (default: the model "
                                                   "card's, else 256)")
    parser.add_argument('--width', type=int, help="input image width (default: the model "
                                                  "card's, else 128)")
    parser.set_defaults(run=lambda args: run(_with_card(args)))
    return parser


def _with_card(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``--model``, ``--height`` and ``--width`` that were not given taken
    from the model card beside a checkpoint (which warns when the weights are not the
    card's), else the defaults, msinet at 256x128; an exported file's size is its own
    (:func:`_feature_model`)."""
    from .deploy.runtimes import format_of
    from .model_card import card_settings

    if format_of(args.weights) is not None:
        return args
    card = (card_settings(args.weights) if args.weights.is_file() else None) or {}
    for key, default in (('model', 'msinet'), ('height', 256), ('width', 128)):
        if getattr(args, key) is None:
            setattr(args, key, card.get(key, default))
    return args


def _export(args: argparse.Namespace) -> None:
    from .deploy import load_trained
    from .deploy.quantize import split_calibration
    from .deploy.runtimes import INT8_FORMATS, export_model, int8_path, quantize_model, require

    if args.fp16 and args.format != 'onnx':
        raise ValueError(f'--fp16 applies to --format onnx; {args.format} runs fp32 files '
                         f'(OpenVINO picks bf16 at run time: extract --precision bf16)')
    if args.int8 and args.format not in INT8_FORMATS:
        raise ValueError(f'--int8 applies to --format {" and ".join(INT8_FORMATS)}')
    if args.int8 and args.calib is None:
        raise ValueError('--int8 needs --calib DIR, a folder of crops to calibrate on')
    if not args.int8 and any(option is not None for option in
                             (args.calib, args.check, args.int8_out, args.calib_method)):
        raise ValueError('--calib, --check, --calib-method and --int8-out only apply '
                         'with --int8')
    require(args.format, int8=args.int8)  # fail before loading anything
    if args.int8:  # and before the fp32 export, on calibration crops that cannot serve
        calibration, check = split_calibration(args.calib, args.check, args.num_calibration)
    options = {'opset': args.opset} if args.format == 'onnx' else {}
    path = export_model(load_trained(args.model, args.weights), args.out, args.format,
                        args.height, args.width, fp16=args.fp16, **options)
    print(f'Wrote {path}: input images (batch, 3, {args.height}, {args.width}), '
          f'output features (batch, 768){" in float16" if args.fp16 else ""}; checked '
          f'against PyTorch with {RUNTIMES[args.format]}')
    if args.int8:
        report = quantize_model(path, args.int8_out or int8_path(path), calibration,
                                check=check, method=args.calib_method,
                                min_cosine=args.min_cosine)
        print(f'Wrote {report}')


RUNTIMES = {'onnx': 'onnxruntime', 'openvino': 'OpenVINO', 'torchscript': 'torch.jit'}


def _add_export(commands) -> None:
    parser = _add_model_command(
        commands, 'export', _export, exported=False,
        help='export a trained model to ONNX, OpenVINO or TorchScript',
        description='Export the inference model (BatchNorm folded, classifiers dropped) of a '
                    'trained checkpoint with a dynamic batch axis, and check its features '
                    'against PyTorch on its own runtime: ONNX (.onnx, onnxruntime; needs '
                    'msinet-reid[onnx]), OpenVINO IR (.xml and .bin; needs '
                    'msinet-reid[openvino]) or TorchScript (.pt, torch.jit.load).',
    )
    parser.add_argument('--format', default='onnx', choices=list(RUNTIMES),
                        help='file format (and runtime) to export to')
    parser.add_argument('--out', required=True, type=Path,
                        help='file to write: .onnx, .xml (OpenVINO) or .pt (TorchScript)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    parser.add_argument('--fp16', action='store_true',
                        help='ONNX in float16 (weights, activations, input and output), for '
                             "GPU runtimes and TensorRT's ONNX parser; checked on the CPU "
                             'against the fp32 features (cosine similarity >= 0.999)')
    int8 = parser.add_argument_group(
        'int8', 'also write an int8 model (onnx: onnxruntime static quantization; openvino: '
                'NNCF), calibrated on crops and checked against fp32')
    int8.add_argument('--int8', action='store_true', help='quantize the exported model')
    int8.add_argument('--calib', type=Path,
                      help='folder of crops (searched recursively) to calibrate on, e.g. '
                           "a torchreid dataset's training images; needed by --int8")
    int8.add_argument('--check', type=Path, default=None,
                      help='folder of held-out crops to check the int8 features on; '
                           'without it, a fifth of --calib (up to 64) is kept out of '
                           'calibration for the check')
    int8.add_argument('--num-calibration', type=int, default=256,
                      help='crops to calibrate on, drawn at random from --calib')
    int8.add_argument('--calib-method', default=None, choices=CALIBRATION_METHODS,
                      help=f'how onnxruntime chooses activation ranges (default: '
                           f'{DEFAULT_CALIBRATION}); NNCF (openvino) has its own')
    int8.add_argument('--min-cosine', type=float, default=MIN_COSINE,
                      help='refuse the int8 model below this mean cosine similarity '
                           'to the fp32 features on the held-out crops')
    int8.add_argument('--int8-out', type=Path, default=None,
                      help='int8 file to write; without it, --out with .int8 before its '
                           'suffix (model.int8.onnx, model.int8.xml)')


DATA_HELP = ("data of one's own: a folder PATH/train/<identity>/<camera>/<image> (query/ and "
             'gallery/ alike), or a CSV list file with the header path,identity,camera,split '
             '(docs/data.md)')


def _add_data_source(parser: argparse.ArgumentParser, dataset_help: str) -> None:
    """``--root`` and ``--dataset`` (a torchreid dataset), or ``--data`` (one's own, with
    ``--test-ids`` and ``--seed``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--root', type=Path,
                        help="torchreid's data root (the folder holding the dataset)")
    source.add_argument('--data', type=Path, metavar='PATH', help=DATA_HELP)
    # No default shown: evaluate's market1501 applies only with --root (_data_source).
    parser.add_argument('--dataset', default=argparse.SUPPRESS, help=dataset_help)
    held_out = parser.add_argument_group(
        'held-out identities', 'for --data without query and gallery images')
    held_out.add_argument('--test-ids', type=int, default=0, metavar='N',
                          help='hold N training identities out as query and gallery (the '
                               'first image of each camera but the first is a query)')
    held_out.add_argument('--seed', type=int, default=0,
                          help='seed of the draw of the held-out identities')


def _data_source(args: argparse.Namespace, default_dataset: Optional[str] = None
                 ) -> Optional[str]:
    """The torchreid dataset that ``--root`` holds; ``None`` with ``--data``. Refuses the
    options of one source given with the other."""
    dataset = getattr(args, 'dataset', default_dataset)
    if args.data is not None:
        if hasattr(args, 'dataset'):
            raise ValueError('--dataset names a torchreid dataset under --root; --data '
                             'reads its own: leave --dataset out')
        return None
    if args.test_ids or args.seed:
        raise ValueError('--test-ids and --seed hold identities of --data out; a torchreid '
                         "dataset has its own query and gallery: leave them out")
    if dataset is None:
        raise ValueError('--root needs --dataset, the torchreid dataset under it '
                         '(market1501, msmt17, veri, ...)')
    return dataset


def _add_loading_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument('--batch-size', type=int, default=batch_size, help='images per batch')
    parser.add_argument('--workers', type=int, default=2, help='image loading processes')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--compile', action='store_true',
                        help='run the model compiled (msinet_reid.deploy.compile_model: '
                             'torch.compile, and CUDA graphs on a GPU) for batches up to '
                             '--batch-size; compiling takes a while before the first batch')
    parser.add_argument('--precision', default='f32', choices=['f32', 'bf16'],
                        help='inference precision of an OpenVINO (.xml) model; bf16 needs a '
                             'CPU with bf16 instructions (AVX-512 BF16 or AMX)')


def _feature_model(args: argparse.Namespace):
    """The model ``--weights`` names and the device it runs on: an exported file (.onnx,
    .xml, .pt) on its runtime, on the CPU; else the checkpoint's inference model (BatchNorm
    folded), compiled with ``--compile``."""
    import torch

    from .deploy import InferenceModel, compile_model, load_trained
    from .deploy.runtimes import format_of, load_exported

    if format_of(args.weights) is None:
        if args.precision != 'f32':
            raise ValueError('--precision applies to OpenVINO (.xml) models; a checkpoint '
                             'runs in float32')
        device = torch.device(args.device)
        model = load_trained(args.model, args.weights)
        if args.compile:
            return compile_model(model, device, (args.height, args.width),
                                 max_batch_size=args.batch_size), device
        return InferenceModel(model).to(device), device
    if args.compile:
        raise ValueError(f'--compile compiles PyTorch checkpoints; {args.weights.name} runs '
                         f'on its own runtime as it is: leave --compile out')
    model, (height, width) = load_exported(args.weights, args.precision)
    if args.height is None and args.width is None:
        args.height, args.width = height, width
    if (height, width) != (args.height, args.width):
        raise ValueError(f'{args.weights} takes {height}x{width} images, not '
                         f'{args.height}x{args.width}: pass --height {height} --width {width}')
    return model, torch.device('cpu')  # every runtime here reads host memory


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, 'wb') as file:  # a file object: np.save would add '.npy' to a name
        np.save(file, array)


def _readable(paths: List[Path], args: argparse.Namespace) -> Tuple[List[Path], list]:
    """``paths`` less the images that do not decode, and those images: refused without
    ``--skip-unreadable``, left out with it."""
    from .data.images import UnreadableImagesError, check_images

    unreadable = check_images(paths, workers=max(1, args.workers), progress=True)
    if unreadable and not args.skip_unreadable:
        raise UnreadableImagesError(
            unreadable, len(paths),
            'Re-download or restore them, remove them, or pass --skip-unreadable to go on '
            'without them. Nothing was written.')
    if len(unreadable) == len(paths):
        raise ValueError(f'none of the {len(paths)} images can be read: '
                         f'{unreadable[0].path}: {unreadable[0].reason}, ...')
    skipped = {image.path for image in unreadable}
    return [path for path in paths if str(path) not in skipped], unreadable


def _write_lines(path: Path, lines: List[str]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(''.join(f'{line}\n' for line in lines)))


def _extract(args: argparse.Namespace) -> None:
    from .data.own import SPLITS, load_own_data
    from .deploy import extract_image_features, find_images

    if args.data is None:
        paths = find_images(args.images)
    else:  # damaged files are _readable's to report, or to skip
        own = load_own_data(args.data, images=False)
        paths = [Path(record.path) for split in SPLITS for record in own.splits[split]]
    paths, unreadable = _readable(paths, args)
    model, device = _feature_model(args)
    features = extract_image_features(
        model, paths, (args.height, args.width),
        batch_size=args.batch_size, workers=args.workers, device=device,
    )
    listing, skipped = args.out.with_suffix('.txt'), args.out.with_suffix('.skipped.txt')
    _write_lines(listing, [str(path) for path in paths])
    if unreadable:
        _write_lines(skipped, [f'{image.path}\t{image.reason}' for image in unreadable])
    else:
        skipped.unlink(missing_ok=True)  # an earlier run's list would no longer be true
    atomic_write(args.out, functools.partial(_save_npy, features))
    print(f'Wrote {features.shape[0]} x {features.shape[1]} features to {args.out}; '
          f'row i is the image on line i of {listing}')
    if unreadable:
        print(f'Skipped {len(unreadable)} unreadable images, listed with the reasons '
              f'in {skipped}')


def _add_skip_unreadable(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--skip-unreadable', action='store_true',
                        help='leave out images that do not decode (listed) instead of '
                             'stopping before any work')


def _add_extract(commands) -> None:
    parser = _add_model_command(
        commands, 'extract', _extract,
        help='extract features of a folder of images with a trained model',
        description='Compute the eval-mode features of every image under a folder '
                    "(recursively, sorted by path), or of one's own data (--data: train, "
                    'query then gallery images, each sorted by path), and save them as a '
                    '.npy array, with the image paths in a .txt file of the same name.',
    )
    images = parser.add_mutually_exclusive_group(required=True)
    images.add_argument('--images', type=Path, help='folder of images')
    images.add_argument('--data', type=Path, metavar='PATH', help=DATA_HELP)
    parser.add_argument('--out', required=True, type=Path, help='.npy file to write')
    _add_loading_options(parser, batch_size=64)
    _add_skip_unreadable(parser)


def _evaluate(args: argparse.Namespace) -> None:
    from .data.images import datamanager_images, drop_images
    from .evaluation import evaluate, query_gallery

    dataset = _data_source(args, default_dataset='market1501')
    if args.data is not None:
        from .data.own import OWN_NAME, register_own_data

        own = register_own_data(OWN_NAME, args.data, args.test_ids, args.seed, images=False)
        if not own.evaluates:
            raise ValueError(f'{args.data} has no query and gallery images: add query/ and '
                             f'gallery/ (or query and gallery lines), or pass --test-ids N '
                             f'and --seed as training held identities out')
        dataset = OWN_NAME
    model, device = _feature_model(args)
    datamanager = query_gallery(str(args.root or ''), dataset, args.height, args.width,
                                args.batch_size, args.workers, use_gpu=device.type == 'cuda')
    _, unreadable = _readable(
        [Path(path) for path in datamanager_images(datamanager, train=False)], args)
    drop_images(datamanager, [image.path for image in unreadable])
    results = evaluate(model, datamanager, device, check=False, rerank=args.rerank, k1=args.k1,
                       k2=args.k2, lambda_value=args.lambda_value, visrank=args.visrank,
                       visrank_topk=args.visrank_topk)
    for name, scores in results.items():
        print(f'{args.data or name} ({args.weights.name}'
              f'{", re-ranked" if args.rerank else ""}): '
              f'Rank-1 {scores["rank1"]:.1%}, mAP {scores["mAP"]:.1%}, '
              f'mINP {scores["mINP"]:.1%}')
    if args.visrank:
        print(f'Wrote the ranked list of each query to {args.visrank}/<dataset>/<query>.png')
    if unreadable:
        print(f'Left out {len(unreadable)} unreadable test images:' + ''.join(
            f'\n  {image.path}: {image.reason}' for image in unreadable))


def _add_evaluate(commands) -> None:
    parser = _add_model_command(
        commands, 'evaluate', _evaluate,
        help='Rank-1/mAP/mINP of a checkpoint or an exported model on a torchreid dataset '
             "or one's own data",
        description="Rank the query images of a torchreid dataset (or of one's own data, "
                    "--data) against its gallery with "
                    "a trained checkpoint or an exported model (--weights ending in .onnx, "
                    ".xml or .pt, run on the CPU by onnxruntime, OpenVINO or torch.jit), "
                    "with the protocol of training's evaluation "
                    '(msinet_reid.evaluation.evaluate), and print Rank-1, mAP and mINP; '
                    'with --rerank, after k-reciprocal re-ranking '
                    "(torchreid's re_ranking, computed sparsely: fits MSMT17 on one machine).",
    )
    _add_data_source(parser, 'torchreid dataset name under --root (market1501, msmt17, veri, '
                             '...; default: market1501)')
    _add_loading_options(parser, batch_size=128)
    _add_skip_unreadable(parser)
    rerank = parser.add_argument_group('re-ranking')
    rerank.add_argument('--rerank', action='store_true', help='k-reciprocal re-ranking')
    rerank.add_argument('--k1', type=int, default=20, help='k-reciprocal neighbours')
    rerank.add_argument('--k2', type=int, default=6, help='neighbours of query expansion')
    rerank.add_argument('--lambda-value', type=float, default=0.3,
                        help='weight of the original distance in the final one')
    pictures = parser.add_argument_group('ranked lists')
    pictures.add_argument('--visrank', type=Path, default=None, metavar='DIR',
                          help="draw each query's best-ranked gallery images in DIR, framed "
                               'green (its identity) or red (another)')
    pictures.add_argument('--visrank-topk', type=int, default=10,
                          help='gallery images per ranked list')


def _show_genotype(args: argparse.Namespace) -> None:
    import json

    from .genotypes import parse_genotype
    from .models.registry import model_entrypoint
    from .search import SEARCH_OPS, load_genotype
    from .search.diagram import draw_genotype

    source, weights, ops = args.genotype, None, SEARCH_OPS
    title = source
    if Path(source).is_file():  # a search's genotype.json, with softmax(alpha)
        genotype = load_genotype(source)
        record = json.loads(Path(source).read_text())
        if isinstance(record, dict):
            weights, ops = record.get('alpha_softmax'), record.get('ops', SEARCH_OPS)
            if 'epoch' in record:
                title = f'{source}, epoch {record["epoch"]}/{record.get("max_epoch", "?")}'
    elif source in list_models():
        genotype = model_entrypoint(source)(1, pretrained=False).genotype
    else:
        genotype = parse_genotype(source)  # a published name or 12 operations
    path = draw_genotype(genotype, args.out, weights, ops, title)
    print(f'Wrote {path}: {" ".join(genotype)}')


def _add_show_genotype(commands) -> None:
    parser = commands.add_parser(
        'show-genotype', help="draw a genotype's cells (needs msinet-reid[plots])",
        description="Draw a genotype as the paper's Fig. 2 lays MSINet out: three stages of "
                    'two cells, each with two interaction modules, the operation chosen '
                    "among the four candidates filled; a search's genotype.json also gives "
                    'each candidate its softmax(alpha).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('genotype', help='a registered model (msinet, msinet_vr, ...), a '
                                         "search's genotype.json, or 12 operations")
    parser.add_argument('--out', type=Path, default=Path('genotype.png'), help='PNG to write')
    parser.set_defaults(run=_show_genotype)


def _print_splits(title: str, splits: dict) -> None:
    """``splits``: ``{split: {'images': ..., 'identities': ..., 'cameras': ...}}``."""
    print(title)
    print(f'  {"split":<8}{"images":>9}{"identities":>12}{"cameras":>9}')
    for split, counts in splits.items():
        print(f'  {split:<8}{counts["images"]:>9,}{counts["identities"]:>12,}'
              f'{counts["cameras"]:>9,}')


def _check_own_data(args: argparse.Namespace) -> int:
    from .data.own import OwnDataError, load_own_data

    try:
        own = load_own_data(args.data, args.test_ids, args.seed, workers=args.workers)
    except OwnDataError as error:
        print(error)
        return 1
    summary = own.summary()
    _print_splits(f'{summary["layout"]} {summary["source"]}'
                  + (f' ({own.test_ids} identities held out, seed {own.seed})'
                     if own.test_ids else ''), summary['splits'])
    if not own.evaluates:
        print('No query and gallery images: training will not evaluate (--test-ids N holds '
              'identities out to evaluate on).')
    print(f'sha256 of the images and their labels: {summary["sha256"]}')
    images = sum(counts['images'] for counts in summary['splits'].values())
    print(f'All {images:,} images decode; no problems found.')
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from .data.images import check_images
    from .data.layout import load_image_dataset

    dataset_name = _data_source(args)
    if dataset_name is None:
        return _check_own_data(args)
    dataset = load_image_dataset(dataset_name, args.root)
    splits = {'train': dataset.train, 'query': dataset.query, 'gallery': dataset.gallery}
    _print_splits(f'{dataset_name} under {args.root}', {
        split: {'images': len(items), 'identities': len({item[1] for item in items}),
                'cameras': len({item[2] for item in items})} for split, items in splits.items()})
    paths = [item[0] for items in splits.values() for item in items]
    unreadable = check_images(paths, workers=args.workers, progress=True)
    for image in unreadable:
        print(f'unreadable: {image.path}: {image.reason}')
    if unreadable:
        print(f'{len(unreadable)} of {len(paths)} images cannot be read: re-download or '
              f'restore them, or remove them from the dataset folder.')
        return 1
    print(f'All {len(paths):,} images decode.')
    return 0


def _add_check_data(commands) -> None:
    parser = commands.add_parser(
        'check-data', help="check that every image of a torchreid dataset (or of one's own "
                           'data) decodes',
        description="Read a torchreid dataset's splits, print their sizes, decode every "
                    'image and list those that fail; exits with 1 if any does. Training '
                    "and evaluation check the same way before they start. With --data, "
                    "one's own data: every check of msinet_reid.data.load_own_data (missing "
                    'or damaged files, queries without a gallery match from another camera, '
                    'a single camera, duplicate paths, empty splits, bad list lines), then '
                    'the sizes and a sha256 digest of the images and their labels.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_data_source(parser, 'torchreid dataset name under --root (market1501, msmt17, veri, '
                             '...); needed with --root')
    parser.add_argument('--workers', type=int, default=None,
                        help='decoding threads (default: the cores this process may use)')
    parser.set_defaults(run=_check_data)


# train's flags: (names, config key, type, help); each wins over --config-file.
_TRAIN_FLAGS = (
    (('--experiment',), 'experiment', str,
     "one of the paper's experiments (sets the defaults of recipe, model and datasets)"),
    (('--recipe',), 'recipe.name', str, 'scratch, pretrained or cross_domain (default: scratch)'),
    (('--model',), 'model.name', str, 'a registered model (default: msinet)'),
    (('--data',), 'data.path', str,
     'your own data: a folder with train/ (query/, gallery/) or a CSV list '
     'path,identity,camera,split'),
    (('--test-ids',), 'data.test_ids', int,
     'own data without query/ and gallery/: identities held out to evaluate on'),
    (('--root',), 'data.root', str, "the folder of torchreid's datasets"),
    (('--dataset', '--source'), 'data.source', str, 'the torchreid dataset to train on'),
    (('--target',), 'data.target', str,
     'the torchreid dataset to evaluate on (default: the training one)'),
    (('--weights',), 'model.weights', str, 'a local ImageNet-pretrained checkpoint'),
    (('--epochs',), 'recipe.max_epoch', int, None),
    (('--batch-size',), 'recipe.batch_size', int, None),
    (('--num-instances',), 'recipe.num_instances', int, 'images per identity in a batch'),
    (('--height',), 'recipe.height', int, None),
    (('--width',), 'recipe.width', int, None),
    (('--lr',), 'recipe.lr', float, None),
    (('--eval-freq',), 'recipe.eval_freq', int, 'evaluate and save a checkpoint every N epochs'),
    (('--device',), 'run.device', str, "'cpu' or 'cuda' (under torchrun: each process's GPU)"),
    (('--workers',), 'data.workers', int, 'image loading processes'),
    (('--seed',), 'run.seed', int, None),
    (('--save-dir',), 'run.save_dir', str,
     'checkpoints, TensorBoard logs and the model card (default: log/<run name>)'),
    (('--resume',), 'run.resume', str,
     "a checkpoint to continue from, or 'auto': the latest in the save directory, if any"),
    (('--checkpoint-every',), 'run.checkpoint_every', int,
     'a resume checkpoint every N iterations (0: by time only)'),
    (('--checkpoint-minutes',), 'run.checkpoint_minutes', float,
     'a resume checkpoint every M minutes'),
    (('--print-freq',), 'run.print_freq', int, 'progress every N batches (0: once an epoch)'),
)
_TRAIN_SWITCHES = (
    (('--amp',), 'run.amp', 'mixed precision (CUDA)'),
    (('--sync-bn',), 'run.sync_bn', 'under torchrun: BatchNorm over the global batch (CUDA)'),
    (('--rerank',), 'run.rerank', 'evaluate after k-reciprocal re-ranking'),
    (('--evaluate',), 'run.evaluate_only', 'only evaluate (the --resume checkpoint, if given)'),
)


def _train_settings(args: argparse.Namespace) -> dict:
    """The config keys that train's flags set."""
    flags = [(key, getattr(args, names[0][2:].replace('-', '_')))
             for names, key, *_ in (*_TRAIN_FLAGS, *_TRAIN_SWITCHES)]
    return {key: value for key, value in flags if value is not None}


def run_train(args: argparse.Namespace):
    """``msinet-reid train`` with parsed ``args``: print the config, or train and return
    the engine (``examples/train_msinet.py`` keeps it)."""
    from .config import load_config

    config = load_config(args.config_file, args.opts, _train_settings(args))
    if args.print_config:
        print(config.to_yaml(), end='')
        return None
    from .training import train

    return train(config)


def _add_train(commands) -> None:
    parser = commands.add_parser(
        'train', help='train a model on a torchreid dataset or your own data',
        description="Train a registered model with the paper's recipe (ImageMSINetEngine) "
                    'on a torchreid dataset (--root, --dataset) or your own data (--data), '
                    'evaluate it, and write a model card beside the weights. Settings come '
                    'from the defaults of --experiment or --recipe, then --config-file '
                    '(YAML), then the flags, then trailing KEY VALUE pairs '
                    '(e.g. recipe.lr 0.01); --print-config shows them all.')
    parser.add_argument('--config-file', type=Path, help='a YAML config (any subset of the '
                                                         'keys --print-config shows)')
    parser.add_argument('--print-config', action='store_true',
                        help='print the complete config as YAML and exit')
    for names, _, kind, help in _TRAIN_FLAGS:
        parser.add_argument(*names, type=kind, help=help)
    for names, _, help in _TRAIN_SWITCHES:
        parser.add_argument(*names, action='store_const', const=True, help=help)
    parser.add_argument('opts', nargs=argparse.REMAINDER, metavar='KEY VALUE',
                        help='config keys and values, e.g. recipe.max_epoch 60')
    parser.set_defaults(run=run_train)


def build_parser() -> argparse.ArgumentParser:
    """The ``msinet-reid`` parser, each command's ``run`` in its defaults."""
    parser = argparse.ArgumentParser(prog='msinet-reid', description=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    for add in (_add_demo, _add_train, _add_export, _add_extract, _add_evaluate,
                _add_check_data, _add_show_genotype):
        add(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
        return status if isinstance(status, int) else 0  # train returns its engine
    except (PretrainedWeightsError, QuantizationError, ExportCheckError, FileNotFoundError,
            ImportError, ValueError) as error:
        parser.exit(2, f'msinet-reid {args.command}: error: {error}\n')
