"""Crops per second of the appearance encoder inside boxmot: MSINet against boxmot's own
OSNet x1.0 and x0.25.

Every model runs as a boxmot tracker runs it: a weights file read by boxmot's ReID runtime
(same backend for all), wrapped in boxmot's appearance encoder, which crops the detections
out of the frame, resizes them to 256x128, normalises and batches them, runs the model and
L2-normalises the features. All encode the same frame and detections. Weights are random
(nothing is downloaded): speed does not depend on them. Timings are interleaved and the
ratios are medians of per-repeat ratios, as in ``benchmarks/inference.py``.

Usage::

    python benchmarks/boxmot_reid.py --threads 2 --detections 32
    python benchmarks/boxmot_reid.py --quick  # a few crops, one repeat: checks it runs
"""
import argparse
import statistics
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

import msinet_reid  # noqa: F401  (registers the models with torchreid)
from msinet_reid._torchreid import models
from msinet_reid.integrations import boxmot as msinet_boxmot

from inference import paired_ratios, time_variants

OSNETS = ('osnet_x1_0', 'osnet_x0_25')
BASELINE = 'msinet'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--detections', type=int, default=32, help='crops per frame')
    parser.add_argument('--repeats', type=int, default=7, help='timed runs of each model')
    parser.add_argument('--threads', type=int, default=None, help="torch's CPU threads")
    parser.add_argument('--quick', action='store_true', help='4 crops, one repeat')
    args = parser.parse_args(argv)
    if args.quick:
        args.detections, args.repeats = 4, 1
    return args


def random_weights(folder: Path) -> dict:
    """Weights files of random models, as boxmot reads them, by model name."""
    from boxmot.reid.backbones.registry import build_backbone

    files = {}
    for name in OSNETS:  # boxmot finds the architecture in the file name
        files[name] = folder / f'{name}_random.pt'
        torch.save(build_backbone(name, num_classes=1, pretrained=False).state_dict(),
                   files[name])
    model = models.build_model('msinet', 1, pretrained=False)
    torch.save(model.state_dict(), folder / 'msinet_random.pth')
    files['msinet'] = msinet_boxmot.prepare_weights('msinet', folder / 'msinet_random.pth',
                                                    folder / 'msinet_random.pt')
    return files


def frame_and_detections(count: int, seed: int = 0):
    """A 720p frame and ``count`` person-sized boxes in it."""
    from boxmot.structures import Boxes, Detections, Frame

    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.integers(0, 256, size=(3, 720, 1280), dtype=np.uint8))
    heights = rng.uniform(80, 300, size=count)
    x1, y1 = rng.uniform(0, 1280 - 150, size=count), rng.uniform(0, 720 - 300, size=count)
    boxes = np.stack([x1, y1, x1 + heights / 2.5, y1 + heights], 1).astype(np.float32)
    detections = Detections(geometry=Boxes(torch.from_numpy(boxes)),
                            scores=torch.full((count,), 0.9),
                            class_ids=torch.zeros(count, dtype=torch.long), sample_id='0')
    return Frame(image=image, sample_id='0'), detections


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frame, detections = frame_and_detections(args.detections)
    with tempfile.TemporaryDirectory() as folder:
        encoders = {name: msinet_boxmot.reid_encoder(path)
                    for name, path in random_weights(Path(folder)).items()}
        variants = {name: (lambda _, e=encoder: e.encode([frame], [detections]))
                    for name, encoder in encoders.items()}
        samples = time_variants(variants, torch.empty(0), args.repeats)
    print(f'boxmot pytorch backend, {args.detections} crops per frame, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}')
    results = {}
    for name, times in samples.items():
        ratio = statistics.median(paired_ratios(samples, name, BASELINE))
        results[name] = {'crops_per_s': args.detections / statistics.median(times),
                         'time_vs_msinet': ratio}
        print(f'  {name:<12}{results[name]["crops_per_s"]:>9.1f} crops/s   '
              f'time {ratio:.2f}x MSINet\'s')
    return results


if __name__ == '__main__':
    main()
