"""The synthetic world the datasets and tracking sequences are drawn in: cameras (a
background, light, blur and noise), persons (a look drawn from a domain's palettes, drawn
as a figure) and the random streams that make every image reproducible.

:mod:`.synthetic` photographs persons and vehicles one at a time for re-identification
datasets, :mod:`.tracking` several persons walking through one camera's frames; both draw
with these.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ['DOMAINS', 'Camera', 'Colour', 'Domain', 'Look', 'draw_person', 'photograph',
           'random_camera', 'random_look', 'random_stream']

Colour = Tuple[int, int, int]


@dataclass(frozen=True)
class Domain:
    """The look of a synthetic world: what its cameras see and what its people wear."""

    surface: Tuple[float, float]  # brightness range of background surfaces
    surface_tint: float  # standard deviation of their colour tint
    brightness: Tuple[float, float]  # range of a camera's gain
    cast: Tuple[float, float, float]  # mean colour cast of the light (R, G, B gains)
    cast_spread: float  # standard deviation of a camera's own cast around it
    blur: Tuple[float, float]  # range of the blur radius at 128 pixels high
    noise: Tuple[float, float]  # range of the pixel noise standard deviation
    clothes: Tuple[Colour, ...]  # 12 colours; the first 5 also for shoes


@dataclass(frozen=True)
class Camera:
    """What one camera does to every image it takes."""

    background: np.ndarray  # H x W x 3 float32
    light: np.ndarray  # per-channel gain: brightness times colour cast
    blur: float  # Gaussian blur radius in pixels
    noise: float  # pixel noise standard deviation


def random_stream(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The random stream of one thing: ``stream`` says what, ``keys`` which one."""
    return np.random.default_rng([seed, stream, *keys])


def random_camera(rng: np.random.Generator, height: int, width: int, domain: Domain) -> Camera:
    """A camera of ``domain``: a street background of ``height`` x ``width`` pixels,
    its own light, blur and noise."""
    def surface() -> np.ndarray:  # streets and walls: greyish, slightly tinted
        return rng.uniform(*domain.surface) + rng.normal(0, domain.surface_tint, size=3)

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

    brightness = rng.uniform(*domain.brightness)
    mean_cast, spread = np.asarray(domain.cast), domain.cast_spread
    cast = np.clip(rng.normal(mean_cast, spread, size=3), mean_cast - 2 * spread,
                   mean_cast + 2 * spread)
    return Camera(
        background=background, light=(brightness * cast).astype(np.float32),
        blur=float(rng.uniform(*domain.blur) * height / 128),
        noise=float(rng.uniform(*domain.noise)),
    )


def photograph(camera: Camera, rng: np.random.Generator,
               subject: Callable[[ImageDraw.ImageDraw], None]) -> Image.Image:
    """Draw ``subject`` over the camera's (shifted) background, then apply its light,
    blur and noise."""
    height, width = camera.background.shape[:2]
    scene = np.roll(camera.background, int(rng.integers(width)), axis=1)
    image = Image.fromarray(np.uint8(np.clip(scene, 0, 255)))
    subject(ImageDraw.Draw(image))

    light = camera.light * rng.normal(1.0, 0.05)
    pixels = np.asarray(image, np.float32) * light
    image = Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))
    if camera.blur > 0.05:
        image = image.filter(ImageFilter.GaussianBlur(camera.blur))
    pixels = np.asarray(image, np.float32) + rng.normal(0, camera.noise, size=pixels.shape)
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))


_CLOTHES: Tuple[Colour, ...] = (
    (28, 28, 32), (228, 228, 222), (128, 128, 130), (32, 42, 96), (52, 96, 196),
    (186, 36, 42), (40, 132, 64), (226, 192, 52), (112, 70, 38), (204, 182, 140),
    (224, 132, 168), (112, 52, 146),
)
# Dark, muted winter clothes for the campus domain.
_WINTER_CLOTHES: Tuple[Colour, ...] = (
    (16, 16, 20), (60, 60, 66), (92, 84, 76), (44, 40, 34), (30, 36, 58),
    (96, 24, 36), (24, 70, 72), (150, 120, 40), (70, 88, 40), (150, 150, 156),
    (118, 80, 100), (180, 90, 50),
)
DOMAINS: Dict[str, Domain] = {
    'street': Domain(surface=(60, 200), surface_tint=15, brightness=(0.6, 1.3),
                     cast=(1.0, 1.0, 1.0), cast_spread=0.1, blur=(0.0, 1.2), noise=(2, 8),
                     clothes=_CLOTHES),
    'campus': Domain(surface=(110, 240), surface_tint=30, brightness=(0.45, 0.9),
                     cast=(0.85, 0.95, 1.15), cast_spread=0.15, blur=(0.6, 1.8),
                     noise=(6, 14), clothes=_WINTER_CLOTHES),
}
_SKIN: Tuple[Colour, ...] = ((238, 200, 170), (210, 160, 120), (160, 110, 75), (100, 66, 45))
_HAIR: Tuple[Colour, ...] = (
    (20, 18, 18), (70, 42, 24), (130, 85, 45), (214, 180, 110), (160, 160, 160))
_PATTERNS = ('solid', 'hstripes', 'vstripes', 'checks')
_LOWER_KINDS = ('trousers', 'shorts', 'skirt')
_ACCESSORIES = (None, 'backpack', 'handbag', 'hat')


@dataclass(frozen=True)
class Look:
    """The stable appearance of one person."""

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


def random_look(rng: np.random.Generator, clothes: Tuple[Colour, ...]) -> Look:
    """A person's look: body, hair and skin, and clothes from the palette ``clothes``."""
    def colour(palette: Tuple[Colour, ...]) -> Colour:
        return palette[rng.integers(len(palette))]

    upper = int(rng.integers(len(clothes)))
    # The pattern's second colour differs from the first, or the pattern would vanish.
    second = (upper + 1 + int(rng.integers(len(clothes) - 1))) % len(clothes)
    return Look(
        height=float(rng.uniform(0.78, 0.92)), breadth=float(rng.uniform(0.11, 0.16)),
        skin=colour(_SKIN), hair=colour(_HAIR), long_hair=bool(rng.random() < 0.35),
        upper=clothes[upper], upper_second=clothes[second],
        pattern=_PATTERNS[rng.integers(len(_PATTERNS))],
        short_sleeves=bool(rng.random() < 0.4),
        lower=colour(clothes), lower_kind=_LOWER_KINDS[rng.integers(len(_LOWER_KINDS))],
        shoes=colour(clothes[:5]),  # shoes come in the plainer colours
        accessory=_ACCESSORIES[rng.integers(len(_ACCESSORIES))],
        accessory_colour=colour(clothes), accessory_side=int(rng.choice((-1, 1))),
    )


def draw_person(draw: ImageDraw.ImageDraw, look: Look, centre: float, top: float,
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


def _draw_pattern(draw: ImageDraw.ImageDraw, look: Look, box, figure: float) -> None:
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
