"""T-VAU heatmaps -> scored boxes for RBDC/TBDC, the box/track file writers, and pictures.

**The box rule** (:class:`BoxRule`, configurable; every default below is a field):

1. A frame whose heatmap maximum is below ``min_score``, or is 0, gives no box.
2. For every level ``l`` in ``levels`` (0.3, 0.5, 0.7) the pixels with ``heatmap >= l``
   (``>= l * max`` when ``relative``) are split into connected regions (``connectivity`` 8 or
   4, :func:`scipy.ndimage.label`); regions with fewer than ``min_area`` (4) pixels are
   dropped.
3. Each region gives one box: the inclusive pixel box ``x1, y1, x2, y2`` of its pixels (column
   = x, row = y; the ground truth's convention, area ``(x2 - x1 + 1) * (y2 - y1 + 1)``), scored
   by the heatmap maximum inside the region (its pixels, not its box).
4. Identical rows are kept once; then greedy NMS over the union of all levels' boxes: highest
   score first (ties: the larger box first, then top-left first), every remaining box whose
   inclusive IoU with a kept one is above ``nms_iou`` (0.5) is removed; at most ``max_boxes``
   (10) are kept.

No other threshold is applied: the detection curves sweep the box scores. The frame anomaly
score is the heatmap maximum (:func:`frame_scores`). Boxes are in heatmap pixels: the heatmap
must be at the ground truth's resolution (the upsampled AHD map) for the IoUs to mean anything.

**Files** (:func:`write_boxes`, :func:`write_gt_tracks`): one ``<video>.txt`` per video, comma
separated, a ``#`` header line, read by ``python -m vau_jax.evaluate --metric=rbdc_tbdc``:
predictions ``frame, x1, y1, x2, y2, score``; ground truth ``track_id, frame, x1, y1, x2, y2``
(integers). The evaluator needs a prediction file for every ground-truth video, so write the
empty (header-only) file of a video without boxes.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np
from scipy import ndimage

PRED_HEADER = "# frame, x1, y1, x2, y2, score"
GT_HEADER = "# track_id, frame, x1, y1, x2, y2"


@dataclasses.dataclass(frozen=True)
class BoxRule:
    """Heatmap -> boxes rule (see the module docstring). Levels are probabilities in (0, 1],
    or fractions of the frame maximum when ``relative``; ``min_area`` in pixels."""

    levels: tuple[float, ...] = (0.3, 0.5, 0.7)
    relative: bool = False
    min_area: int = 4
    connectivity: int = 8
    nms_iou: float = 0.5
    max_boxes: int = 10
    min_score: float = 0.0

    def __post_init__(self) -> None:
        levels = tuple(float(v) for v in np.atleast_1d(np.asarray(self.levels, np.float64)))
        if not levels or not all(0.0 < v <= 1.0 for v in levels):
            raise ValueError(f"BoxRule.levels must be non-empty, each in (0, 1], got {levels}")
        object.__setattr__(self, "levels", levels)
        if int(self.min_area) != self.min_area or self.min_area < 1:
            raise ValueError(f"BoxRule.min_area must be an integer >= 1, got {self.min_area}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"BoxRule.connectivity must be 4 or 8, got {self.connectivity}")
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"BoxRule.nms_iou must be in [0, 1], got {self.nms_iou}")
        if int(self.max_boxes) != self.max_boxes or self.max_boxes < 1:
            raise ValueError(f"BoxRule.max_boxes must be an integer >= 1, got {self.max_boxes}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"BoxRule.min_score must be in [0, 1], got {self.min_score}")


def _check_heatmaps(heatmaps: np.ndarray, ndim: int, what: str) -> np.ndarray:
    h = np.asarray(heatmaps)
    if h.ndim != ndim or h.size == 0 or not np.issubdtype(h.dtype, np.number):
        raise ValueError(f"{what} must be a non-empty numeric {ndim}-D array, got {h.shape}")
    h = h.astype(np.float64)
    if not np.all(np.isfinite(h)):
        raise ValueError(f"{what} has non-finite values")
    if h.min() < 0.0 or h.max() > 1.0 + 1e-6:
        raise ValueError(f"{what} values must be in [0, 1], got [{h.min()}, {h.max()}]")
    return h


def _iou_one_to_many(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inclusive IoU of box ``a`` ``[4]`` with boxes ``b`` ``[K, 4]`` -> ``[K]``."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]) + 1, 0, None)
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)
    return inter / (area(a) + area(b) - inter)


def heatmap_boxes(heatmap: np.ndarray, rule: BoxRule = BoxRule()) -> np.ndarray:
    """Boxes of one frame's heatmap.

    Args:
      heatmap: ``[H, W]`` abnormal probabilities in [0, 1].
      rule: the box rule.

    Returns:
      float32 ``[K, 5]`` rows ``x1, y1, x2, y2, score`` (inclusive pixel boxes), K <=
      ``rule.max_boxes``, in decreasing score order.
    """
    h = _check_heatmaps(heatmap, 2, "heatmap")
    return _frame_boxes(h, rule, _structure(rule))


def _structure(rule: BoxRule) -> np.ndarray:
    """The connectivity structure of ``rule`` for ``ndimage.label``."""
    return ndimage.generate_binary_structure(2, 2 if rule.connectivity == 8 else 1)


def _frame_boxes(h: np.ndarray, rule: BoxRule, structure: np.ndarray) -> np.ndarray:
    """:func:`heatmap_boxes` of a checked float64 heatmap ``[H, W]`` (video_boxes checks a
    whole video once)."""
    peak = float(h.max())
    if peak <= 0.0 or peak < rule.min_score:
        return np.zeros([0, 5], np.float32)
    found = []
    for level in rule.levels:
        labels, n = ndimage.label(h >= (level * peak if rule.relative else level), structure)
        if n == 0:
            continue
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        for k, (sl, a) in enumerate(zip(ndimage.find_objects(labels), area), start=1):
            if a >= rule.min_area:  # the score: the region's maximum (inside its bounding box)
                score = float(h[sl][labels[sl] == k].max())
                found.append([sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1, score])
    if not found:
        return np.zeros([0, 5], np.float32)
    boxes = np.asarray(found, np.float64)
    if len(boxes) > 1:  # a region found at several levels counts once
        boxes = np.unique(boxes, axis=0)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    boxes = boxes[np.lexsort((boxes[:, 0], boxes[:, 1], -area, -boxes[:, 4]))]
    keep: list[int] = []
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) == rule.max_boxes:
            break
        alive[i + 1 :] &= _iou_one_to_many(boxes[i, :4], boxes[i + 1 :, :4]) <= rule.nms_iou
    return boxes[keep].astype(np.float32)


def frame_scores(heatmaps: np.ndarray) -> np.ndarray:
    """Frame anomaly scores: ``[T, H, W]`` heatmaps -> float32 ``[T]`` per-frame maxima."""
    return _check_heatmaps(heatmaps, 3, "heatmaps").max(axis=(1, 2)).astype(np.float32)


def video_boxes(
    heatmaps: np.ndarray, rule: BoxRule = BoxRule(), frames: np.ndarray | None = None
) -> np.ndarray:
    """Boxes of a video: ``[T, H, W]`` heatmaps -> float32 ``[N, 6]`` rows ``frame, x1, y1, x2,
    y2, score``; ``frame`` = ``frames[t]`` (e.g. the native index of sampled frame t; integers
    >= 0, ``[T]``) when given, else ``t``. Boxes are in heatmap pixels."""
    h = _check_heatmaps(heatmaps, 3, "heatmaps")
    index = np.arange(h.shape[0]) if frames is None else np.asarray(frames)
    if index.shape != (h.shape[0],) or np.any(index != np.round(index)) or np.any(index < 0):
        raise ValueError(f"frames must be {h.shape[0]} integers >= 0, got {index!r}")
    rows = [np.zeros([0, 6], np.float32)]
    structure = _structure(rule)
    for t in range(h.shape[0]):
        b = _frame_boxes(h[t], rule, structure)
        rows.append(np.concatenate([np.full([len(b), 1], index[t], np.float32), b], axis=1))
    return np.concatenate(rows, axis=0)


def _write_atomic(path: str | os.PathLike, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # the temporary name ends in .tmp, so a crash never leaves a stray <video>.txt
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _rows(rows: np.ndarray, width: int, what: str) -> np.ndarray:
    r = np.asarray(rows, np.float64)
    r = np.zeros([0, width]) if r.size == 0 else r
    if r.ndim != 2 or r.shape[1] != width or not np.all(np.isfinite(r)):
        raise ValueError(f"{what} must be finite [N, {width}], got {np.asarray(rows).shape}")
    return r


def _num(v: float) -> str:
    """Exact text of a float64: ``3`` for integers, else the shortest round-trip repr."""
    return str(int(v)) if v == int(v) else repr(v)


def write_boxes(path: str | os.PathLike, rows: np.ndarray) -> None:
    """Write one video's predictions (``[N, 6]`` ``frame, x1, y1, x2, y2, score``, e.g. from
    :func:`video_boxes`; N may be 0) to ``path`` (``<video>.txt``), atomically. Scores are
    written exactly (float64 round trip), so the evaluator ranks them as in memory."""
    r = _rows(rows, 6, "prediction rows")
    if np.any(r[:, 0] != np.round(r[:, 0])) or np.any(r[:, 0] < 0):
        raise ValueError("prediction frame numbers must be integers >= 0")
    if np.any(r[:, 3] < r[:, 1]) or np.any(r[:, 4] < r[:, 2]):
        raise ValueError("prediction boxes need x1 <= x2 and y1 <= y2")
    lines = [PRED_HEADER] + [", ".join(_num(v) for v in row) for row in r.tolist()]
    _write_atomic(path, "\n".join(lines) + "\n")


def write_gt_tracks(path: str | os.PathLike, rows: np.ndarray) -> None:
    """Write one video's ground truth (``[M, 6]`` integer ``track_id, frame, x1, y1, x2, y2``,
    inclusive boxes; e.g. :func:`vau_jax.eval.metrics.rbdc_tbdc.tracks_to_rows`) atomically."""
    r = _rows(rows, 6, "ground-truth rows")
    if np.any(r != np.round(r)) or np.any(r[:, 1] < 0):
        raise ValueError("ground-truth rows must be integers with frame >= 0")
    if np.any(r[:, 4] < r[:, 2]) or np.any(r[:, 5] < r[:, 3]):
        raise ValueError("ground-truth boxes need x1 <= x2 and y1 <= y2")
    lines = [GT_HEADER] + [", ".join(str(v) for v in row) for row in r.astype(np.int64).tolist()]
    _write_atomic(path, "\n".join(lines) + "\n")


def _resize(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, edge clamp) of ``[h, w, ...]`` to ``[H, W, ...]``."""
    for axis, n_out in enumerate(hw):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = (src - i0).reshape([-1] + [1] * (x.ndim - axis - 1))
        x = np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w
    return x


def jet(x: np.ndarray) -> np.ndarray:
    """Jet-like colormap: values in [0, 1] ``[...]`` -> float RGB in [0, 1] ``[..., 3]``
    (0 dark blue, 0.25 blue-cyan, 0.5 green, 0.75 yellow-orange, 1 dark red)."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)[..., None]
    return np.clip(1.5 - np.abs(4.0 * x - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {f.dtype} {f.shape}")
    return f.astype(np.float64)


def trajectory_image(
    heatmaps: np.ndarray,
    frame: np.ndarray | None = None,
    decay: float = 1.0,
    alpha: float = 0.8,
) -> np.ndarray:
    """The trajectory picture of a clip: where the heat went, coloured by time.

    Each pixel takes the largest decayed heat over the frames, ``I = max_t decay**(T-1-t) *
    heat[t]`` (``decay`` in (0, 1]; 1 = no decay), and the colour ``jet(t* / (T - 1))`` of the
    frame ``t*`` that gives it (ties: the latest frame, as if painted in order): earliest frame dark blue, through cyan, green and yellow, to
    dark red for the last frame. Without ``frame`` the picture is colour * I on black; with an
    RGB ``frame`` ``[H, W, 3]`` uint8 the colour is blended over it with opacity ``alpha * I``
    (the heat resized bilinearly to the frame's size).

    Args:
      heatmaps: ``[T, h, w]`` in [0, 1].

    Returns:
      uint8 ``[H, W, 3]`` (``[h, w, 3]`` without ``frame``).
    """
    h = _check_heatmaps(heatmaps, 3, "heatmaps")
    if not 0.0 < decay <= 1.0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need 0 < decay <= 1 and 0 <= alpha <= 1, got {decay}, {alpha}")
    t = h.shape[0]
    decayed = h * (decay ** np.arange(t - 1, -1, -1, dtype=np.float64))[:, None, None]
    when = t - 1 - np.argmax(decayed[::-1], axis=0)  # [h, w] frame of the max (ties: latest)
    heat = np.take_along_axis(decayed, when[None], axis=0)[0]
    colour = jet(when / max(t - 1, 1))  # [h, w, 3]
    if frame is None:
        out = colour * heat[..., None] * 255.0
    else:
        f = _check_frame(frame)
        colour, heat = _resize(colour, f.shape[:2]), _resize(heat, f.shape[:2])
        a = alpha * heat[..., None]
        out = (1 - a) * f + a * colour * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def overlay(frame: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Heatmap over a frame for reports: ``(1 - alpha) * frame + alpha * jet(heatmap)``.

    Args:
      frame: uint8 ``[H, W, 3]``.
      heatmap: ``[h, w]`` in [0, 1], resized bilinearly to ``[H, W]`` when smaller or larger.
      alpha: opacity of the coloured heatmap, in [0, 1].

    Returns:
      uint8 ``[H, W, 3]``.
    """
    f = _check_frame(frame)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = _resize(_check_heatmaps(heatmap, 2, "heatmap"), f.shape[:2])
    out = (1 - alpha) * f + alpha * jet(heat) * 255.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
