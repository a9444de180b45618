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


def _arange32(start: np.ndarray, length: int) -> np.ndarray:
    """float32 ``[P, length]``: row ``p`` equals ``np.arange(start[p], start[p] + length,
    dtype=np.float32)[:length]`` bit for bit (numpy fills such a range as ``s + i * d`` in
    float32, with ``s = float32(start)``, ``d = float32(start + 1) - s`` and the second element
    ``float32(start + 1)``), for many starts at once."""
    s = start.astype(np.float32)[:, None]  # [P, 1]
    second = (start + 1.0).astype(np.float32)[:, None]
    out = s + np.arange(length, dtype=np.float32)[None, :] * (second - s)
    out[:, :1] = s
    if length > 1:
        out[:, 1:2] = second
    return out


def _coverage(items: list[tuple], h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each primitive covers a frame, for many at once, as :func:`shape_window` says.

    Returns ``(kept, part, pixel)``: ``kept`` int [P] the indices of ``items`` whose window
    lies (partly) in the frame, and one entry per covered pixel (sorted by part): ``part``
    int [N] (into ``kept``) and ``pixel`` int [N] = ``y * w + x``.
    """
    # The scalar geometry of shape_window, element-wise in float64 (the same IEEE operations;
    # cos and sin stay math's, whose results do not depend on the CPU's SIMD width).
    g = np.array([item[1][1:] for item in items], np.float64).reshape(-1, 5)
    cx, cy, angle = g[:, 0], g[:, 1], g[:, 4]
    a, b = np.maximum(g[:, 2], 0.6), np.maximum(g[:, 3], 0.6)
    c = np.array([math.cos(x) for x in angle.tolist()], np.float64)
    s = np.array([math.sin(x) for x in angle.tolist()], np.float64)
    ex = np.abs(a * c) + np.abs(b * s)
    ey = np.abs(a * s) + np.abs(b * c)
    x0 = np.maximum(np.floor(cx - ex), 0).astype(np.int64)
    x1 = np.minimum(np.ceil(cx + ex) + 1, w).astype(np.int64)
    y0 = np.maximum(np.floor(cy - ey), 0).astype(np.int64)
    y1 = np.minimum(np.ceil(cy + ey) + 1, h).astype(np.int64)
    kinds = np.array([item[1][0] for item in items])
    for kind in set(kinds.tolist()) - {"ellipse", "rect"}:
        raise ValueError(f"unknown shape kind {kind!r}")
    kept = np.flatnonzero((x0 < x1) & (y0 < y1))
    if not kept.size:
        return kept, np.zeros(0, np.int64), np.zeros(0, np.int64)
    x0, x1, y0, y1, cx, cy, a, b, c, s = (z[kept] for z in (x0, x1, y0, y1, cx, cy, a, b, c, s))
    rect = (kinds[kept] == "rect")[:, None, None]
    hp, wp = y1 - y0, x1 - x0  # window sizes
    ca, sa, cb, sb = (
        (num / den).astype(np.float32) for num, den in ((c, a), (s, a), (c, b), (s, b))
    )
    # Windows are padded to their bucket's largest (sizes rounded up to powers of two), so a
    # large shape does not pad every small one.
    key = _ceil_log2(hp) * 64 + _ceil_log2(wp)
    parts, pixels = [], []
    for k in np.unique(key).tolist():
        idx = np.flatnonzero(key == k)
        hm, wm = int(hp[idx].max()), int(wp[idx].max())
        dx = _arange32(x0[idx] - cx[idx], wm)[:, None, :]  # [n, 1, wm]
        dy = _arange32(y0[idx] - cy[idx], hm)[:, :, None]  # [n, hm, 1]
        u = dx * ca[idx, None, None] + dy * sa[idx, None, None]  # [n, hm, wm]
        v = dy * cb[idx, None, None] - dx * sb[idx, None, None]
        cover = np.where(rect[idx], (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0), u * u + v * v <= 1.0)
        cover &= np.arange(hm)[None, :, None] < hp[idx, None, None]
        cover &= np.arange(wm)[None, None, :] < wp[idx, None, None]
        n, i, j = np.nonzero(cover)
        part = idx[n]
        parts.append(part)
        pixels.append((y0[part] + i) * w + x0[part] + j)
    part, pixel = np.concatenate(parts), np.concatenate(pixels)
    if len(parts) > 1:
        order = np.argsort(part, kind="stable")
        part, pixel = part[order], pixel[order]
    return kept, part, pixel


def _ceil_log2(n: np.ndarray) -> np.ndarray:
    """``ceil(log2(n))`` of positive ints ``n`` (0 for 1)."""
    return np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64)


def paint_frames(frames: np.ndarray, masks: np.ndarray, items: list[list[tuple]]) -> None:
    """Paint many primitives into many frames: the same bytes as :func:`paint` called once
    per primitive, frame by frame, in order.

    The coverage of every primitive is computed in one batch (the per-primitive Python and
    numpy call overhead was most of rendering). Within a frame, each run of consecutive
    opaque primitives is composited at once (the last one covering a pixel wins); a
    translucent primitive is blended alone, in its place, with :func:`paint`'s arithmetic.

    Args:
      frames: float32 [T, H, W, 3] images in [0, 255], C-contiguous, modified in place.
      masks: uint8 [T, H, W] object-id masks, C-contiguous, modified in place.
      items: per frame, its ``(mask_value, part, colour, alpha)`` primitives, painted first
        to last; ``part``, ``colour`` and ``alpha`` as in :func:`paint`. The bytes equal
        :func:`paint`'s when the part's numbers are Python or float64 floats, as the renderer's
        are (float32 scalars would make :func:`paint` compute the window in float32).
    """
    num_frames, h, w = frames.shape[:3]
    if len(items) != num_frames:
        raise ValueError(f"paint_frames: {len(items)} item lists for {num_frames} frames")
    if not (frames.flags.c_contiguous and masks.flags.c_contiguous):
        raise ValueError("paint_frames: frames and masks must be C-contiguous (painted in place)")
    flat_items = [item for frame_items in items for item in frame_items]
    if not flat_items:
        return
    frame_of = np.repeat(np.arange(num_frames), [len(x) for x in items])
    kept, part, pixel = _coverage(flat_items, h, w)
    if not kept.size:
        return
    prims = [flat_items[k] for k in kept.tolist()]
    frame_of = frame_of[kept]
    pixel = pixel + frame_of[part] * (h * w)  # into the flattened [T * H * W]
    # Layers: in each frame a run of opaque primitives is one layer, a translucent one its own.
    translucent = np.array([prim[3] < 1.0 for prim in prims])
    first = np.r_[True, frame_of[1:] != frame_of[:-1]]
    cs = np.cumsum(first | translucent | np.r_[False, translucent[:-1]])
    layer = cs - np.maximum.accumulate(np.where(first, cs, 0))  # 0-based within each frame
    colours = np.stack([np.asarray(prim[2], np.float32) for prim in prims])  # [P, 3]
    values = np.array([prim[0] for prim in prims], np.uint8)
    flat, flat_mask = frames.reshape(-1, 3), masks.reshape(-1)
    bounds = np.searchsorted(part, np.arange(len(prims) + 1))  # each part's pixels
    for lay in range(int(layer.max()) + 1):
        opaque = (layer == lay) & ~translucent
        if opaque.any():
            cell = opaque[part]
            last = np.zeros(flat_mask.size, np.int64)  # 1 + the last part covering a pixel
            np.maximum.at(last, pixel[cell], part[cell] + 1)
            where = np.flatnonzero(last)
            flat[where] = colours[last[where] - 1]
            flat_mask[where] = values[last[where] - 1]
        for k in np.flatnonzero((layer == lay) & translucent).tolist():
            value, _, colour, alpha = prims[k]
            where = pixel[bounds[k] : bounds[k + 1]]
            flat[where] = (1.0 - alpha) * flat[where] + alpha * colour
            if alpha >= 0.5:
                flat_mask[where] = value
