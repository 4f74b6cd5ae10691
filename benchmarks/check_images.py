"""Speed of the image check that training, evaluation and ``msinet-reid check-data`` run
first (``msinet_reid.data.check_images``: every file decoded in full).

Writes ``--count`` JPEG crops of MSMT17-like sizes (heights drawn from 128 to 384 pixels,
width 0.4 of the height; MSMT17's crops vary in size, Market-1501's are all 128x64) into
a temporary folder, then checks them with 1 and ``--workers`` threads, side by side with
Pillow's ``verify()`` (headers only, which passes truncated files), and prints images per
second and the time the check would take on MSMT17's 126,441 images::

    python benchmarks/check_images.py                 # 4,000 crops, 1 and 2 threads
    python benchmarks/check_images.py --count 500     # quicker
"""
import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image

from msinet_reid.data import check_images

MSMT17_IMAGES = 126_441


def write_crops(folder: Path, count: int, seed: int = 0) -> List[Path]:
    """``count`` JPEG crops of smooth random colour at MSMT17-like sizes."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        height = int(rng.integers(128, 385))
        width = max(16, int(0.4 * height))
        small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        paths.append(folder / f'{index:06d}.jpg')
        image.save(paths[-1], quality=90)
    return paths


def verify_only(paths: List[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.verify()


def rate(run: Callable[[], object], count: int, repeats: int) -> float:
    """Images per second of ``run``, the best of ``repeats`` (the files are cached by then)."""
    best = float('inf')
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=4000, help='crops to write and check')
    parser.add_argument('--workers', type=int, default=2, help='threads of the parallel row')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, default=None, help='JSON file for the figures')
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        paths = write_crops(Path(folder), args.count)
        rows = {
            "Pillow's verify() (headers only)": rate(lambda: verify_only(paths), args.count,
                                                     args.repeats),
            'check_images, 1 thread': rate(lambda: check_images(paths, workers=1), args.count,
                                           args.repeats),
            f'check_images, {args.workers} threads': rate(
                lambda: check_images(paths, workers=args.workers), args.count, args.repeats),
        }
    print(f'{args.count:,} JPEG crops, 128-384 px high')
    print(f'{"":<36}{"images/s":>10}{"MSMT17 (126,441)":>19}')
    for name, per_second in rows.items():
        print(f'{name:<36}{per_second:>10,.0f}{MSMT17_IMAGES / per_second:>17.0f} s')
    threads = rows[f'check_images, {args.workers} threads'] / rows['check_images, 1 thread']
    print(f'{args.workers} threads are {threads:.2f}x as fast as 1')
    if args.out:
        args.out.write_text(json.dumps({'count': args.count, 'images_per_s': rows}, indent=1))
    return rows


if __name__ == '__main__':
    main()
