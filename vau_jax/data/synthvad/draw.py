"""Vectorised raster primitives: rotated ellipses/rectangles drawn into a frame and its mask.

Coordinates are pixels with pixel ``(row y, col x)`` sampled at its integer centre. Each
primitive only touches the window around its bounding box, so cost scales with the shape,
not the frame.
"""

from __future__ import annotations

import math

import numpy as np


def shape_window(
    height: int,
    width: int,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle: float,
    kind: str,
) -> tuple[slice, slice, np.ndarray] | None:
    """Boolean coverage of a rotated ellipse/rectangle inside its clipped bounding window.

    Args:
      height, width: frame size.
      cx, cy: centre in pixels.
      a, b: half-extent along the shape's own u (angle direction) and v axes, pixels.
      angle: rotation of the u axis from +x in radians, clockwise on screen (y points down).
      kind: "ellipse" or "rect".

    Returns:
      ``(rows, cols, cover)`` with ``cover`` bool [h, w] for ``frame[rows, cols]`` (possibly
      all False), or None if the shape's bounding box lies outside the frame.
    """
    a = max(a, 0.6)
    b = max(b, 0.6)
    c, s = math.cos(angle), math.sin(angle)
    ex = abs(a * c) + abs(b * s)
    ey = abs(a * s) + abs(b * c)
    x0, x1 = max(math.floor(cx - ex), 0), min(math.ceil(cx + ex) + 1, width)
    y0, y1 = max(math.floor(cy - ey), 0), min(math.ceil(cy + ey) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    dy = np.arange(y0 - cy, y1 - cy, dtype=np.float32)[: y1 - y0, None]  # [h, 1]
    dx = np.arange(x0 - cx, x1 - cx, dtype=np.float32)[None, : x1 - x0]  # [1, w]
    u = dx * np.float32(c / a) + dy * np.float32(s / a)  # [h, w]
    v = dy * np.float32(c / b) - dx * np.float32(s / b)
    if kind == "ellipse":
        cover = u * u + v * v <= 1.0
    elif kind == "rect":
        cover = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return slice(y0, y1), slice(x0, x1), cover


def paint(
    frame: np.ndarray,
    mask: np.ndarray | None,
    mask_value: int,
    part: tuple,
    colour: np.ndarray,
    alpha: float = 1.0,
) -> tuple[slice, slice] | None:
    """Composite one primitive into ``frame`` (float32 [H, W, 3]) and ``mask`` (uint8 [H, W]).

    Args:
      frame: float32 [H, W, 3] image in [0, 255], modified in place.
      mask: uint8 [H, W] object-id mask, modified in place (None: image only).
      mask_value: id written where the shape covers (and ``alpha >= 0.5``).
      part: ``(kind, cx, cy, a, b, angle)`` as in :func:`shape_window`.
      colour: float32 [3] RGB in [0, 255].
      alpha: opacity in [0, 1].

    Returns:
      the ``(rows, cols)`` window touched, or None if the shape is outside the frame.
    """
    kind, cx, cy, a, b, angle = part
    h, w = frame.shape[:2]
    win = shape_window(h, w, cx, cy, a, b, angle, kind)
    if win is None:
        return None
    rows, cols, cover = win
    region = frame[rows, cols]  # [h, w, 3] view
    if alpha >= 1.0:
        region[cover] = colour
    else:
        region[cover] = (1.0 - alpha) * region[cover] + alpha * colour
    if mask is not None and alpha >= 0.5:
        mask[rows, cols][cover] = mask_value
    return rows, cols


def rotate_parts(parts: list[tuple], x: float, y: float, theta: float, scale: float) -> list[tuple]:
    """Place parts given in a body frame (x right, y up, units of ``scale``) at ``(x, y)``.

    Args:
      parts: ``(kind, px, py, a, b, angle)`` in body units; ``angle`` in screen convention.
      x, y: anchor pixel (e.g. a person's feet).
      theta: body rotation in radians (0 = upright; positive leans towards +x).
      scale: pixels per body unit.

    Returns:
      parts in pixel coordinates for :func:`paint`.
    """
    c, s = np.cos(theta), np.sin(theta)
    out = []
    for kind, px, py, a, b, angle in parts:
        # body y points up on screen; rotating by theta tilts "up" towards +x.
        wx = x + scale * (px * c + py * s)
        wy = y - scale * (py * c - px * s)
        out.append((kind, wx, wy, a * scale, b * scale, angle + theta))
    return out
