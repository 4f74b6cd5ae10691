"""A synthetic multi-object tracking sequence in the MOT Challenge layout.

:func:`make_mot_sequence` renders the demo's persons (``msinet_reid.data.synthetic``)
walking along a few lanes of a street scene and writes, under ``<root>/<name>/``::

    img1/000001.jpg ...   the frames
    gt/gt.txt             frame,id,x,y,w,h,1,1,visibility  (every person, every frame)
    det/det.txt           frame,-1,x,y,w,h,conf,-1,-1,-1   (the persons a detector sees)
    seqinfo.ini           name, frame rate, length, size

It is built so that appearance matters to a tracker: persons of one lane meet head on and
turn back where they meet, so a motion model that carries each track on at its velocity
swaps the two identities, while their clothes tell them apart. Persons of different lanes
pass in front of each other; a person less than ``MIN_VISIBILITY`` visible has no
detection. Everything random comes from ``numpy.random.default_rng((seed, ...))``, so a
seed gives the same files on every machine; the sequence is written atomically and
reused when its marker matches.
"""
import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from .scenes import DOMAINS, Look, draw_person, random_camera, random_look, random_stream
from .synthetic import JPEG_QUALITY, PathLike, write_once

__all__ = ['make_mot_sequence', 'read_mot', 'score_tracks']

FORMAT_VERSION = 1
STREET = DOMAINS['street']  # the world of the demo's persons
MIN_VISIBILITY = 0.5  # a detector misses persons hidden more than this
FRAME_RATE = 30
# Random stream tags, apart from synthetic.py's (1-10).
_SCENE_STREAM, _PERSON_STREAM, _FRAME_STREAM = 21, 22, 23


@dataclass
class _Walker:
    look: Look
    figure: float  # height in pixels
    lane: int
    top: float  # y of the head
    x: float  # centre
    speed: float  # pixels per frame, signed
    phase: float  # of the stride

    @property
    def half_width(self) -> float:  # arms included
        return 1.35 * self.look.breadth * self.figure

    def box(self) -> Tuple[float, float, float, float]:
        return (self.x - self.half_width, self.top, 2 * self.half_width, self.figure)


def make_mot_sequence(
    root: PathLike, name: str = 'SYNTH-01', num_people: int = 6, num_frames: int = 90,
    width: int = 320, height: int = 192, num_lanes: int = 2, seed: int = 0,
    progress: bool = True,
) -> Path:
    """Generate (or reuse) a synthetic MOT sequence under ``root``; return its folder.

    ``num_people`` persons walk along ``num_lanes`` horizontal lanes of a ``width`` x
    ``height`` scene for ``num_frames`` frames, turning back at the image borders and where
    they meet someone of their lane. See the module docstring for the files.

    Example::

        >>> folder = make_mot_sequence('mot-data', num_frames=30, progress=False)
        >>> sorted(p.name for p in folder.iterdir())
        ['det', 'gt', 'img1', 'seqinfo.ini', 'synthetic.json']
    """
    params = {'name': name, 'num_people': num_people, 'num_frames': num_frames, 'width': width,
              'height': height, 'num_lanes': num_lanes, 'seed': seed}
    _validate(params)
    marker = {'generator': __name__, 'format': FORMAT_VERSION, 'parameters': params}
    target = Path(root).expanduser().resolve() / name
    return write_once(target, marker, lambda staging: _write_sequence(staging, params, progress))


def read_mot(path: PathLike) -> np.ndarray:
    """Rows of a MOT text file (``gt.txt``, ``det.txt``, tracker output) as a float array.

    Example::

        >>> detections = read_mot('mot-data/SYNTH-01/det/det.txt')  # (N, 10)
    """
    rows = np.loadtxt(path, delimiter=',', ndmin=2)
    return rows.reshape(0, 10) if rows.size == 0 else rows


def score_tracks(tracks: np.ndarray, gt: np.ndarray, min_visibility: float = MIN_VISIBILITY,
                 min_iou: float = 0.5) -> Dict[str, float]:
    """MOTA, IDF1 and identity switches of MOT-format ``tracks`` against ``gt``, by motmetrics.

    Ground-truth boxes less than ``min_visibility`` visible are left out (no detector
    sees them); a track box matches a ground-truth box at IoU >= ``min_iou``. Needs
    ``motmetrics`` (in the extras ``boxmot`` and ``test``).

    Example::

        >>> score_tracks(read_mot('tracks.txt'), read_mot('SYNTH-01/gt/gt.txt'))
        {'mota': 0.93, 'idf1': 0.88, 'num_switches': 4.0}
    """
    try:
        import motmetrics
    except ImportError as error:
        raise ImportError('scoring tracks needs motmetrics: pip install "msinet-reid[boxmot]"'
                          ) from error
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    for frame in np.unique(gt[:, 0]):
        truth = gt[(gt[:, 0] == frame) & (gt[:, 8] >= min_visibility)]
        found = tracks[tracks[:, 0] == frame]
        accumulator.update(truth[:, 1].astype(int), found[:, 1].astype(int),
                           _iou_distances(truth[:, 2:6], found[:, 2:6], min_iou),
                           frameid=int(frame))
    metrics = motmetrics.metrics.create().compute(
        accumulator, metrics=['mota', 'idf1', 'num_switches'], name='sequence')
    return {key: float(value) for key, value in metrics.iloc[0].items()}


def _iou_distances(a: np.ndarray, b: np.ndarray, min_iou: float) -> np.ndarray:
    """1 - IoU of every pair of ``x,y,w,h`` boxes; NaN (no match) below ``min_iou``.

    motmetrics 1.4's own ``iou_matrix`` calls ``np.asfarray``, which numpy 2 removed.
    """
    a, b = a[:, None], b[None]
    low, high = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., :2] + a[..., 2:],
                                                               b[..., :2] + b[..., 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    iou = inter / (np.prod(a[..., 2:], axis=-1) + np.prod(b[..., 2:], axis=-1) - inter)
    return np.where(iou >= min_iou, 1 - iou, np.nan)


def _validate(params: dict) -> None:
    limits = {'num_people': (1, 64), 'num_frames': (1, 99999), 'width': (64, 4096),
              'height': (64, 4096), 'num_lanes': (1, 8), 'seed': (0, 2 ** 63 - 1)}
    for key, (low, high) in limits.items():
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f'{key} must be an integer in {low}..{high}, got {value!r}')
    if not params['name'] or Path(params['name']).name != params['name']:
        raise ValueError(f'name must be a folder name, got {params["name"]!r}')


def _walkers(params: dict) -> List[_Walker]:
    """Persons spread over the lanes, each lane's persons apart, walking either way."""
    width, height, lanes = params['width'], params['height'], params['num_lanes']
    walkers = []
    for index in range(params['num_people']):
        rng = random_stream(params['seed'], _PERSON_STREAM, index)
        look = random_look(rng, STREET.clothes)
        figure = 0.55 * height * look.height / 0.85
        lane = index % lanes
        # Lanes lie one above the other, so persons of nearby lanes overlap when passing.
        top = 0.05 * height + lane * (0.4 * height - figure * 0.05) / max(lanes - 1, 1) \
            + rng.uniform(-2, 2)
        place = index // lanes
        per_lane = -(-params['num_people'] // lanes)
        x = width * (place + 0.5) / per_lane + rng.uniform(-0.05, 0.05) * width
        speed = float(rng.uniform(2.0, 3.5) * rng.choice((-1, 1)))
        walkers.append(_Walker(look, figure, lane, top, x, speed, float(rng.uniform(0, 6.3))))
    return walkers


def _step(walkers: List[_Walker], width: int) -> None:
    """Move everyone one frame; turn back at the borders and on meeting head on."""
    for walker in walkers:
        walker.x += walker.speed
        walker.phase += abs(walker.speed) / 6
        if walker.x - walker.half_width < 0 < -walker.speed or \
                walker.x + walker.half_width > width and walker.speed > 0:
            walker.speed = -walker.speed
    for a in walkers:
        for b in walkers:
            approaching = (b.x - a.x) * (a.speed - b.speed) > 0
            close = abs(a.x - b.x) < 0.25 * (a.half_width + b.half_width)
            if a is not b and a.lane == b.lane and a.x < b.x and approaching and close:
                a.speed, b.speed = -abs(a.speed), abs(b.speed)


def _visibility(walkers: List[_Walker], order: List[int], width: int, height: int
                ) -> List[float]:
    """Visible fraction of each person's box, persons lower in the image in front."""
    covered = np.zeros((height, width), bool)
    visible = [0.0] * len(walkers)
    for index in reversed(order):  # front to back
        x, y, w, h = walkers[index].box()
        x0, y0 = max(int(x), 0), max(int(y), 0)
        x1, y1 = min(int(x + w), width), min(int(y + h), height)
        region = covered[y0:y1, x0:x1]
        visible[index] = min(float((~region).sum()) / max(w * h, 1.0), 1.0)
        region[...] = True
    return visible


def _write_sequence(folder: Path, params: dict, progress: bool) -> None:
    width, height, seed = params['width'], params['height'], params['seed']
    camera = random_camera(random_stream(seed, _SCENE_STREAM), height, width, STREET)
    walkers = _walkers(params)
    for sub in ('img1', 'gt', 'det'):
        (folder / sub).mkdir()
    gt, det = [], []
    frames = range(1, params['num_frames'] + 1)
    for frame in tqdm(frames, desc='synthetic MOT sequence', unit='frame', disable=not progress):
        rng = random_stream(seed, _FRAME_STREAM, frame)
        order = sorted(range(len(walkers)), key=lambda i: walkers[i].top + walkers[i].figure)
        image = Image.fromarray(np.uint8(np.clip(camera.background, 0, 255)))
        draw = ImageDraw.Draw(image)
        for index in order:  # back to front
            walker = walkers[index]
            stride = 0.15 + 0.15 * np.sin(walker.phase)
            draw_person(draw, walker.look, walker.x, walker.top, walker.figure,
                        flip=1 if walker.speed > 0 else -1, stride=float(stride))
        _write_frame(image, camera, rng, folder / 'img1' / f'{frame:06d}.jpg')
        for index, visible in enumerate(_visibility(walkers, order, width, height)):
            x, y, w, h = walkers[index].box()
            gt.append(f'{frame},{index + 1},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,1,{visible:.3f}')
            if visible >= MIN_VISIBILITY:
                jitter = rng.normal(0, 1.0, size=4)
                det.append(f'{frame},-1,{x + jitter[0]:.2f},{y + jitter[1]:.2f},'
                           f'{w + jitter[2]:.2f},{h + jitter[3]:.2f},'
                           f'{rng.uniform(0.7, 0.95):.3f},-1,-1,-1')
        _step(walkers, width)
    (folder / 'gt' / 'gt.txt').write_text('\n'.join(gt) + '\n')
    (folder / 'det' / 'det.txt').write_text('\n'.join(det) + '\n')
    info = configparser.ConfigParser()
    info.optionxform = str  # MOT Challenge's keys are camelCase
    info['Sequence'] = {'name': params['name'], 'imDir': 'img1', 'frameRate': str(FRAME_RATE),
                        'seqLength': str(params['num_frames']), 'imWidth': str(width),
                        'imHeight': str(height), 'imExt': '.jpg'}
    with open(folder / 'seqinfo.ini', 'w') as file:
        info.write(file, space_around_delimiters=False)


def _write_frame(image: Image.Image, camera, rng: np.random.Generator, path: Path) -> None:
    """The camera's light, blur and noise, as for the demo's person images."""
    pixels = np.asarray(image, np.float32) * camera.light
    image = Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))
    if camera.blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(camera.blur))
    pixels = np.asarray(image, np.float32) + rng.normal(0, camera.noise, size=pixels.shape)
    Image.fromarray(np.uint8(np.clip(pixels, 0, 255))).save(path, quality=JPEG_QUALITY)
