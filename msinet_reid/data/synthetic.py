"""A small synthetic person re-identification dataset in Market-1501's on-disk layout.

:func:`make_market1501` writes ``<root>/market1501/Market-1501-v15.09.15/`` with
``bounding_box_train``, ``bounding_box_test`` and ``query`` folders of
``PPPP_cCsS_FFFFFF_NN.jpg`` images, so torchreid's own ``Market1501`` dataset and
``ImageDataManager`` read it unchanged. It is the built-in demo data: big enough for a
CNN trained for a few minutes on a CPU to clearly beat its untrained self, small enough
to generate in seconds.

Design:

* Identity is the *combination* of attributes (body shape, skin, hair, upper clothing
  colour and pattern, lower clothing colour and kind, shoes, accessory), each drawn from
  a small palette, so many identities share any single colour.
* Cameras are nuisances the model has to see through: each has its own background,
  illumination (gain and colour cast), blur and noise level; each image adds position,
  scale, pose, mirror and pixel jitter. They are tuned so that matching raw pixels
  retrieves the right identity only part of the time.
* Determinism: every random choice comes from ``numpy.random.default_rng`` seeded with
  ``(seed, kind, ...)`` -- an identity from its pid, a camera from its number, an image
  from (pid, camera, index) -- so files do not depend on generation order.
* Atomicity: the dataset is written into a temporary sibling folder whose last file is a
  JSON marker holding the parameters, then renamed into place. A folder with a matching
  marker is complete and is reused as is.
"""
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

__all__ = ['make_market1501']

DATASET_DIR = 'market1501'
RELEASE_DIR = 'Market-1501-v15.09.15'
MARKER = 'synthetic.json'
# Bump when the images change, so that datasets written by older code are regenerated.
FORMAT_VERSION = 1

MAX_PID = 1501  # torchreid asserts 0 <= pid <= 1501; pid 0 is a distractor
MAX_CAMERAS = 6  # torchreid asserts 1 <= camid <= 6
JPEG_QUALITY = 90
MAX_DISTRACTORS_PER_CAMERA = 8

# Stream tags: the first seed word after `seed`, so that the streams never coincide.
_IDENTITY, _CAMERA, _IMAGE, _DISTRACTOR = 1, 2, 3, 4

Colour = Tuple[int, int, int]
_CLOTHES: Tuple[Colour, ...] = (
    (28, 28, 32), (228, 228, 222), (128, 128, 130), (32, 42, 96), (52, 96, 196),
    (186, 36, 42), (40, 132, 64), (226, 192, 52), (112, 70, 38), (204, 182, 140),
    (224, 132, 168), (112, 52, 146),
)
_SKIN: Tuple[Colour, ...] = ((238, 200, 170), (210, 160, 120), (160, 110, 75), (100, 66, 45))
_HAIR: Tuple[Colour, ...] = (
    (20, 18, 18), (70, 42, 24), (130, 85, 45), (214, 180, 110), (160, 160, 160))
_PATTERNS = ('solid', 'hstripes', 'vstripes', 'checks')
_LOWER_KINDS = ('trousers', 'shorts', 'skirt')
_ACCESSORIES = (None, 'backpack', 'handbag', 'hat')


@dataclass(frozen=True)
class _Look:
    """The stable appearance of one identity."""

    height: float  # figure height as a fraction of the image height
    breadth: float  # half shoulder width as a fraction of the figure height
    skin: Colour
    hair: Colour
    long_hair: bool
    upper: Colour
    upper_second: Colour
    pattern: str
    short_sleeves: bool
    lower: Colour
    lower_kind: str
    shoes: Colour
    accessory: Optional[str]
    accessory_colour: Colour
    accessory_side: int  # +1 or -1: which side a bag hangs on, before mirroring


@dataclass(frozen=True)
class _Camera:
    """What one camera does to every image it takes."""

    background: np.ndarray  # H x W x 3 float32
    light: np.ndarray  # per-channel gain: brightness times colour cast
    blur: float  # Gaussian blur radius in pixels
    noise: float  # pixel noise standard deviation


@dataclass(frozen=True)
class _Shot:
    """One image to write: pid 0 marks a distractor."""

    folder: str
    look: _Look
    pid: int
    camera: int
    index: int  # seeds the image's random stream
    number: int  # the file name's NN field, unique per (pid, camera)


def make_market1501(
    root: Union[str, os.PathLike], num_train_ids: int = 64, num_test_ids: int = 64,
    images_per_camera: int = 3, num_cameras: int = 6, height: int = 128, width: int = 64,
    seed: int = 0, progress: bool = True,
) -> Path:
    """Generate (or reuse) the synthetic dataset under ``root`` and return its folder.

    Train and test identities are disjoint; each identity is seen by a random subset of
    at least two cameras, ``images_per_camera`` images per camera. For a test identity
    one image per camera goes to ``query`` and the rest to ``bounding_box_test``, so every
    query has gallery matches from other cameras; the gallery also gets a few pid-0
    distractors. The result is ``<root>/market1501/Market-1501-v15.09.15``, which is
    what ``torchreid.data.datasets.image.Market1501(root=root)`` reads.

    Raises ``ValueError`` for out-of-range arguments and ``FileExistsError`` if that
    folder exists but was not written by this function (it is never deleted).
    """
    params = {
        'num_train_ids': num_train_ids, 'num_test_ids': num_test_ids,
        'images_per_camera': images_per_camera, 'num_cameras': num_cameras,
        'height': height, 'width': width, 'seed': seed,
    }
    _validate(params)
    marker = {'generator': __name__, 'format': FORMAT_VERSION, 'parameters': params}
    target = Path(root).expanduser().resolve() / DATASET_DIR / RELEASE_DIR
    found = _read_marker(target)
    if found == marker:
        return target
    if found is None and target.exists() and any(target.iterdir()):
        # Without our marker this is not ours (a real Market-1501?): never delete it.
        raise FileExistsError(f'{target} exists and was not written by {__name__}; '
                              'move it away or choose another root')

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{RELEASE_DIR}.', dir=target.parent))
    try:
        _write_dataset(staging, params, progress)
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + '\n')
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _validate(params: dict) -> None:
    limits = {
        'num_train_ids': (1, MAX_PID - 1), 'num_test_ids': (1, MAX_PID - 1),
        # Two per camera at least, so that test identities have a query and a gallery image.
        'images_per_camera': (2, 99),  # the file name's NN field has two digits
        'num_cameras': (2, MAX_CAMERAS),
        'height': (16, 4096), 'width': (16, 4096),
        'seed': (0, 2 ** 63 - 1),
    }
    for name, (low, high) in limits.items():
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f'{name} must be an integer in {low}..{high}, got {value!r}')
    total = params['num_train_ids'] + params['num_test_ids']
    if total > MAX_PID:
        raise ValueError(f'num_train_ids + num_test_ids must be at most {MAX_PID} '
                         f'(Market-1501 pids), got {total}')


def _read_marker(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _move_into_place(staging: Path, target: Path) -> None:
    """Swap ``staging`` in for ``target`` with renames, so ``target`` is never partial."""
    if target.exists():
        old = staging.with_name(staging.name + '.old')
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old)
    else:
        os.rename(staging, target)


def _write_dataset(folder: Path, params: dict, progress: bool) -> None:
    seed, size = params['seed'], (params['height'], params['width'])
    cameras = [_camera(seed, number, *size) for number in range(1, params['num_cameras'] + 1)]
    shots = list(_plan(params))
    for name in ('bounding_box_train', 'bounding_box_test', 'query'):
        (folder / name).mkdir()
    for shot in tqdm(shots, desc='synthetic Market-1501', unit='img', disable=not progress):
        rng = np.random.default_rng([seed, _IMAGE, shot.pid, shot.camera, shot.index])
        name = _file_name(shot, rng)
        image = _render(shot.look, cameras[shot.camera - 1], rng, distractor=shot.pid == 0)
        image.save(folder / shot.folder / name, format='JPEG', quality=JPEG_QUALITY)


def _plan(params: dict) -> Iterator[_Shot]:
    """Every image of the dataset, in a fixed order."""
    seed, num_train, num_test = params['seed'], params['num_train_ids'], params['num_test_ids']
    for pid in range(1, num_train + num_test + 1):
        look, cameras = _identity(seed, pid, params['num_cameras'])
        for camera in cameras:
            for index in range(params['images_per_camera']):
                folder = 'bounding_box_train'
                if pid > num_train:
                    folder = 'query' if index == 0 else 'bounding_box_test'
                yield _Shot(folder, look, pid, camera, index, index + 1)
    # Market-1501's gallery holds pid-0 "distractor" detections: one per four test ids,
    # at most MAX_DISTRACTORS_PER_CAMERA per camera, cycled over the cameras.
    num_cameras = params['num_cameras']
    for index in range(min(math.ceil(num_test / 4), MAX_DISTRACTORS_PER_CAMERA * num_cameras)):
        look = _look(np.random.default_rng([seed, _DISTRACTOR, index]))
        camera, number = index % num_cameras + 1, index // num_cameras + 1
        yield _Shot('bounding_box_test', look, 0, camera, index, number)


def _identity(seed: int, pid: int, num_cameras: int) -> Tuple[_Look, List[int]]:
    """An identity's look and the cameras that see it (at least two)."""
    rng = np.random.default_rng([seed, _IDENTITY, pid])
    look = _look(rng)
    count = int(rng.integers(2, num_cameras + 1))
    cameras = sorted(int(c) + 1 for c in rng.choice(num_cameras, size=count, replace=False))
    return look, cameras


def _look(rng: np.random.Generator) -> _Look:
    def colour(palette: Tuple[Colour, ...]) -> Colour:
        return palette[rng.integers(len(palette))]

    upper = int(rng.integers(len(_CLOTHES)))
    # The pattern's second colour differs from the first, or the pattern would vanish.
    second = (upper + 1 + int(rng.integers(len(_CLOTHES) - 1))) % len(_CLOTHES)
    return _Look(
        height=float(rng.uniform(0.78, 0.92)), breadth=float(rng.uniform(0.11, 0.16)),
        skin=colour(_SKIN), hair=colour(_HAIR), long_hair=bool(rng.random() < 0.35),
        upper=_CLOTHES[upper], upper_second=_CLOTHES[second],
        pattern=_PATTERNS[rng.integers(len(_PATTERNS))],
        short_sleeves=bool(rng.random() < 0.4),
        lower=colour(_CLOTHES), lower_kind=_LOWER_KINDS[rng.integers(len(_LOWER_KINDS))],
        shoes=colour(_CLOTHES[:5]),  # shoes come in the plainer colours
        accessory=_ACCESSORIES[rng.integers(len(_ACCESSORIES))],
        accessory_colour=colour(_CLOTHES), accessory_side=int(rng.choice((-1, 1))),
    )


def _camera(seed: int, number: int, height: int, width: int) -> _Camera:
    rng = np.random.default_rng([seed, _CAMERA, number])

    def surface() -> np.ndarray:  # streets and walls: greyish, slightly tinted
        return rng.uniform(60, 200) + rng.normal(0, 15, size=3)

    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = surface(), surface()
    background = np.broadcast_to(top + (bottom - top) * rows, (height, width, 3)).copy()
    # Poles, doors and shop fronts: a few vertical bands of their own colour.
    for _ in range(int(rng.integers(1, 4))):
        left = int(rng.integers(width))
        span = max(1, int(rng.uniform(0.05, 0.3) * width))
        background[:, left:left + span] = surface()
    floor = int(rng.uniform(0.72, 0.9) * height)
    background[floor:] = surface()
    # Low-frequency texture: coarse noise upsampled to full size.
    coarse = rng.normal(0, 18, size=(max(2, height // 16), max(2, width // 16), 3))
    texture = Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255)))
    background += np.asarray(texture.resize((width, height), Image.BILINEAR), np.float32) - 128

    brightness = rng.uniform(0.6, 1.3)
    cast = np.clip(rng.normal(1.0, 0.1, size=3), 0.8, 1.2)
    return _Camera(
        background=background, light=(brightness * cast).astype(np.float32),
        blur=float(rng.uniform(0.0, 1.2) * height / 128), noise=float(rng.uniform(2, 8)),
    )


def _file_name(shot: _Shot, rng: np.random.Generator) -> str:
    sequence, frame = int(rng.integers(1, 7)), int(rng.integers(10 ** 6))
    return f'{shot.pid:04d}_c{shot.camera}s{sequence}_{frame:06d}_{shot.number:02d}.jpg'


def _render(look: _Look, camera: _Camera, rng: np.random.Generator,
            distractor: bool) -> Image.Image:
    height, width = camera.background.shape[:2]
    scene = np.roll(camera.background, int(rng.integers(width)), axis=1)
    image = Image.fromarray(np.uint8(np.clip(scene, 0, 255)))

    figure = look.height * height * rng.uniform(0.9, 1.05)
    # Distractors are bad detections: the person is mostly out of frame.
    shift = rng.uniform(0.35, 0.6) * rng.choice((-1, 1)) if distractor \
        else rng.uniform(-0.1, 0.1)
    centre = width / 2 + shift * width
    top = (height - figure) / 2 + rng.uniform(-0.04, 0.04) * height
    flip = int(rng.choice((-1, 1)))
    stride = float(rng.uniform(0.0, 0.3))
    _draw_person(ImageDraw.Draw(image), look, centre, top, figure, flip, stride)

    light = camera.light * rng.normal(1.0, 0.05)
    pixels = np.asarray(image, np.float32) * light
    image = Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))
    if camera.blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(camera.blur))
    pixels = np.asarray(image, np.float32) + rng.normal(0, camera.noise, size=pixels.shape)
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))


def _draw_person(draw: ImageDraw.ImageDraw, look: _Look, centre: float, top: float,
                 figure: float, flip: int, stride: float) -> None:
    """Draw a front-facing figure in body units: u across (1 = half shoulder width,
    mirrored by ``flip``), v down from the top of the head (0) to the soles (1)."""
    half = look.breadth * figure

    def point(u: float, v: float) -> Tuple[float, float]:
        return centre + flip * u * half, top + v * figure

    def box(u0: float, v0: float, u1: float, v1: float) -> list:
        (x0, y0), (x1, y1) = point(u0, v0), point(u1, v1)
        return [min(x0, x1), y0, max(x0, x1), y1]

    def polygon(points, colour: Colour) -> None:
        draw.polygon([point(u, v) for u, v in points], fill=colour)

    side = look.accessory_side
    line = max(1, round(half * 0.15))
    if look.accessory == 'backpack':  # behind the body: only its edge shows
        draw.rectangle(box(0.9 * side, 0.17, 1.6 * side, 0.46), fill=look.accessory_colour)

    trousers = look.lower_kind == 'trousers'
    leg, leg_width = (look.lower, 0.4) if trousers else (look.skin, 0.28)
    for s in (-1, 1):
        foot = s * (0.45 + stride)
        polygon([(s * 0.05, 0.5), (s * 0.85, 0.5), (foot + s * leg_width, 0.95),
                 (foot - s * leg_width, 0.95)], leg)
        draw.rectangle(box(foot - 0.38, 0.94, foot + 0.38, 1.0), fill=look.shoes)
    if look.lower_kind == 'shorts':
        draw.rectangle(box(-0.9, 0.48, 0.9, 0.68), fill=look.lower)
    elif look.lower_kind == 'skirt':
        polygon([(-0.85, 0.48), (0.85, 0.48), (1.2, 0.75), (-1.2, 0.75)], look.lower)

    polygon([(-1, 0.16), (1, 0.16), (0.85, 0.52), (-0.85, 0.52)], look.upper)
    _draw_pattern(draw, look, box, figure)
    for s in (-1, 1):
        polygon([(s * 1.0, 0.17), (s * 1.32, 0.19), (s * 1.3, 0.48), (s * 1.04, 0.48)],
                look.upper)
        if look.short_sleeves:
            draw.rectangle(box(s * 1.06, 0.3, s * 1.29, 0.48), fill=look.skin)
        draw.ellipse(box(s * 1.04, 0.47, s * 1.3, 0.53), fill=look.skin)  # hand
        if look.accessory == 'backpack':  # shoulder straps
            draw.line([point(s * 0.55, 0.16), point(s * 0.55, 0.4)],
                      fill=look.accessory_colour, width=line)

    if look.long_hair:
        draw.rectangle(box(-0.5, 0.04, 0.5, 0.22), fill=look.hair)
    draw.rectangle(box(-0.2, 0.12, 0.2, 0.17), fill=look.skin)  # neck
    draw.ellipse(box(-0.46, 0.0, 0.46, 0.1), fill=look.hair)
    draw.ellipse(box(-0.4, 0.03, 0.4, 0.14), fill=look.skin)
    if look.accessory == 'hat':
        draw.rectangle(box(-0.5, -0.01, 0.5, 0.05), fill=look.accessory_colour)
        draw.rectangle(box(-0.68, 0.045, 0.68, 0.07), fill=look.accessory_colour)
    elif look.accessory == 'handbag':
        draw.line([point(side * 1.1, 0.2), point(side * 1.45, 0.45)],
                  fill=look.accessory_colour, width=line)
        draw.rectangle(box(side * 1.2, 0.44, side * 1.75, 0.6), fill=look.accessory_colour)


def _draw_pattern(draw: ImageDraw.ImageDraw, look: _Look, box, figure: float) -> None:
    """Stripes or checks of the second colour over the torso."""
    if look.pattern == 'solid':
        return
    fill = look.upper_second
    step = max(2.0 / figure, 0.045)  # period in v units, at least 2 pixels
    column = step / look.breadth  # the same period in pixels across, in u units
    rows, columns = np.arange(0.18, 0.5, step), np.arange(-0.85, 0.85, column)
    if look.pattern == 'hstripes':
        for v in rows[::2]:
            draw.rectangle(box(-0.85, v, 0.85, v + step), fill=fill)
    elif look.pattern == 'vstripes':
        for u in columns[::2]:
            draw.rectangle(box(u, 0.18, min(u + column, 0.85), 0.5), fill=fill)
    else:
        for i, v in enumerate(rows):
            for u in columns[i % 2::2]:
                draw.rectangle(box(u, v, min(u + column, 0.85), min(v + step, 0.5)), fill=fill)
