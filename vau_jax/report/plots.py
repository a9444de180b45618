"""Pictures for the HTML report, without matplotlib.

* :func:`curve_svg` draws a per-frame anomaly-probability curve as inline SVG (seconds on x,
  probability in [0, 1] on y, threshold, ground-truth and predicted intervals, legend).
* :func:`frame_png_uri` upscales a frame with nearest neighbour, dims the patches SETS dropped,
  outlines the kept ones and returns a ``data:image/png;base64,...`` URI (Pillow encodes).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

# Colours (also used by the page's CSS legend).
CURVE = "#1f5fbf"
THRESHOLD = "#555555"
TRUTH = "#d62728"
PREDICTED = "#2ca02c"
KEPT_OUTLINE = (255, 221, 0)  # RGB of the outline drawn around kept patches
DIM = 0.3  # brightness factor of dropped patches

# Plot geometry (SVG user units = CSS px).
_W, _H = 760, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 150, 14, 40


def _nice_step(span: float, target_ticks: int = 8) -> float:
    """Tick step from {1, 2, 5} x 10^k giving at most ~``target_ticks`` ticks over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target_ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if mult * mag >= raw:
            return mult * mag
    return 10.0 * mag


def _fmt_tick(v: float, step: float) -> str:
    """Tick label with as many decimals as the step needs."""
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{v:.{decimals}f}"


def _clip_interval(iv: tuple[float, float], x_max: float) -> tuple[float, float] | None:
    """Interval (seconds) clipped to [0, x_max]; None when empty after clipping."""
    lo, hi = sorted((float(iv[0]), float(iv[1])))
    lo, hi = max(0.0, lo), min(x_max, hi)
    return (lo, hi) if hi > lo else None


def curve_svg(
    probs: np.ndarray | None,
    fps: float,
    duration: float,
    gt_intervals: Sequence[tuple[float, float]] = (),
    pred_interval: tuple[float, float] | None = None,
    threshold: float = 0.5,
    frame_times: Sequence[float] | None = None,
    label: str = "",
) -> str:
    """Inline SVG of an anomaly-probability curve.

    Args:
      probs: [T] per-frame probability in [0, 1] (frame ``i`` at ``i / fps`` seconds), or None
        to draw only the intervals.
      fps: frames per second of ``probs``.
      duration: video length in seconds (the x range is extended to cover ``probs``).
      gt_intervals: ground-truth anomalous intervals, seconds; shaded red.
      pred_interval: predicted interval, seconds; shaded green.
      threshold: decision threshold, drawn dashed.
      frame_times: seconds of the frames shown beside the plot; marked on the x axis.
      label: accessible title of the picture.

    Returns:
      An ``<svg>`` element as a string.
    """
    p = (
        None
        if probs is None
        else np.clip(np.nan_to_num(np.asarray(probs, np.float64).reshape(-1)), 0, 1)
    )
    x_max = float(duration) if duration and duration > 0 else 0.0
    if p is not None and fps > 0:
        x_max = max(x_max, (len(p) - 1) / fps)
    if x_max <= 0:
        x_max = 1.0
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    sx = lambda t: _LEFT + pw * t / x_max
    sy = lambda v: _TOP + ph * (1.0 - v)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{html.escape(label)}">',
        f"<title>{html.escape(label)}</title>",
        f'<rect x="{_LEFT}" y="{_TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>',
    ]
    for iv in gt_intervals:
        c = _clip_interval(iv, x_max)
        if c:
            out.append(
                f'<rect class="gt" x="{sx(c[0]):.2f}" y="{_TOP}" width="{sx(c[1]) - sx(c[0]):.2f}" '
                f'height="{ph}" fill="{TRUTH}" fill-opacity="0.18"/>'
            )
    if pred_interval is not None:
        c = _clip_interval(pred_interval, x_max)
        if c:
            x0, x1 = sx(c[0]), sx(c[1])
            out.append(
                f'<rect class="pred" x="{x0:.2f}" y="{_TOP}" width="{x1 - x0:.2f}" height="{ph}" '
                f'fill="{PREDICTED}" fill-opacity="0.1" stroke="{PREDICTED}" stroke-dasharray="2 2"/>'
            )
            out.append(
                f'<rect x="{x0:.2f}" y="{_TOP + ph + 1}" width="{x1 - x0:.2f}" height="5" fill="{PREDICTED}"/>'
            )
    # Grid and ticks.
    step = _nice_step(x_max)
    t = 0.0
    while t <= x_max + 1e-9:
        x = sx(t)
        out.append(
            f'<line x1="{x:.2f}" y1="{_TOP}" x2="{x:.2f}" y2="{_TOP + ph}" stroke="#eee"/>'
            f'<line x1="{x:.2f}" y1="{_TOP + ph}" x2="{x:.2f}" y2="{_TOP + ph + 4}" stroke="#333"/>'
            f'<text x="{x:.2f}" y="{_TOP + ph + 16}" font-size="11" text-anchor="middle">'
            f"{_fmt_tick(t, step)}</text>"
        )
        t += step
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(v)
        out.append(
            f'<line x1="{_LEFT - 4}" y1="{y:.2f}" x2="{_LEFT}" y2="{y:.2f}" stroke="#333"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.2f}" font-size="11" text-anchor="end">{v:g}</text>'
        )
    out.append(
        f'<text x="{_LEFT + pw / 2:.1f}" y="{_H - 6}" font-size="12" text-anchor="middle">time (s)</text>'
    )
    out.append(
        f'<text x="14" y="{_TOP + ph / 2:.1f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + ph / 2:.1f})">P(anomaly)</text>'
    )
    for ft in frame_times or ():
        if 0 <= ft <= x_max:
            x = sx(float(ft))
            out.append(
                f'<path class="frame-mark" d="M{x:.2f},{_TOP + ph} l-3,-6 h6 z" fill="#666"/>'
            )
    ty = sy(min(max(float(threshold), 0.0), 1.0))
    out.append(
        f'<line class="threshold" x1="{_LEFT}" y1="{ty:.2f}" x2="{_LEFT + pw}" y2="{ty:.2f}" '
        f'stroke="{THRESHOLD}" stroke-dasharray="6 4"/>'
    )
    if p is not None and len(p) and fps > 0:
        pts = " ".join(f"{sx(i / fps):.2f},{sy(v):.2f}" for i, v in enumerate(p))
        if len(p) == 1:
            out.append(f'<circle cx="{sx(0):.2f}" cy="{sy(p[0]):.2f}" r="3" fill="{CURVE}"/>')
        out.append(
            f'<polyline class="prob" points="{pts}" fill="none" stroke="{CURVE}" stroke-width="1.6"/>'
        )
    else:
        out.append(
            f'<text x="{_LEFT + pw / 2:.1f}" y="{_TOP + ph / 2:.1f}" font-size="13" '
            'text-anchor="middle" fill="#888">no TETG curve</text>'
        )
    out.append(_legend(_LEFT + pw + 12, _TOP + 4, threshold))
    out.append("</svg>")
    return "".join(out)


def _legend(x: float, y: float, threshold: float) -> str:
    """Legend block at (x, y): curve, threshold, truth, predicted."""
    rows = [
        f'<line x1="0" y1="0" x2="22" y2="0" stroke="{CURVE}" stroke-width="2"/>',
        f'<line x1="0" y1="0" x2="22" y2="0" stroke="{THRESHOLD}" stroke-dasharray="6 4"/>',
        f'<rect x="0" y="-6" width="22" height="12" fill="{TRUTH}" fill-opacity="0.25"/>',
        f'<rect x="0" y="-6" width="22" height="12" fill="{PREDICTED}" fill-opacity="0.3" stroke="{PREDICTED}"/>',
        '<path d="M11,6 l-3,-6 h6 z" fill="#666"/>',
    ]
    names = ["P(anomaly)", f"threshold {threshold:g}", "ground truth", "predicted", "shown frame"]
    parts = [f'<g class="legend" transform="translate({x:.1f},{y:.1f})" font-size="11">']
    for i, (mark, name) in enumerate(zip(rows, names)):
        parts.append(
            f'<g transform="translate(0,{8 + 18 * i})">{mark}<text x="28" y="4">{html.escape(name)}</text></g>'
        )
    parts.append("</g>")
    return "".join(parts)


def to_uint8_rgb(frame: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1|3|4] uint8 or float in [0, 1] -> [H, W, 3] uint8."""
    f = np.asarray(frame)
    if f.ndim == 2:
        f = f[..., None]
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    f = f[..., :3]
    if f.dtype != np.uint8:
        f = np.nan_to_num(f.astype(np.float64))
        f = np.clip(f * 255.0 if f.max(initial=0.0) <= 1.0 else f, 0, 255).round().astype(np.uint8)
    return f


def overlay_patches(frame: np.ndarray, mask: np.ndarray | None, scale: int) -> np.ndarray:
    """Upscales a frame and marks the SETS patch selection on it.

    Args:
      frame: [H, W, 3] uint8.
      mask: [gh, gw] bool, True = patch kept; the grid is spread evenly over the frame (patch
        ``(i, j)`` covers rows ``[i*H/gh, (i+1)*H/gh)``). None = no overlay.
      scale: integer nearest-neighbour upscaling factor.

    Returns:
      [H*scale, W*scale, 3] uint8: dropped patches dimmed, kept patches outlined (1 px).
    """
    img = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    if mask is None:
        return img
    m = np.asarray(mask, bool)
    gh, gw = m.shape
    hs, ws = img.shape[:2]
    ri = np.minimum(np.arange(hs) * gh // hs, gh - 1)  # [Hs] patch row of each pixel row
    ci = np.minimum(np.arange(ws) * gw // ws, gw - 1)  # [Ws]
    keep = m[ri[:, None], ci[None, :]]  # [Hs, Ws]
    edge_r = (ri != np.r_[-1, ri[:-1]]) | (ri != np.r_[ri[1:], -1])  # first/last row of a patch
    edge_c = (ci != np.r_[-1, ci[:-1]]) | (ci != np.r_[ci[1:], -1])
    outline = keep & (edge_r[:, None] | edge_c[None, :])
    out = np.where(keep[..., None], img, (img.astype(np.float32) * DIM).astype(np.uint8))
    out[outline] = KEPT_OUTLINE
    return out


def png_data_uri(img: np.ndarray) -> str:
    """[H, W, 3] uint8 -> ``data:image/png;base64,...``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def frame_scale(height: int, width: int, target_px: int = 256, max_scale: int = 8) -> int:
    """Integer upscaling factor bringing the longer side to about ``target_px``."""
    return int(max(1, min(max_scale, target_px // max(height, width, 1))))
