"""Small synthetic re-identification datasets in the on-disk layouts of real ones.

* :func:`make_market1501` writes persons as ``<root>/market1501/Market-1501-v15.09.15/``
  (``bounding_box_train``, ``bounding_box_test``, ``query`` of ``PPPP_cCsS_FFFFFF_NN.jpg``),
  which torchreid's own ``Market1501`` reads unchanged. It is the built-in demo data: big
  enough for a CNN trained for a few minutes on a CPU to clearly beat its untrained self,
  small enough to generate in seconds.
* :func:`make_veri` writes vehicles as ``<root>/veri/`` (``image_train``, ``image_query``,
  ``image_test`` of ``VVVV_cCCC_FFFFFFFF_0.jpg``), read by :class:`msinet_reid.data.VeRi`.
* :func:`make_vehicleid` writes vehicles as ``<root>/vehicleid/`` (``image/NNNNNNN.jpg`` and
  ``train_test_split/`` lists), read by :class:`msinet_reid.data.VehicleID`.

Design:

* Identity is the *combination* of attributes (a person's body, clothes and accessory; a
  vehicle's type, body colour, stripe, glass, rims, roof item and plate), each drawn from
  a small palette, so many identities share any single attribute.
* Cameras are nuisances the model has to see through: each has its own background,
  illumination (gain and colour cast), blur and noise level (and for vehicles, the views
  it sees); each image adds position, scale, pose or viewpoint, mirror and pixel jitter.
* Determinism: every random choice comes from ``numpy.random.default_rng`` seeded with
  ``(seed, stream, ...)`` -- an identity from its pid, a camera from its number, an image
  from (pid, camera, index) -- so files do not depend on generation order.
* Atomicity: a dataset is written into a temporary sibling folder whose last file is a
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
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from .scenes import (DOMAINS, Camera, Colour, Domain, Look, draw_person, photograph,
                     random_camera, random_look, random_stream)

__all__ = ['DOMAINS', 'Domain', 'make_market1501', 'make_vehicleid', 'make_veri']

MARKER = 'synthetic.json'
# Bump when the images change, so that datasets written by older code are regenerated.
FORMAT_VERSION = 1

JPEG_QUALITY = 90
MAX_DISTRACTORS_PER_CAMERA = 8

# Market-1501's distractors' stream tag (the layouts below hold the others).
_DISTRACTOR = 4

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class _Layout:
    """One dataset: where it goes, what its real release allows (the limits of the
    parameters) and its random streams."""

    name: str  # for messages and the progress bar
    folder: Tuple[str, ...]  # where it lives under ``root``
    max_ids: int  # pids are 1..max_ids
    max_cameras: int
    min_images_per_camera: int
    min_test_ids: int
    # Stream tags: the first seed word after `seed`, so that the streams never coincide.
    identity_stream: int
    camera_stream: int
    image_stream: int


# torchreid asserts 1 <= camid <= 6 and pid <= 1501. A test identity needs a query and a
# gallery image per camera.
MARKET1501 = _Layout('Market-1501', ('market1501', 'Market-1501-v15.09.15'), max_ids=1501,
                     max_cameras=6, min_images_per_camera=2, min_test_ids=1,
                     identity_stream=1, camera_stream=2, image_stream=3)
VERI = _Layout('VeRi-776', ('veri',), max_ids=776, max_cameras=20, min_images_per_camera=2,
               min_test_ids=1, identity_stream=5, camera_stream=6, image_stream=7)
# VehicleID's gallery is picked by its reader, so one image per camera will do; the three
# nested test lists need three test identities.
VEHICLEID = _Layout('VehicleID', ('vehicleid',), max_ids=26267, max_cameras=20,
                    min_images_per_camera=1, min_test_ids=3,
                    identity_stream=8, camera_stream=9, image_stream=10)


@dataclass(frozen=True)
class _Shot:
    """One image to write: pid 0 marks a distractor."""

    split: str  # 'train', 'query' or 'gallery'
    look: Any
    pid: int
    camera: int
    index: int  # seeds the image's random stream
    number: int  # the image's number in its (pid, camera) sequence, from 1


# ----------------------------------------------------------------------------------------
# The generators


def make_market1501(
    root: PathLike, num_train_ids: int = 64, num_test_ids: int = 64,
    images_per_camera: int = 3, num_cameras: int = 6, height: int = 128, width: int = 64,
    seed: int = 0, progress: bool = True, domain: str = 'street',
) -> Path:
    """Generate (or reuse) a synthetic Market-1501 under ``root`` and return its folder.

    Train and test identities are disjoint; each identity is seen by a random subset of
    at least two cameras, ``images_per_camera`` images per camera. For a test identity
    one image per camera goes to ``query`` and the rest to ``bounding_box_test``, so every
    query has gallery matches from other cameras; the gallery also gets a few pid-0
    distractors. The result is ``<root>/market1501/Market-1501-v15.09.15``, which is
    what ``torchreid.data.datasets.image.Market1501(root=root)`` reads.

    ``domain`` sets the look of the world (:data:`DOMAINS`): ``'street'``, the default,
    or ``'campus'``, a shifted domain for unsupervised domain adaptation (a labelled
    source in one, an unlabelled target in the other): other backgrounds, a winter
    palette of clothes, dimmer and bluer light, blurrier and noisier cameras. Give the
    two domains different roots and seeds, so that they hold different people.

    Raises ``ValueError`` for out-of-range arguments and ``FileExistsError`` if that
    folder exists but was not written by this module (it is never deleted).

    Example::

        >>> folder = make_market1501('reid-data', num_train_ids=8, num_test_ids=4,
        ...                          height=64, width=32, progress=False)
    """
    if domain not in DOMAINS:
        raise ValueError(f'domain must be one of {", ".join(DOMAINS)}, got {domain!r}')
    params = _parameters(num_train_ids, num_test_ids, images_per_camera, num_cameras, height,
                         width, seed)
    if domain != 'street':  # the default's marker stays as it was, so its data is reused
        params['domain'] = domain
    return _generate(MARKET1501, root, params, progress, _write_market1501)


def make_veri(
    root: PathLike, num_train_ids: int = 64, num_test_ids: int = 32,
    images_per_camera: int = 3, num_cameras: int = 20, height: int = 128, width: int = 128,
    seed: int = 0, progress: bool = True,
) -> Path:
    """Generate (or reuse) a synthetic VeRi-776 of vehicles under ``root``; return its folder.

    Identities and cameras as in :func:`make_market1501` (each vehicle seen by at least
    two cameras, one query per test vehicle and camera, the rest in ``image_test``), without
    distractors. Each camera sees vehicles from its own side: front, rear, side or both
    ends. The result is ``<root>/veri``, what ``msinet_reid.data.VeRi(root=root)`` reads.
    The paper trains vehicles at 256x256; 64x64 is enough for tests.

    Example::

        >>> folder = make_veri('reid-data', num_train_ids=8, num_test_ids=4, num_cameras=6,
        ...                    height=64, width=64, progress=False)
    """
    params = _parameters(num_train_ids, num_test_ids, images_per_camera, num_cameras, height,
                         width, seed)
    return _generate(VERI, root, params, progress, _write_veri)


def make_vehicleid(
    root: PathLike, num_train_ids: int = 64, num_test_ids: int = 48,
    images_per_camera: int = 2, num_cameras: int = 4, height: int = 128, width: int = 128,
    seed: int = 0, progress: bool = True,
) -> Path:
    """Generate (or reuse) a synthetic VehicleID under ``root`` and return its folder.

    Vehicles are seen from the front or the rear by at least two of ``num_cameras``
    cameras (which VehicleID does not record). ``train_test_split/train_list.txt`` lists
    the train vehicles; ``test_list_2400.txt`` all test vehicles, and the 1600 and 800
    lists the first two thirds and third of them. The result is ``<root>/vehicleid``,
    what ``msinet_reid.data.VehicleID(root=root)`` reads.

    Example::

        >>> folder = make_vehicleid('reid-data', num_train_ids=8, num_test_ids=6,
        ...                         height=64, width=64, progress=False)
    """
    params = _parameters(num_train_ids, num_test_ids, images_per_camera, num_cameras, height,
                         width, seed)
    return _generate(VEHICLEID, root, params, progress, _write_vehicleid)


# ----------------------------------------------------------------------------------------
# What every generator shares: validation, reuse, atomic writing, RNG streams, progress


def _parameters(num_train_ids: int, num_test_ids: int, images_per_camera: int,
                num_cameras: int, height: int, width: int, seed: int) -> dict:
    """The parameters every generator takes, in the order its marker records them."""
    return {
        'num_train_ids': num_train_ids, 'num_test_ids': num_test_ids,
        'images_per_camera': images_per_camera, 'num_cameras': num_cameras,
        'height': height, 'width': width, 'seed': seed,
    }


def _generate(layout: _Layout, root: PathLike, params: dict, progress: bool,
              write: Callable[[Path, dict, bool], None]) -> Path:
    """Validate ``params``, then reuse the dataset or ``write`` it atomically."""
    _validate(layout, params)
    marker = {'generator': __name__, 'format': FORMAT_VERSION, 'parameters': params}
    target = Path(root).expanduser().resolve().joinpath(*layout.folder)
    return write_once(target, marker, lambda staging: write(staging, params, progress))


def write_once(target: Path, marker: dict, write: Callable[[Path], None]) -> Path:
    """``target`` as ``write(folder)`` fills it, written atomically and only once.

    A folder holding the same ``marker`` is reused as it is; one with another marker of
    ours is replaced; a non-empty folder without our marker is never touched.
    """
    found = _read_marker(target)
    if found == marker:
        return target
    if found is None and target.exists() and any(target.iterdir()):
        # Without our marker this is not ours (a real dataset?): never delete it.
        raise FileExistsError(f'{target} exists and was not written by {marker["generator"]}; '
                              'move it away or choose another root')

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f'.{target.name}.', dir=target.parent))
    try:
        write(staging)
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + '\n')
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _validate(layout: _Layout, params: dict) -> None:
    limits = {
        'num_train_ids': (1, layout.max_ids - 1),
        'num_test_ids': (layout.min_test_ids, layout.max_ids - 1),
        'images_per_camera': (layout.min_images_per_camera, 99),  # two-digit name fields
        'num_cameras': (2, layout.max_cameras),  # every identity is seen by two at least
        'height': (16, 4096), 'width': (16, 4096),
        'seed': (0, 2 ** 63 - 1),
    }
    for name, (low, high) in limits.items():
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f'{name} must be an integer in {low}..{high}, got {value!r}')
    total = params['num_train_ids'] + params['num_test_ids']
    if total > layout.max_ids:
        raise ValueError(f'num_train_ids + num_test_ids must be at most {layout.max_ids} '
                         f'({layout.name} pids), got {total}')


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


def _camera_streams(layout: _Layout, params: dict) -> Iterator[np.random.Generator]:
    """The random stream of each camera, in camera order."""
    for number in range(1, params['num_cameras'] + 1):
        yield random_stream(params['seed'], layout.camera_stream, number)


def _write_images(folder: Path, shots: Sequence[_Shot],
                  shoot: Callable[[_Shot, np.random.Generator], Tuple[str, Image.Image]],
                  layout: _Layout, params: dict, progress: bool) -> None:
    """Render every shot with its own random stream; ``shoot`` returns the image and its
    path under ``folder``."""
    for shot in tqdm(shots, desc=f'synthetic {layout.name}', unit='img', disable=not progress):
        rng = random_stream(params['seed'], layout.image_stream, shot.pid, shot.camera,
                            shot.index)
        path, image = shoot(shot, rng)
        image.save(folder / path, format='JPEG', quality=JPEG_QUALITY)


def _plan(layout: _Layout, params: dict, draw_look: Callable[[np.random.Generator], Any]
          ) -> Iterator[_Shot]:
    """Every identity's images, in a fixed order: pids 1..num_train_ids train, the rest
    test, each seen by a random subset of at least two cameras; a test identity's first
    image of each camera is its query from that camera."""
    seed, num_train, num_test = params['seed'], params['num_train_ids'], params['num_test_ids']
    num_cameras = params['num_cameras']
    for pid in range(1, num_train + num_test + 1):
        rng = random_stream(seed, layout.identity_stream, pid)
        look = draw_look(rng)
        count = int(rng.integers(2, num_cameras + 1))
        for camera in sorted(int(c) + 1 for c in rng.choice(num_cameras, size=count,
                                                            replace=False)):
            for index in range(params['images_per_camera']):
                split = 'train'
                if pid > num_train:
                    split = 'query' if index == 0 else 'gallery'
                yield _Shot(split, look, pid, camera, index, index + 1)


# ----------------------------------------------------------------------------------------
# Persons: Market-1501

_MARKET_FOLDERS = {'train': 'bounding_box_train', 'query': 'query',
                   'gallery': 'bounding_box_test'}


def _write_market1501(folder: Path, params: dict, progress: bool) -> None:
    domain = DOMAINS[params.get('domain', 'street')]
    cameras = [random_camera(rng, params['height'], params['width'], domain)
               for rng in _camera_streams(MARKET1501, params)]
    for name in _MARKET_FOLDERS.values():
        (folder / name).mkdir()

    def shoot(shot: _Shot, rng: np.random.Generator) -> Tuple[str, Image.Image]:
        sequence, frame = int(rng.integers(1, 7)), int(rng.integers(10 ** 6))
        name = f'{shot.pid:04d}_c{shot.camera}s{sequence}_{frame:06d}_{shot.number:02d}.jpg'
        image = _render(shot.look, cameras[shot.camera - 1], rng, distractor=shot.pid == 0)
        return f'{_MARKET_FOLDERS[shot.split]}/{name}', image

    def look(rng: np.random.Generator) -> Look:
        return random_look(rng, domain.clothes)

    shots = [*_plan(MARKET1501, params, look), *_distractors(params, look)]
    _write_images(folder, shots, shoot, MARKET1501, params, progress)


def _distractors(params: dict, draw_look: Callable[[np.random.Generator], Look]
                 ) -> Iterator[_Shot]:
    """Market-1501's gallery holds pid-0 "distractor" detections: one per four test ids,
    at most MAX_DISTRACTORS_PER_CAMERA per camera, cycled over the cameras."""
    seed, num_cameras = params['seed'], params['num_cameras']
    count = min(math.ceil(params['num_test_ids'] / 4), MAX_DISTRACTORS_PER_CAMERA * num_cameras)
    for index in range(count):
        look = draw_look(random_stream(seed, _DISTRACTOR, index))
        camera, number = index % num_cameras + 1, index // num_cameras + 1
        yield _Shot('gallery', look, 0, camera, index, number)


def _render(look: Look, camera: Camera, rng: np.random.Generator,
            distractor: bool) -> Image.Image:
    height, width = camera.background.shape[:2]

    def person(draw: ImageDraw.ImageDraw) -> None:
        figure = look.height * height * rng.uniform(0.9, 1.05)
        # Distractors are bad detections: the person is mostly out of frame.
        shift = rng.uniform(0.35, 0.6) * rng.choice((-1, 1)) if distractor \
            else rng.uniform(-0.1, 0.1)
        centre = width / 2 + shift * width
        top = (height - figure) / 2 + rng.uniform(-0.04, 0.04) * height
        flip = int(rng.choice((-1, 1)))
        stride = float(rng.uniform(0.0, 0.3))
        draw_person(draw, look, centre, top, figure, flip, stride)

    return photograph(camera, rng, person)


# ----------------------------------------------------------------------------------------
# Vehicles: VeRi-776 and VehicleID

_VERI_FOLDERS = {'train': 'image_train', 'query': 'image_query', 'gallery': 'image_test'}
# The sides of a vehicle a VeRi camera sees; VehicleID only has front and rear views.
_VERI_VIEWS = (('front',), ('rear',), ('side',), ('front', 'rear'))
_VEHICLEID_VIEWS = (('front', 'rear'),)
_VEHICLEID_TEST_SIZES = (800, 1600, 2400)

_PAINTS: Tuple[Colour, ...] = (
    (236, 236, 232), (22, 22, 26), (176, 178, 182), (96, 98, 104), (180, 28, 32),
    (36, 64, 150), (20, 30, 70), (34, 96, 58), (232, 196, 40), (96, 62, 40),
    (206, 186, 150), (222, 110, 30),
)
_GLASS: Tuple[Colour, ...] = ((44, 54, 66), (78, 100, 112), (20, 22, 26))
_RIMS: Tuple[Colour, ...] = ((196, 196, 200), (58, 58, 62), (160, 128, 64))
_PLATES: Tuple[Colour, ...] = ((30, 70, 190), (230, 190, 40), (236, 236, 236), (40, 150, 80))
_ROOF_ITEMS = (None, 'rack', 'sign', 'box')
_TYRE: Colour = (24, 24, 26)
_HEADLAMP: Colour = (242, 240, 214)
_TAIL_LAMP: Colour = (204, 30, 36)
_GRILLE: Colour = (34, 34, 38)
# A vehicle is about 2.5 times as long as it is wide: front and rear views draw heights
# in half-lengths, widths in half-widths.
_LENGTH_PER_WIDTH = 2.5

Points = Tuple[Tuple[float, float], ...]


@dataclass(frozen=True)
class _Body:
    """A vehicle type's side profile in half-lengths: u forward from the centre, v up
    from the ground."""

    outline: Points
    windows: Points
    pillars: Tuple[float, ...]  # u of the posts between the side windows
    belt: float  # v of the bottom of the windows
    roof: float  # v of the roof
    roof_span: Tuple[float, float]  # u range of the flat roof
    wheel: float  # wheel radius
    axles: Tuple[float, float]  # u of the axles


_BODIES: Dict[str, _Body] = {
    'sedan': _Body(
        outline=((-1, .14), (1, .14), (1, .34), (.45, .38), (.2, .6), (-.45, .6), (-.75, .4),
                 (-1, .38)),
        windows=((.38, .41), (.17, .56), (-.42, .56), (-.66, .41)), pillars=(-.12,),
        belt=.4, roof=.6, roof_span=(-.45, .2), wheel=.15, axles=(.62, -.62)),
    'hatchback': _Body(
        outline=((-1, .14), (1, .14), (1, .36), (.5, .4), (.22, .64), (-.88, .64), (-1, .46)),
        windows=((.43, .43), (.19, .6), (-.84, .6), (-.93, .45)), pillars=(-.15, -.55),
        belt=.43, roof=.64, roof_span=(-.88, .22), wheel=.15, axles=(.62, -.64)),
    'suv': _Body(
        outline=((-1, .16), (1, .16), (1, .44), (.58, .5), (.36, .78), (-.96, .78), (-1, .5)),
        windows=((.51, .52), (.33, .74), (-.92, .74), (-.95, .52)), pillars=(-.1, -.5),
        belt=.5, roof=.78, roof_span=(-.96, .36), wheel=.19, axles=(.6, -.62)),
    'van': _Body(
        outline=((-1, .14), (1, .14), (1, .5), (.78, .88), (-1, .88)),
        windows=((.93, .54), (.74, .82), (-.9, .82), (-.9, .54)), pillars=(.3, -.3),
        belt=.52, roof=.88, roof_span=(-1, .78), wheel=.15, axles=(.66, -.66)),
    'bus': _Body(
        outline=((-1, .12), (1, .12), (1, .92), (-1, .92)),
        windows=((.96, .5), (.96, .84), (-.96, .84), (-.96, .5)), pillars=(.6, .2, -.2, -.6),
        belt=.48, roof=.92, roof_span=(-1, 1), wheel=.13, axles=(.7, -.6)),
}


@dataclass(frozen=True)
class _Vehicle:
    """The stable appearance of one vehicle."""

    body: _Body
    paint: Colour
    stripe: Optional[Colour]  # a decal along the body
    glass: Colour
    rims: Colour
    plate: Colour
    roof_item: Optional[str]
    roof_item_colour: Colour


@dataclass(frozen=True)
class _RoadCamera:
    """A camera and the sides of the vehicles it sees."""

    scene: Camera
    views: Tuple[str, ...]


@dataclass(frozen=True)
class _Frame:
    """Where a vehicle is drawn: ``u`` across (mirrored by ``flip``), ``v`` up."""

    centre: float
    ground: float
    across: float  # pixels per u unit
    up: float  # pixels per v unit
    flip: int

    def point(self, u: float, v: float) -> Tuple[float, float]:
        return self.centre + self.flip * u * self.across, self.ground - v * self.up

    def box(self, u0: float, v0: float, u1: float, v1: float) -> list:
        (x0, y0), (x1, y1) = self.point(u0, v0), self.point(u1, v1)
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def polygon(self, points: Points) -> list:
        return [self.point(u, v) for u, v in points]


def _write_veri(folder: Path, params: dict, progress: bool) -> None:
    cameras = _road_cameras(VERI, params, _VERI_VIEWS)
    for name in _VERI_FOLDERS.values():
        (folder / name).mkdir()

    def shoot(shot: _Shot, rng: np.random.Generator) -> Tuple[str, Image.Image]:
        # VeRi names a frame of the camera's video; the index keeps them unique.
        frame = int(rng.integers(10 ** 6)) * 100 + shot.index
        name = f'{shot.pid:04d}_c{shot.camera:03d}_{frame:08d}_0.jpg'
        image = _render_vehicle(shot.look, cameras[shot.camera - 1], rng)
        return f'{_VERI_FOLDERS[shot.split]}/{name}', image

    _write_images(folder, list(_plan(VERI, params, _vehicle)), shoot, VERI, params, progress)


def _write_vehicleid(folder: Path, params: dict, progress: bool) -> None:
    cameras = _road_cameras(VEHICLEID, params, _VEHICLEID_VIEWS)
    shots = list(_plan(VEHICLEID, params, _vehicle))
    names = {(shot.pid, shot.camera, shot.index): f'{number:07d}'
             for number, shot in enumerate(shots, 1)}

    def listing(pids: range) -> str:
        return ''.join(f'{names[shot.pid, shot.camera, shot.index]} {shot.pid}\n'
                       for shot in shots if shot.pid in pids)

    split = folder / 'train_test_split'
    split.mkdir()
    num_train, num_test = params['num_train_ids'], params['num_test_ids']
    (split / 'train_list.txt').write_text(listing(range(1, num_train + 1)))
    for size in _VEHICLEID_TEST_SIZES:
        count = max(1, num_test * size // _VEHICLEID_TEST_SIZES[-1])
        (split / f'test_list_{size}.txt').write_text(
            listing(range(num_train + 1, num_train + count + 1)))
    (folder / 'image').mkdir()

    def shoot(shot: _Shot, rng: np.random.Generator) -> Tuple[str, Image.Image]:
        image = _render_vehicle(shot.look, cameras[shot.camera - 1], rng)
        return f'image/{names[shot.pid, shot.camera, shot.index]}.jpg', image

    _write_images(folder, shots, shoot, VEHICLEID, params, progress)


def _road_cameras(layout: _Layout, params: dict, views: Tuple[Tuple[str, ...], ...]
                  ) -> List[_RoadCamera]:
    cameras = []
    for rng in _camera_streams(layout, params):
        scene = random_camera(rng, params['height'], params['width'], DOMAINS['street'])
        cameras.append(_RoadCamera(scene, views[rng.integers(len(views))]))
    return cameras


def _vehicle(rng: np.random.Generator) -> _Vehicle:
    def pick(options: tuple):
        return options[rng.integers(len(options))]

    paint = int(rng.integers(len(_PAINTS)))
    # A stripe on a third of the vehicles, never in the body's own colour.
    stripe = _PAINTS[(paint + 1 + int(rng.integers(len(_PAINTS) - 1))) % len(_PAINTS)]
    return _Vehicle(
        body=_BODIES[pick(tuple(_BODIES))], paint=_PAINTS[paint],
        stripe=stripe if rng.random() < 1 / 3 else None, glass=pick(_GLASS),
        rims=pick(_RIMS), plate=pick(_PLATES), roof_item=pick(_ROOF_ITEMS),
        roof_item_colour=pick(_PAINTS),
    )


def _render_vehicle(look: _Vehicle, camera: _RoadCamera, rng: np.random.Generator
                    ) -> Image.Image:
    height, width = camera.scene.background.shape[:2]
    body = look.body

    def vehicle(draw: ImageDraw.ImageDraw) -> None:
        view = camera.views[rng.integers(len(camera.views))]
        scale = rng.uniform(0.85, 1.0)
        # Side views span the image with the length, front and rear views with the width.
        across = width * scale * (0.46 if view == 'side' else 0.36)
        up = across * (1 if view == 'side' else _LENGTH_PER_WIDTH)
        up = min(up, 0.9 * height / (body.roof + 0.1))  # roof items stay in the picture
        ground = (height + body.roof * up) / 2 + rng.uniform(-0.04, 0.04) * height
        frame = _Frame(width / 2 + rng.uniform(-0.05, 0.05) * width, ground, across, up,
                       flip=int(rng.choice((-1, 1))))
        if view == 'side':
            _draw_side(draw, look, frame)
        else:
            _draw_end(draw, look, frame, front=view == 'front')

    return photograph(camera.scene, rng, vehicle)


def _draw_side(draw: ImageDraw.ImageDraw, look: _Vehicle, frame: _Frame) -> None:
    body = look.body
    draw.polygon(frame.polygon(body.outline), fill=look.paint)
    draw.polygon(frame.polygon(body.windows), fill=look.glass)
    post = max(1, round(0.04 * frame.across))
    for u in body.pillars:
        draw.line([frame.point(u, body.belt), frame.point(u, body.roof)], fill=look.paint,
                  width=post)
    if look.stripe:
        draw.rectangle(frame.box(-0.98, body.belt - 0.1, 0.98, body.belt - 0.06),
                       fill=look.stripe)
    draw.rectangle(frame.box(0.94, body.belt - 0.08, 1.0, body.belt - 0.02), fill=_HEADLAMP)
    draw.rectangle(frame.box(-1.0, body.belt - 0.08, -0.95, body.belt - 0.02), fill=_TAIL_LAMP)
    for axle in body.axles:
        radius = body.wheel
        draw.ellipse(frame.box(axle - radius, 0, axle + radius, 2 * radius), fill=_TYRE)
        radius *= 0.55
        draw.ellipse(frame.box(axle - radius, body.wheel - radius, axle + radius,
                               body.wheel + radius), fill=look.rims)
    _draw_roof_item(draw, look, frame, *body.roof_span)


def _draw_end(draw: ImageDraw.ImageDraw, look: _Vehicle, frame: _Frame, front: bool) -> None:
    """The front or rear view: u in half-widths."""
    body = look.body
    for side in (-1, 1):
        draw.rectangle(frame.box(side * 0.62, 0, side * 0.9, 0.14), fill=_TYRE)
    draw.rectangle(frame.box(-1, 0.1, 1, body.belt), fill=look.paint)
    draw.polygon(frame.polygon(((-0.94, body.belt), (0.94, body.belt), (0.78, body.roof),
                                (-0.78, body.roof))), fill=look.paint)
    draw.polygon(frame.polygon(((-0.84, body.belt + 0.03), (0.84, body.belt + 0.03),
                                (0.72, body.roof - 0.05), (-0.72, body.roof - 0.05))),
                 fill=look.glass)
    if look.stripe:
        draw.rectangle(frame.box(-1, body.belt - 0.16, 1, body.belt - 0.13), fill=look.stripe)
    for side in (-1, 1):
        draw.rectangle(frame.box(side * 0.62, body.belt - 0.11, side * 0.92, body.belt - 0.04),
                       fill=_HEADLAMP if front else _TAIL_LAMP)
    if front:
        draw.rectangle(frame.box(-0.42, body.belt - 0.12, 0.42, body.belt - 0.04), fill=_GRILLE)
    draw.rectangle(frame.box(-0.2, 0.14, 0.2, 0.21), fill=look.plate)
    _draw_roof_item(draw, look, frame, -0.7, 0.7)


def _draw_roof_item(draw: ImageDraw.ImageDraw, look: _Vehicle, frame: _Frame,
                    left: float, right: float) -> None:
    """A roof rack, taxi sign or roof box over the roof between ``left`` and ``right``."""
    roof, middle, half = look.body.roof, (left + right) / 2, (right - left) / 2
    if look.roof_item == 'rack':
        draw.rectangle(frame.box(left + 0.1 * half, roof + 0.03, right - 0.1 * half,
                                 roof + 0.05), fill=look.roof_item_colour)
    elif look.roof_item == 'sign':
        draw.rectangle(frame.box(middle - 0.15, roof, middle + 0.15, roof + 0.08),
                       fill=look.roof_item_colour)
    elif look.roof_item == 'box':
        draw.rectangle(frame.box(middle - 0.7 * half, roof, middle + 0.6 * half, roof + 0.07),
                       fill=look.roof_item_colour)
