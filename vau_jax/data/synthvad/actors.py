"""Moving things: articulated people, vehicles, bags, fire and explosions, as per-frame parts.

An :class:`Actor` holds, for every frame, the list of primitives to paint (empty where it is
absent). Building the parts is cheap Python per object and frame; the painting itself is
vectorised over pixels (see ``draw.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vau_jax.data.synthvad.draw import rotate_parts

# Appearance palettes (name, RGB). Shirts are sampled without replacement per video.
SHIRTS = (
    ("red", (210, 40, 40)),
    ("blue", (40, 70, 210)),
    ("yellow", (235, 215, 40)),
    ("white", (240, 240, 240)),
    ("orange", (240, 130, 30)),
    ("purple", (140, 50, 170)),
    ("pink", (240, 130, 180)),
    ("cyan", (40, 200, 220)),
    ("black", (25, 25, 30)),
    ("green", (40, 170, 60)),
)
TROUSERS = ((40, 40, 60), (30, 30, 30), (90, 70, 50), (70, 70, 80))
SKINS = ((230, 190, 160), (190, 140, 100), (120, 80, 55))
CARS = (
    ("red", (200, 30, 30)),
    ("white", (235, 235, 235)),
    ("black", (30, 30, 35)),
    ("blue", (30, 60, 190)),
    ("silver", (175, 180, 185)),
    ("yellow", (230, 200, 30)),
)
BAGS = (
    ("red", (220, 30, 30)),
    ("yellow", (240, 220, 30)),
    ("blue", (30, 60, 220)),
    ("orange", (245, 120, 20)),
    ("magenta", (220, 40, 200)),
    ("white", (245, 245, 245)),
)

Part = tuple[tuple, np.ndarray, float]  # (shape, colour RGB float32 [3], alpha)


@dataclasses.dataclass
class Actor:
    """One object's appearance over the whole video.

    Attributes:
      kind: "person" | "vehicle" | "object" | "fire" | "explosion".
      anomalous: part of the anomaly.
      parts: per frame (len T) the primitives to paint, in painting order.
      anchor: float [T, 2] reference point (x, y) per frame (NaN where absent).
      info: words for the templates (colour, size, ...).
    """

    kind: str
    anomalous: bool
    parts: list[list[Part]]
    anchor: np.ndarray
    info: dict[str, Any]


def _c(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float32)


@dataclasses.dataclass
class PersonLook:
    """A person's colours and height in pixels."""

    shirt: str
    shirt_rgb: np.ndarray
    trousers: np.ndarray
    skin: np.ndarray
    height: float
    bag: tuple[str, np.ndarray] | None = None


def random_look(rng: np.random.Generator, shirt_idx: int, height: float) -> PersonLook:
    """A person wearing ``SHIRTS[shirt_idx]`` with random trousers and skin."""
    name, rgb = SHIRTS[shirt_idx]
    return PersonLook(
        name,
        _c(rgb),
        _c(TROUSERS[rng.integers(len(TROUSERS))]),
        _c(SKINS[rng.integers(len(SKINS))]),
        height * rng.uniform(0.9, 1.1),
    )


def person_parts(
    look: PersonLook,
    x: float,
    y: float,
    theta: float,
    phase: float,
    stride: float,
    punch: float = 0.0,
    carrying: bool = False,
) -> list[Part]:
    """An articulated person standing with feet at ``(x, y)``.

    Args:
      look: colours and height.
      x, y: feet position in pixels.
      theta: body rotation (0 upright, +pi/2 lying towards +x).
      phase: gait phase in radians.
      stride: gait amplitude (0 standing, 1 walking, ~1.6 running).
      punch: signed arm reach towards +x (fighting), 0 for swinging arms.
      carrying: draw the bag in the hand.
    """
    swing = 0.22 * stride * np.sin(phase)
    parts: list[tuple] = []
    leg_cols = []
    for sgn in (1.0, -1.0):  # two legs, hip (0, .45) to foot (+-swing, 0)
        fx = sgn * swing
        parts.append(("ellipse", fx / 2, 0.225, 0.25, 0.065, float(np.arctan2(0.45, fx))))
        leg_cols.append(look.trousers)
    arm_cols = []
    for sgn in (-1.0, 1.0):
        if punch:
            hx, hy = punch * (0.3 + 0.12 * (sgn > 0)), 0.74
        else:
            hx, hy = -sgn * swing * 0.8, 0.45
        mx, my = hx / 2, (0.76 + hy) / 2
        ln = float(np.hypot(hx, 0.76 - hy)) / 2
        parts.append(("ellipse", mx, my, max(ln, 0.06), 0.05, float(np.arctan2(0.76 - hy, hx))))
        arm_cols.append(look.shirt_rgb * 0.85)
    parts.append(("ellipse", 0.0, 0.62, 0.2, 0.12, np.pi / 2))  # torso
    parts.append(("ellipse", 0.0, 0.9, 0.1, 0.1, 0.0))  # head
    cols = leg_cols + arm_cols + [look.shirt_rgb, look.skin]
    if carrying and look.bag is not None:
        parts.append(("rect", -swing * 0.8 + 0.08, 0.38, 0.1, 0.08, 0.0))
        cols.append(look.bag[1])
    placed = rotate_parts(parts, x, y, theta, look.height)
    return [(p, c, 1.0) for p, c in zip(placed, cols)]


def vehicle_parts(
    colour: np.ndarray, x: float, y: float, angle: float, length: float, width: float
) -> list[Part]:
    """A car seen from above at centre ``(x, y)`` heading at screen ``angle``."""
    c, s = np.cos(angle), np.sin(angle)

    def at(u: float, v: float) -> tuple[float, float]:
        return x + u * c - v * s, y + u * s + v * c

    parts: list[Part] = []
    wheel = _c((15, 15, 15))
    for u in (-0.3, 0.3):
        for v in (-0.5, 0.5):
            px, py = at(u * length, v * width)
            parts.append((("rect", px, py, 0.11 * length, 0.12 * width, angle), wheel, 1.0))
    parts.append((("rect", x, y, 0.5 * length, 0.45 * width, angle), colour, 1.0))
    wx, wy = at(0.12 * length, 0.0)
    parts.append((("rect", wx, wy, 0.12 * length, 0.36 * width, angle), _c((60, 80, 100)), 1.0))
    rx, ry = at(-0.25 * length, 0.0)
    parts.append((("rect", rx, ry, 0.07 * length, 0.36 * width, angle), _c((60, 80, 100)), 1.0))
    return parts


def fire_parts(
    rng: np.random.Generator, x: float, y: float, base: float, tall: float, growth: float
) -> list[Part]:
    """Flickering flames standing on ``(x, y)``: glow, red-orange tongues, yellow cores."""
    n = 4
    xs = x + (np.arange(n) - (n - 1) / 2) * base / n
    heights = tall * growth * rng.uniform(0.55, 1.0, n)
    parts: list[Part] = [
        (
            ("ellipse", x, y - 0.4 * tall * growth, 0.8 * base, 0.7 * tall * growth, 0.0),
            _c((255, 140, 40)),
            0.3,
        )
    ]
    for fx, fh in zip(xs, heights):
        parts.append(
            (
                (
                    "ellipse",
                    fx + rng.uniform(-0.05, 0.05) * base,
                    y - fh / 2,
                    fh / 2,
                    0.45 * base / n + 0.6,
                    np.pi / 2,
                ),
                _c((235, 80, 20)),
                1.0,
            )
        )
    for fx, fh in zip(xs, heights):
        parts.append(
            (
                ("ellipse", fx, y - fh * 0.3, fh * 0.28, 0.22 * base / n + 0.4, np.pi / 2),
                _c((255, 215, 70)),
                1.0,
            )
        )
    return parts


@dataclasses.dataclass
class Debris:
    """Particles flung out by an explosion (pixels, seconds)."""

    velocity: np.ndarray  # float [N, 2] px/s
    size: float
    gravity: float


def explosion_parts(
    x: float, y: float, radius: float, age: float, duration: float, debris: Debris
) -> list[Part]:
    """An explosion ``age`` seconds after it started: flash, debris and smoke."""
    frac = age / duration
    parts: list[Part] = []
    smoke_r = radius * (0.5 + 0.8 * frac)
    parts.append(
        (
            ("ellipse", x, y - 0.5 * radius * frac, smoke_r, 0.8 * smoke_r, 0.0),
            _c((70, 65, 60)),
            float(np.clip(0.9 - 0.5 * frac, 0.0, 1.0)),
        )
    )
    flash = float(np.clip(1.4 - 2.2 * frac, 0.0, 1.0))
    if flash > 0:
        r = radius * min(1.0, 0.4 + 2.5 * frac)
        parts.append((("ellipse", x, y, r, r, 0.0), _c((255, 150, 40)), flash))
        parts.append((("ellipse", x, y, 0.6 * r, 0.6 * r, 0.0), _c((255, 250, 210)), flash))
    pos = debris.velocity * age + np.array([0.0, 0.5 * debris.gravity * age * age])
    for dx, dy in pos:
        parts.append(
            (("rect", x + dx, y + dy, debris.size, debris.size, 0.0), _c((45, 35, 30)), 1.0)
        )
    return parts


def bag_parts(colour: np.ndarray, x: float, y: float, size: float) -> list[Part]:
    """A bag lying on the ground with its bottom centre at ``(x, y)``."""
    return [
        (("rect", x, y - 0.4 * size, 0.6 * size, 0.4 * size, 0.0), colour, 1.0),
        (("rect", x, y - 0.85 * size, 0.25 * size, 0.1 * size, 0.0), colour * 0.6, 1.0),
    ]
