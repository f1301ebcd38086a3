"""Procedurally generated person re-ID data set in Market-1501's layout (numpy + PIL only, deterministic by seed).

An identity is a bundle of visual attributes (clothes colours, top pattern, sleeves, trousers/shorts/skirt, hair or
hat, bag kind and side, height and build). A camera fixes a background texture, light gain, colour cast, gamma,
saturation, blur, noise, person scale and how often it sees people from the back; each image then varies pose
(shift, lean, stride, flip), light and background crop. Colours are continuous and cameras distort them, so
identities are separable but cross-camera matching is not trivial.

Every image draws from its own RNG keyed by (seed, kind, id, camera, index): the output does not depend on the
order of generation, and the same seed gives byte-identical files (with the same numpy and Pillow versions).
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from swedge.data.market import MarketWriter, market_name
from swedge.errors import DataError

GENERATOR_VERSION = "1"  # bump whenever the same arguments would produce different images
_SS = 2  # draw at 2x and downsample: cheap anti-aliasing for ImageDraw's hard edges
_TRAIN, _TEST, _CAMERA, _PLAN, _DISTRACTOR, _JUNK, _IMAGE = range(1, 8)  # RNG stream keys


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


# A shop's worth of clothes colours (HSV): identities often share a top or trousers colour, so telling them
# apart needs the combination and the finer attributes (pattern, bag, hair, shoes), as in real re-ID.
_PALETTE = ((0, 0, 0.1), (0, 0, 0.3), (0, 0, 0.55), (0, 0, 0.88), (0.6, 0.55, 0.3), (0.6, 0.5, 0.6),
            (0.0, 0.75, 0.65), (0.08, 0.7, 0.8), (0.14, 0.7, 0.85), (0.33, 0.55, 0.45), (0.5, 0.5, 0.55),
            (0.75, 0.45, 0.5), (0.92, 0.4, 0.8), (0.08, 0.45, 0.45), (0.12, 0.25, 0.75))


def _cloth(rng) -> tuple[int, int, int]:
    """A palette colour with a little spread (dye lots and fading)."""
    h, s, v = _PALETTE[int(rng.integers(len(_PALETTE)))]
    return _hsv(h + rng.normal(0, 0.01), s + rng.normal(0, 0.04), v + rng.normal(0, 0.04))


_SKIN = [(0.07, 0.35, 0.95), (0.07, 0.45, 0.85), (0.06, 0.5, 0.7), (0.06, 0.55, 0.55), (0.05, 0.55, 0.38)]
_HAIR = [(0.08, 0.3, 0.08), (0.07, 0.6, 0.22), (0.07, 0.6, 0.4), (0.12, 0.55, 0.8), (0.0, 0.0, 0.65),
         (0.04, 0.75, 0.55)]


@dataclass(frozen=True)
class Person:
    """Visual attributes of one identity (widths are fractions of the body height)."""

    height: float
    build: float
    skin: tuple
    hair: tuple
    hair_style: str  # short / long / hat / bald
    hat: tuple
    top: tuple
    sleeves: str  # long / short
    pattern: str  # plain / stripes / band / logo
    pattern_colour: tuple
    stripes: int
    bottom: tuple
    bottom_style: str  # trousers / shorts / skirt
    shoes: tuple
    bag: str  # none / shoulder / backpack / hand
    bag_side: int  # -1 left, +1 right (before any flip)
    bag_colour: tuple


def make_person(rng: np.random.Generator) -> Person:
    pick = lambda options, p=None: options[int(rng.choice(len(options), p=p))]  # noqa: E731
    h, s, v = _SKIN[int(rng.integers(len(_SKIN)))]
    skin = _hsv(h + rng.uniform(-0.01, 0.01), s + rng.uniform(-0.05, 0.05), v + rng.uniform(-0.05, 0.05))
    h, s, v = _HAIR[int(rng.integers(len(_HAIR)))]
    hair = _hsv(h, s + rng.uniform(-0.1, 0.1), v + rng.uniform(-0.06, 0.06))
    return Person(
        height=float(rng.uniform(0.86, 1.0)),
        build=float(rng.uniform(0.8, 1.2)),
        skin=skin,
        hair=hair,
        hair_style=pick(["short", "long", "hat", "bald"], [0.5, 0.3, 0.15, 0.05]),
        hat=_cloth(rng),
        top=_cloth(rng),
        sleeves=pick(["long", "short"], [0.6, 0.4]),
        pattern=pick(["plain", "stripes", "band", "logo"], [0.55, 0.15, 0.15, 0.15]),
        pattern_colour=_cloth(rng),
        stripes=int(rng.integers(2, 6)),
        bottom=_cloth(rng),
        bottom_style=pick(["trousers", "shorts", "skirt"], [0.65, 0.2, 0.15]),
        shoes=_cloth(rng),
        bag=pick(["none", "shoulder", "backpack", "hand"], [0.4, 0.2, 0.25, 0.15]),
        bag_side=int(rng.choice([-1, 1])),
        bag_colour=_cloth(rng),
    )


@dataclass
class Camera:
    """Per-camera look; ``background`` and ``noise`` are tiles larger than an image, cropped at random offsets.

    The tone curve (gamma, gain, colour cast) is applied to each drawn colour and once to the background tile,
    not per image: the figure is flat-coloured polygons, so this equals a per-pixel curve at a fraction of the cost.
    """

    background: Image.Image  # already toned
    noise: Image.Image  # 128 +- sensor noise, added with offset -128
    light: Image.Image  # uneven light (255 = full), multiplied in
    gain: float
    cast: np.ndarray
    gamma: float
    saturation: float
    blur: float
    person_scale: float
    feet: float
    p_back: float
    p_flip: float
    lean: float
    p_occluder: float
    occluder: tuple
    _tones: dict = field(default_factory=dict, repr=False)

    def tone(self, colour: tuple) -> tuple:
        if colour not in self._tones:
            self._tones[colour] = tuple(int(v) for v in self.tone_array(np.asarray(colour, np.float32)))
        return self._tones[colour]

    def tone_array(self, rgb: np.ndarray) -> np.ndarray:
        out = (np.asarray(rgb, np.float32) / 255) ** self.gamma * (self.cast * (self.gain * 255))
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    @property
    def saturation_matrix(self) -> tuple:
        """RGB->RGB matrix moving each colour towards its grey level (saturation < 1) or away from it (> 1)."""
        s, g = self.saturation, (1 - self.saturation) / 3
        return (s + g, g, g, 0, g, s + g, g, 0, g, g, s + g, 0)


def _background(rng, h: int, w: int) -> np.ndarray:
    """A wall/street texture: smooth colour noise plus one of bands, tiles or a gradient, over a floor."""
    base = np.array(_hsv(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.3, 0.85)), np.float32)
    other = np.array(_hsv(rng.random(), rng.uniform(0.05, 0.5), rng.uniform(0.25, 0.9)), np.float32)
    floor = np.array(_hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.7)), np.float32)
    smooth = np.asarray(Image.fromarray((rng.random((6, 4)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    t = smooth.astype(np.float32)[..., None] / 255 * rng.uniform(0.3, 0.8)
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:  # shop fronts / trees: vertical bands of random width
        edges = np.cumsum(rng.integers(w // 12, w // 3, size=40))
        t = np.maximum(t, ((np.searchsorted(edges, xx) % 2) * rng.uniform(0.4, 1.0))[..., None])
    elif kind == 1:  # tiles or bricks
        step = int(rng.integers(h // 20, h // 6))
        t = np.maximum(t, (((yy % step) < 2) | ((xx % step) < 2))[..., None] * rng.uniform(0.5, 1.0))
    elif kind == 2:  # lit from one side
        t = t + (xx / w)[..., None] * rng.uniform(0.3, 0.8)
    img = base * (1 - np.clip(t, 0, 1)) + other * np.clip(t, 0, 1)
    horizon = int(h * rng.uniform(0.55, 0.85))
    img[horizon:] = floor + (img[horizon:] - img[horizon:].mean((0, 1))) * 0.3
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


_GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))
_CHROMA_PLANE = np.array([[2, -1, -1], [0, 1, -1]]) / np.array([[math.sqrt(6)], [math.sqrt(2)]])


def _light(rng, h: int, w: int) -> Image.Image:
    """A smooth light/shadow field (values 255 * 0.65..1): cropped at random, it shades each image unevenly."""
    field = np.asarray(Image.fromarray((rng.random((3, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC))
    return Image.fromarray((255 * (1 - rng.uniform(0.15, 0.35) * field / 255)).astype(np.uint8)).convert("RGB")


def _cast(angle: float, strength: float) -> np.ndarray:
    """Per-channel gains with geometric mean 1 (a pure hue shift) pointing at ``angle`` on the colour wheel."""
    return np.exp(strength * (math.cos(angle) * _CHROMA_PLANE[0] + math.sin(angle) * _CHROMA_PLANE[1]))


def make_camera(rng: np.random.Generator, size: tuple[int, int], index: int = 0, base_angle: float = 0.0) -> Camera:
    """Camera ``index``'s colour cast is spread from the others' by the golden angle, so a few cameras never
    share one tint by chance; everything else is drawn from ``rng``."""
    H, W = size
    cam = Camera(
        background=_background(rng, int(H * _SS * 1.3), int(W * _SS * 1.6)),
        noise=Image.fromarray(np.clip(rng.normal(128, rng.uniform(2, 7), (H * 2, W * 2, 3)), 0, 255).astype(np.uint8)),
        light=_light(rng, H * 2, W * 2),
        gain=float(np.exp(rng.uniform(-0.6, 0.3))),
        cast=_cast(base_angle + index * _GOLDEN_ANGLE, rng.uniform(0.1, 0.4)).astype(np.float32),
        gamma=float(np.exp(rng.uniform(-0.25, 0.25))),
        saturation=float(rng.uniform(0.45, 1.2)),
        blur=float(rng.choice([0.0, rng.uniform(0.3, 1.1)])),
        person_scale=float(rng.uniform(0.74, 0.92)),
        feet=float(rng.uniform(0.9, 0.99)),
        p_back=float(rng.uniform(0.0, 1.0)),
        p_flip=float(rng.uniform(0.2, 0.8)),
        lean=float(rng.uniform(0.01, 0.08)),
        p_occluder=float(rng.choice([0.0, rng.uniform(0.15, 0.4)])),
        occluder=_hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.1, 0.6)),
    )
    cam.background = Image.fromarray(cam.tone_array(cam.background))
    return cam


class _Figure:
    """Maps body coordinates (x across, y down; height 1, feet at y=1) to pixels with scale, lean and flip."""

    def __init__(self, draw, tone, cx, feet_y, height_px, lean, flip):
        self.d, self.tone, self.cx, self.feet = draw, tone, cx, feet_y
        self.hp, self.lean, self.f = height_px, lean, flip

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + (self.f * x + self.lean * (1 - y)) * self.hp, self.feet - (1 - y) * self.hp

    def poly(self, pts, fill) -> None:
        self.d.polygon([self.pt(x, y) for x, y in pts], fill=self.tone(fill))

    def limb(self, x0, y0, x1, y1, w0, w1, fill) -> None:
        """A tapered quad from (x0, y0) to (x1, y1), half-widths w0 and w1."""
        dx, dy = x1 - x0, y1 - y0
        n = math.hypot(dx, dy) or 1.0
        px, py = -dy / n, dx / n
        self.poly([(x0 + px * w0, y0 + py * w0), (x1 + px * w1, y1 + py * w1),
                   (x1 - px * w1, y1 - py * w1), (x0 - px * w0, y0 - py * w0)], fill)

    def ellipse(self, x, y, rx, ry, fill, start=None, end=None) -> None:
        cx, cy = self.pt(x, y)
        box = [cx - rx * self.hp, cy - ry * self.hp, cx + rx * self.hp, cy + ry * self.hp]
        if start is None:
            self.d.ellipse(box, fill=self.tone(fill))
        else:
            self.d.chord(box, start, end, fill=self.tone(fill))


def _draw_person(fig: _Figure, p: Person, rng, back: bool) -> None:
    b = p.build
    sw, ww, hip = 0.13 * b, 0.095 * b, 0.1 * b  # half-widths: shoulders, waist, hips
    stride, swing = rng.uniform(0.0, 0.07), rng.uniform(-0.04, 0.04)
    legw = 0.036 * b
    skin_leg = p.bottom_style in ("shorts", "skirt")
    # long hair falls behind the shoulders, so it goes first
    if p.hair_style == "long":
        fig.poly([(-0.07, 0.06), (0.07, 0.06), (0.08, 0.24 if back else 0.2), (-0.08, 0.24 if back else 0.2)], p.hair)
    if p.bag == "backpack" and not back:  # seen from the front: its sides peek out behind the shoulders
        fig.poly([(-sw - 0.025, 0.19), (sw + 0.025, 0.19), (sw + 0.025, 0.42), (-sw - 0.025, 0.42)], p.bag_colour)
    # legs (left, right) with a walking stride
    for side, dx in ((-1, -stride), (1, stride)):
        x0, x1 = side * hip * 0.5, side * hip * 0.45 + dx
        fig.limb(x0, 0.5, x1, 0.96, legw * 1.25, legw, p.skin if skin_leg else p.bottom)
        if p.bottom_style == "shorts":
            fig.limb(x0, 0.5, x0 + (x1 - x0) * 0.45, 0.71, legw * 1.4, legw * 1.25, p.bottom)
        fig.ellipse(x1 + side * 0.012, 0.975, 0.035, 0.022, p.shoes)
    if p.bottom_style == "skirt":
        fig.poly([(-ww, 0.48), (ww, 0.48), (hip * 1.5, 0.74), (-hip * 1.5, 0.74)], p.bottom)
    else:
        fig.poly([(-ww, 0.48), (ww, 0.48), (hip, 0.56), (-hip, 0.56)], p.bottom)
    # torso and its pattern (bands are horizontal slices of the same trapezoid)
    fig.poly([(-sw, 0.17), (sw, 0.17), (ww, 0.5), (-ww, 0.5)], p.top)

    def band(y0, y1, colour):
        a, b = (sw + (ww - sw) * (y - 0.17) / 0.33 for y in (y0, y1))  # torso half-width at y0, y1
        fig.poly([(-a, y0), (a, y0), (b, y1), (-b, y1)], colour)

    if p.pattern == "stripes":
        step = 0.33 / (2 * p.stripes)
        for i in range(p.stripes):
            band(0.17 + (2 * i + 1) * step, 0.17 + (2 * i + 2) * step, p.pattern_colour)
    elif p.pattern == "band":
        band(0.28, 0.36, p.pattern_colour)
    elif p.pattern == "logo" and not back:
        fig.poly([(-0.04, 0.23), (0.04, 0.23), (0.04, 0.3), (-0.04, 0.3)], p.pattern_colour)
    # bags
    if p.bag == "backpack":
        if back:
            fig.poly([(-0.085, 0.2), (0.085, 0.2), (0.08, 0.44), (-0.08, 0.44)], p.bag_colour)
        else:
            for s in (-1, 1):
                fig.limb(s * 0.07, 0.17, s * 0.06, 0.36, 0.012, 0.012, p.bag_colour)
    elif p.bag == "shoulder":
        s = p.bag_side
        fig.limb(-s * sw * 0.6, 0.17, s * (ww + 0.02), 0.46, 0.008, 0.008, p.bag_colour)
        fig.poly([(s * ww - 0.01, 0.44), (s * (ww + 0.07), 0.44), (s * (ww + 0.07), 0.56), (s * ww - 0.01, 0.56)],
                 p.bag_colour)
    # arms: sleeve then skin (short sleeves); hands at the ends
    for s in (-1, 1):
        sx, hx, hy = s * (sw - 0.012), s * (sw + 0.02) + swing * s, 0.5
        if p.sleeves == "long":
            fig.limb(sx, 0.18, hx, hy, 0.03 * b, 0.022 * b, p.top)
        else:
            fig.limb(sx, 0.18, hx, hy, 0.022 * b, 0.018 * b, p.skin)
            fig.limb(sx, 0.18, sx + (hx - sx) * 0.35, 0.18 + (hy - 0.18) * 0.35, 0.032 * b, 0.028 * b, p.top)
        fig.ellipse(hx, hy + 0.01, 0.02, 0.022, p.skin)
        if p.bag == "hand" and s == p.bag_side:
            fig.poly([(hx - 0.04, 0.5), (hx + 0.04, 0.5), (hx + 0.045, 0.64), (hx - 0.045, 0.64)], p.bag_colour)
    # neck and head
    fig.poly([(-0.02, 0.12), (0.02, 0.12), (0.02, 0.18), (-0.02, 0.18)], p.skin)
    if back and p.hair_style in ("short", "long"):
        fig.ellipse(0, 0.075, 0.056, 0.068, p.hair)
    else:
        fig.ellipse(0, 0.075, 0.052, 0.065, p.skin)
        if p.hair_style in ("short", "long"):
            fig.ellipse(0, 0.07, 0.056, 0.062, p.hair, 180, 360)
    if p.hair_style == "hat":
        fig.ellipse(0, 0.06, 0.058, 0.055, p.hat, 180, 360)
        fig.limb(-0.07, 0.058, 0.07, 0.058, 0.008, 0.008, p.hat)


def render(person: Person | None, cam: Camera, rng: np.random.Generator, size: tuple[int, int], *,
           partial: bool = False) -> Image.Image:
    """One camera view of ``person`` (None: background only, as junk detections are); ``partial``: a badly
    placed box that cuts the person off (distractor style)."""
    H, W = size
    h, w = H * _SS, W * _SS
    bw, bh = cam.background.size
    y0, x0 = int(rng.integers(bh - h + 1)), int(rng.integers(bw - w + 1))
    img = cam.background.crop((x0, y0, x0 + w, y0 + h))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.3:  # part of a neighbouring pedestrian or object at one edge
        side = rng.random() < 0.5
        cw = rng.uniform(0.08, 0.25) * w
        xa, xb = (0, cw) if side else (w - cw, w)
        draw.rectangle([xa, rng.uniform(0.1, 0.5) * h, xb, h], fill=cam.tone(_cloth(rng)))
    if person is not None:
        scale = cam.person_scale * person.height * float(np.exp(rng.normal(0, 0.04)))
        shift = rng.normal(0, 0.05) * w
        feet = (cam.feet + rng.normal(0, 0.015)) * h
        if partial:
            scale *= rng.uniform(0.7, 1.4)
            shift = rng.choice([-1, 1]) * rng.uniform(0.25, 0.45) * w
            feet += rng.uniform(-0.2, 0.25) * h
        flip = -1 if rng.random() < cam.p_flip else 1
        fig = _Figure(draw, cam.tone, w / 2 + shift, feet, scale * h, rng.uniform(-cam.lean, cam.lean), flip)
        _draw_person(fig, person, rng, back=rng.random() < cam.p_back)
    if rng.random() < cam.p_occluder:  # pole or a low object in front of the person
        if rng.random() < 0.5:
            x = rng.uniform(0.05, 0.85) * w
            draw.rectangle([x, 0, x + rng.uniform(0.05, 0.12) * w, h], fill=cam.tone(cam.occluder))
        else:
            draw.rectangle([0, rng.uniform(0.7, 0.85) * h, w, h], fill=cam.tone(cam.occluder))
    img = img.reduce(_SS)
    if cam.blur > 0:
        img = img.filter(ImageFilter.BoxBlur(cam.blur * H / 128))  # a box is 3x cheaper than Gaussian here
    # saturation and this image's gain jitter as one colour matrix (a C loop), then sensor noise
    jitter = float(np.exp(rng.normal(0, 0.12)))
    img = img.convert("RGB", tuple(v * jitter for v in cam.saturation_matrix))
    ly, lx = int(rng.integers(H + 1)), int(rng.integers(W + 1))
    img = ImageChops.multiply(img, cam.light.crop((lx, ly, lx + W, ly + H)))
    ny, nx = int(rng.integers(H + 1)), int(rng.integers(W + 1))
    return ImageChops.add(img, cam.noise.crop((nx, ny, nx + W, ny + H)), 1.0, -128)


# ---------------------------------------------------------------------------------------------- the data set


@dataclass(frozen=True)
class _Job:
    split: str
    name: str
    kind: int  # RNG stream: _TRAIN/_TEST person, _DISTRACTOR, _JUNK
    pid: int  # identity key for the person RNG (index for distractors / junk)
    cam: int  # 1-based
    index: int


def plan(*, train_ids: int, test_ids: int, cameras: int, images_per_camera: int, distractors: int, junk: int,
         seed: int) -> list[_Job]:
    """File names and RNG keys of every image. Each identity visits a random 2/3-or-more of the cameras; each
    test identity gives one query per camera it visits, the rest go to the gallery."""
    rng = _rng(seed, _PLAN)
    frame = [int(rng.integers(1, 200)) for _ in range(cameras)]

    def name(pid, cam):
        frame[cam - 1] += int(rng.integers(1, 60))
        return market_name(pid, cam, frame[cam - 1], nn=int(rng.integers(1, 4)))

    jobs = []
    lo = max(2, math.ceil(cameras * 2 / 3))
    for first, count, kind in ((1, train_ids, _TRAIN), (train_ids + 1, test_ids, _TEST)):
        for pid in range(first, first + count):
            visit = sorted(rng.choice(cameras, size=int(rng.integers(lo, cameras + 1)), replace=False) + 1)
            for cam in visit:
                for k in range(images_per_camera):
                    split = "train" if kind == _TRAIN else ("query" if k == 0 else "gallery")
                    jobs.append(_Job(split, name(pid, cam), kind, pid, int(cam), k))
    for kind, count, pid in ((_DISTRACTOR, distractors, 0), (_JUNK, junk, -1)):
        for i in range(count):
            cam = int(rng.integers(1, cameras + 1))
            jobs.append(_Job("gallery", name(pid, cam), kind, i, cam, 0))
    return jobs


def _check(train_ids, test_ids, cameras, images_per_camera, size):
    if train_ids < 1 or test_ids < 1:
        raise DataError(f"need at least 1 train and 1 test identity (got {train_ids}, {test_ids})")
    if train_ids + test_ids > 9999:
        raise DataError("at most 9,999 identities fit Market's 4-digit ids: lower --train-ids/--test-ids")
    if cameras < 2 or cameras > 9:
        raise DataError(f"--cameras must be 2..9 (cross-camera queries need 2; Market names hold 1 digit), "
                        f"got {cameras}")
    if images_per_camera < 2:
        raise DataError("--images-per-camera must be >= 2: one image per camera becomes the query, the rest gallery")
    if len(size) != 2 or size[0] < 32 or size[1] < 16:
        raise DataError(f"image size {size} too small: use H x W of at least 32x16, e.g. 128x64 or 256x128")


def generate(out_dir: str | os.PathLike, *, train_ids: int = 200, test_ids: int = 100, cameras: int = 6,
             images_per_camera: int = 3, size: tuple[int, int] = (128, 64), seed: int = 0, distractors: int = 20,
             junk: int = 10, quality: int = 90, force: bool = False, progress: bool = True) -> dict:
    """Write the synthetic set to ``out_dir`` (atomically) and return a summary dict (counts, seconds, images/s).

    Defaults give ~3,000 train images (200 ids), ~500 queries and ~1,000 gallery images (100 ids) at 128x64.
    Each identity visits a random 2/3-or-more of the ``cameras``, ``images_per_camera`` images in each.
    ``distractors`` (pid 0000) and ``junk`` (pid -1) images go to the gallery; ``quality`` is the JPEG quality.
    Refuses a non-empty ``out_dir`` unless ``force``; writes into a temp dir beside it, then renames.
    """
    size = (int(size[0]), int(size[1]))
    _check(train_ids, test_ids, cameras, images_per_camera, size)
    t0 = time.perf_counter()
    jobs = plan(train_ids=train_ids, test_ids=test_ids, cameras=cameras, images_per_camera=images_per_camera,
                distractors=distractors, junk=junk, seed=seed)
    base_angle = float(_rng(seed, _CAMERA, 0).uniform(0, 2 * math.pi))
    cams = {c: make_camera(_rng(seed, _CAMERA, c), size, c, base_angle) for c in range(1, cameras + 1)}
    people: dict[tuple[int, int], Person] = {}
    from tqdm import tqdm

    with MarketWriter(out_dir, force=force, quality=quality) as writer:
        for job in tqdm(jobs, desc="synth", unit="img", disable=not progress, mininterval=0.5):
            rng = _rng(seed, _IMAGE, job.kind, job.pid, job.cam, job.index)
            person = None
            if job.kind != _JUNK:
                key = (job.kind, job.pid)
                if key not in people:
                    people[key] = make_person(_rng(seed, job.kind, job.pid))
                person = people[key]
            img = render(person, cams[job.cam], rng, size, partial=job.kind == _DISTRACTOR and rng.random() < 0.5)
            writer.save(job.split, job.name, img)
        seconds = time.perf_counter() - t0
        summary = _summary(jobs, out_dir, seed, size, cameras, images_per_camera, seconds)
        writer.write_text("README.txt", _readme(summary))
        writer.write_text("dataset.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(jobs, out_dir, seed, size, cameras, images_per_camera, seconds) -> dict:
    from swedge import __version__

    splits = {}
    for split in ("train", "query", "gallery"):
        mine = [j for j in jobs if j.split == split]
        splits[split] = {"images": len(mine), "ids": len({j.pid for j in mine if j.kind in (_TRAIN, _TEST)})}
    splits["gallery"]["distractors"] = sum(j.kind == _DISTRACTOR for j in jobs)
    splits["gallery"]["junk"] = sum(j.kind == _JUNK for j in jobs)
    return {
        "name": "swedge-synth", "generator_version": GENERATOR_VERSION, "swedge_version": __version__,
        "seed": seed, "size": list(size), "cameras": cameras, "images_per_camera": images_per_camera,
        "out": str(out_dir), "splits": splits, "images": len(jobs),
        "seconds": round(seconds, 3), "images_per_s": round(len(jobs) / max(seconds, 1e-9), 1),
    }


def _readme(s: dict) -> str:
    sp = s["splits"]
    return (
        "swedge synthetic re-ID data set (procedurally generated; no real people)\n"
        f"generator version {s['generator_version']} (swedge {s['swedge_version']}), seed {s['seed']}, "
        f"image size {s['size'][0]}x{s['size'][1]}, {s['cameras']} cameras\n\n"
        "Layout and naming follow Market-1501: bounding_box_train/, query/, bounding_box_test/ (gallery),\n"
        "files PPPP_cCsS_FFFFFF_NN.jpg; pid 0000 = distractor, -1 = junk (ignored by evaluation).\n"
        f"train {sp['train']['ids']} ids / {sp['train']['images']} images; query {sp['query']['ids']} ids / "
        f"{sp['query']['images']}; gallery {sp['gallery']['ids']} ids / {sp['gallery']['images']} images "
        f"(incl. {sp['gallery']['distractors']} distractors, {sp['gallery']['junk']} junk)\n\n"
        "Regenerate: swedge data synth --out DIR --seed {seed} (same arguments and version give identical files).\n"
        "License: generated by swedge; free to use (Apache-2.0, like the code).\n"
    ).replace("{seed}", str(s["seed"]))


__all__ = ["GENERATOR_VERSION", "Person", "Camera", "make_person", "make_camera", "render", "plan", "generate"]
