"""Accuracy cost of int8 inference: Rank-1/mAP of a trained MSINet on a torchreid dataset as
a checkpoint, as fp32 ONNX and as int8 ONNX for each calibration method, and as fp32 and
int8 (NNCF) OpenVINO, in one run.

Each int8 model is calibrated on the same crops (``--calib``) with
``msinet_reid.deploy.quantize_onnx`` or ``quantize_openvino`` (which draw the same
calibration and held-out crops); its row also gives the calibration time and the
cosine similarity of its features to the fp32 features on the held-out crops (what the
accuracy guard checks). Evaluation is ``msinet_reid.evaluation.evaluate``, the protocol of
training's evaluation.

Usage (the demo's data and checkpoint, after ``msinet-reid demo``)::

    DEMO=~/.cache/msinet_reid/demo
    python benchmarks/quantization.py --weights $DEMO/log/model/model.pth.tar-12 \\
        --root $DEMO --height 128 --width 64 --num-calibration 16 256 --threads 2 \\
        --calib $DEMO/market1501/Market-1501-v15.09.15/bounding_box_train

Any torchreid dataset works the same way, e.g. VeRi-776 (``import msinet_reid`` registers
it): ``--root reid-data --dataset veri --height 256 --width 256 --calib
reid-data/veri/image_train``.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import torch

from msinet_reid.deploy import (OnnxModel, OpenVinoModel, QuantizationError, export_onnx,
                                export_openvino, load_exported, load_trained, quantize_onnx,
                                quantize_openvino)
from msinet_reid.deploy.quantize import CALIBRATION_METHODS
from msinet_reid.evaluation import evaluate, query_gallery


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--weights', required=True, type=Path, help='trained checkpoint')
    parser.add_argument('--model', default='msinet', help='registered MSINet model')
    parser.add_argument('--root', required=True, type=Path, help="torchreid's data root")
    parser.add_argument('--dataset', default='market1501', help='torchreid dataset name')
    parser.add_argument('--calib', required=True, type=Path, help='folder of crops')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--methods', nargs='+', default=list(CALIBRATION_METHODS),
                        choices=CALIBRATION_METHODS)
    parser.add_argument('--num-calibration', type=int, nargs='+', default=[256],
                        help='calibration set sizes to compare')
    parser.add_argument('--runtimes', nargs='+', default=['onnx', 'openvino'],
                        choices=['onnx', 'openvino'], help='runtimes to quantize for')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads')
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the results')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datamanager = query_gallery(str(args.root), args.dataset, args.height, args.width,
                                workers=0)
    model = load_trained(args.model, args.weights)
    rows = {'checkpoint': evaluate(model, datamanager)[args.dataset]}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if 'onnx' in args.runtimes:
            fp32 = export_onnx(model, folder / 'fp32.onnx', args.height, args.width)
            rows['fp32 ONNX'] = evaluate(OnnxModel(fp32, args.threads),
                                         datamanager)[args.dataset]
            for method in args.methods:
                for count in args.num_calibration:
                    rows[f'int8 {method}, {count} crops'] = int8_row(
                        args, datamanager, quantize_onnx, fp32, folder / 'int8.onnx',
                        method=method, num_calibration=count)
        if 'openvino' in args.runtimes:
            fp32 = export_openvino(model, folder / 'fp32.xml', args.height, args.width)
            rows['fp32 OpenVINO'] = evaluate(OpenVinoModel(fp32, threads=args.threads),
                                             datamanager)[args.dataset]
            for count in args.num_calibration:
                rows[f'int8 OpenVINO (NNCF), {count} crops'] = int8_row(
                    args, datamanager, quantize_openvino, fp32, folder / 'int8.xml',
                    num_calibration=count)
    print_table(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


def int8_row(args: argparse.Namespace, datamanager, quantize, fp32: Path, out: Path,
             **options) -> dict:
    """Scores of the int8 model that ``quantize`` makes of ``fp32``, its calibration time
    and cosine similarities; or the error of a calibration that cannot run."""
    print(f'quantizing {fp32.name} with {options}', file=sys.stderr)
    start = time.perf_counter()
    try:
        # min_cosine=-1: every calibration is measured, the guard refuses none
        report = quantize(fp32, out, args.calib, min_cosine=-1, **options)
    except QuantizationError as error:
        return {'error': str(error)}
    seconds = time.perf_counter() - start
    int8, _ = load_exported(report.path, threads=args.threads)
    return {**evaluate(int8, datamanager)[args.dataset], 'calibration_s': seconds,
            'mean_cosine': report.mean_cosine, 'min_cosine': report.min_cosine}


def print_table(rows: dict) -> None:
    reference = rows['checkpoint']['mAP']
    print(f'{"model":<34}{"Rank-1":>8}{"mAP":>8}{"dmAP":>8}{"cos mean":>10}{"cos min":>9}'
          f'{"calib s":>9}')
    for label, row in rows.items():
        if 'error' in row:
            print(f'{label:<34}failed: {row["error"]}')
            continue
        cosine = (f'{row["mean_cosine"]:>10.4f}{row["min_cosine"]:>9.4f}'
                  f'{row["calibration_s"]:>9.1f}' if 'mean_cosine' in row else '')
        print(f'{label:<34}{row["rank1"]:>8.1%}{row["mAP"]:>8.1%}'
              f'{100 * (row["mAP"] - reference):>+8.2f}{cosine}')


if __name__ == '__main__':
    main()
