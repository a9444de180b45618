"""Region- and track-based detection criteria (RBDC / TBDC, Ramachandra & Jones 2020).

Clean-room implementation of the protocol written in DESIGN section 7:

* Ground truth: per video, rows ``track_id, frame, x1, y1, x2, y2``; every row is one
  anomalous *region* and belongs to one *track* (tracks are per video).
* Predictions: per video, rows ``frame, x1, y1, x2, y2, score``.
* Boxes are inclusive pixel boxes: area ``(x2 - x1 + 1) * (y2 - y1 + 1)``.
* All predictions of all videos are sorted by decreasing score and taken one at a time. A
  prediction *matches* a ground-truth region of the same video and frame when their IoU is
  ``>= iou_threshold`` (0.1). Regions it matches that no earlier prediction matched are true
  positives (one TP per region); a prediction that matches no region is a false positive;
  a prediction whose matches were all matched before (a re-hit) counts as neither.
* A track is detected once at least ``track_fraction`` (10%) of its regions are detected.
* RBDR = detected regions / all regions, TBDR = detected tracks / all tracks,
  FPR = false positives / total number of test frames.
* The curves are sampled at each distinct score (tied predictions enter together), start at
  (0, 0), keep the points with FPR <= 1, are extended flat to FPR = 1, and RBDC / TBDC are
  their trapezoid areas (in [0, 1]).

The matching is vectorised: one sort of the predictions, one ``searchsorted`` into the
frame-sorted ground truth, vectorised IoU over the (prediction, region-in-same-frame) pairs,
and a first-match rank per region. Cost O((P + G) log(P + G) + pairs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

MAX_FPR = 1.0


def _video_array(values: Any, video: str, what: str, width: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return np.zeros([0, width])
    if arr.ndim == 1 and arr.shape[0] == width:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"video {video!r}: {what} must be [N, {width}], got {arr.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
    if bad.size:
        raise ValueError(f"video {video!r}: {what} row {int(bad[0])} is not finite")
    return arr


def _check_boxes(boxes: np.ndarray, video: str, what: str) -> None:
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        raise ValueError(
            f"video {video!r}: {what} row {int(bad[0])} has x2 < x1 or y2 < y1: "
            f"{boxes[bad[0]].tolist()}"
        )


def tracks_to_rows(tracks: Mapping[int, np.ndarray]) -> np.ndarray:
    """Record-style ``{track_id: [M, 5] (frame, x1, y1, x2, y2)}`` -> rows ``[N, 6]``."""
    rows = [
        np.concatenate([np.full([len(a), 1], tid), np.asarray(a).reshape(-1, 5)], axis=1)
        for tid, a in sorted(tracks.items())
    ]
    return np.concatenate(rows, axis=0) if rows else np.zeros([0, 6], np.int64)


def _inclusive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired inclusive boxes ``a[i]``, ``b[i]`` (``[P, 4]`` each) -> ``[P]``."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def detection_curves(
    gt: Mapping[str, Any],
    predictions: Mapping[str, Any],
    num_frames: int | Mapping[str, int],
    *,
    iou_threshold: float = 0.1,
    track_fraction: float = 0.1,
) -> dict[str, np.ndarray]:
    """The uncut curves ``{"FPR", "RBDR", "TBDR", "threshold"}``, each ``[K + 1]``.

    Point 0 is (0, 0) at threshold +inf; point k is after all predictions with score >= the
    k-th distinct score. Arguments as in :func:`rbdc_tbdc`.
    """
    videos = sorted(set(gt) | set(predictions))
    if isinstance(num_frames, Mapping):
        unknown = sorted(set(videos) - set(num_frames))
        if unknown:
            raise ValueError(f"num_frames has no entry for video(s): {', '.join(unknown[:5])}")
        total_frames = int(sum(int(num_frames[v]) for v in num_frames))
    else:
        total_frames = int(num_frames)
    if total_frames <= 0:
        raise ValueError(f"the total number of test frames must be positive, got {total_frames}")

    gt_parts, pred_parts = [], []
    for vi, v in enumerate(videos):
        g = _video_array(gt.get(v, ()), v, "ground-truth track rows", 6)
        p = _video_array(predictions.get(v, ()), v, "prediction rows", 6)
        _check_boxes(g[:, 2:6], v, "ground-truth")
        _check_boxes(p[:, 1:5], v, "prediction")
        limit = int(num_frames[v]) if isinstance(num_frames, Mapping) else None
        for arr, col, what in ((g, 1, "ground-truth"), (p, 0, "prediction")):
            frames = arr[:, col]
            if np.any(frames != np.round(frames)) or np.any(frames < 0):
                raise ValueError(f"video {v!r}: {what} frame numbers must be integers >= 0")
            if limit is not None and frames.size and frames.max() >= limit:
                raise ValueError(
                    f"video {v!r}: {what} frame {int(frames.max())} >= num_frames {limit}"
                )
        gt_parts.append(np.concatenate([np.full([len(g), 1], vi), g], axis=1))
        pred_parts.append(np.concatenate([np.full([len(p), 1], vi), p], axis=1))
    g = np.concatenate(gt_parts) if gt_parts else np.zeros([0, 7])  # vid, tid, frame, box
    p = np.concatenate(pred_parts) if pred_parts else np.zeros([0, 7])  # vid, frame, box, s
    n_regions = g.shape[0]
    if n_regions == 0:
        raise ValueError("no ground-truth regions: RBDC/TBDC are undefined")

    # Frame keys shared by ground truth and predictions.
    span = int(max(g[:, 2].max(), p[:, 1].max() if len(p) else 0)) + 1
    g_key = g[:, 0].astype(np.int64) * span + g[:, 2].astype(np.int64)
    g_order = np.argsort(g_key, kind="stable")
    g, g_key = g[g_order], g_key[g_order]
    _, track = np.unique(g[:, 0:2], axis=0, return_inverse=True)  # (video, track_id) -> index
    track = track.reshape(-1)
    n_tracks = int(track.max()) + 1

    # Predictions in decreasing score order; rank = position in that order.
    n_pred = p.shape[0]
    p_order = np.argsort(-p[:, 6], kind="stable")
    p = p[p_order]
    p_key = p[:, 0].astype(np.int64) * span + p[:, 1].astype(np.int64)

    # All (prediction, region in the same frame) pairs.
    lo = np.searchsorted(g_key, p_key, side="left")
    hi = np.searchsorted(g_key, p_key, side="right")
    counts = hi - lo  # [P]
    pair_pred = np.repeat(np.arange(n_pred), counts)
    starts = np.cumsum(counts) - counts
    pair_gt = np.repeat(lo - starts, counts) + np.arange(pair_pred.shape[0])
    hit = _inclusive_iou(p[pair_pred, 2:6], g[pair_gt, 3:7]) >= iou_threshold
    pair_pred, pair_gt = pair_pred[hit], pair_gt[hit]

    # First prediction (by rank) matching each region; n_pred = never matched.
    first = np.full([n_regions], n_pred, np.int64)
    np.minimum.at(first, pair_gt, pair_pred)
    tp_inc = np.bincount(first[first < n_pred], minlength=n_pred)
    fp_inc = np.bincount(pair_pred, minlength=n_pred) == 0

    # Track detection rank: the m-th earliest region detection, m = ceil(fraction * size).
    by_track = np.lexsort([first, track])
    size = np.bincount(track, minlength=n_tracks)
    need = np.maximum(np.ceil(np.round(track_fraction * size, 9)).astype(np.int64), 1)
    track_start = np.cumsum(size) - size
    detect_rank = first[by_track][track_start + need - 1]
    td_inc = np.bincount(detect_rank[detect_rank < n_pred], minlength=n_pred)

    scores = p[:, 6]
    ends = np.concatenate([np.flatnonzero(np.diff(scores)), [n_pred - 1]]) if n_pred else []
    ends = np.asarray(ends, np.int64)
    zero = np.zeros([1])
    return {
        "FPR": np.concatenate([zero, np.cumsum(fp_inc)[ends] / total_frames]),
        "RBDR": np.concatenate([zero, np.cumsum(tp_inc)[ends] / n_regions]),
        "TBDR": np.concatenate([zero, np.cumsum(td_inc)[ends] / n_tracks]),
        "threshold": np.concatenate([[np.inf], scores[ends]]),
    }


def area_to_max_fpr(fpr: np.ndarray, rate: np.ndarray, max_fpr: float = MAX_FPR) -> float:
    """Trapezoid area under ``rate(fpr)``: points with FPR <= max_fpr, extended flat to it."""
    keep = fpr <= max_fpr  # fpr is non-decreasing, so this is a prefix
    x = np.concatenate([fpr[keep], [max_fpr]])
    y = np.concatenate([rate[keep], rate[keep][-1:]])
    return float(np.trapezoid(y, x))


def rbdc_tbdc(
    gt: Mapping[str, Any],
    predictions: Mapping[str, Any],
    num_frames: int | Mapping[str, int],
    *,
    iou_threshold: float = 0.1,
    track_fraction: float = 0.1,
) -> dict[str, float]:
    """``{"RBDC", "TBDC"}`` (fractions in [0, 1]).

    Args:
      gt: video id -> ground-truth rows ``[M, 6]``: ``track_id, frame, x1, y1, x2, y2``
        (use :func:`tracks_to_rows` on a record's ``tracks``). Videos without anomalies may
        be absent.
      predictions: video id -> rows ``[K, 6]``: ``frame, x1, y1, x2, y2, score``.
      num_frames: total number of test frames (int), or video id -> frame count (then every
        video of ``gt``/``predictions`` needs an entry, frames are range-checked, and the
        total is the sum over all entries).
      iou_threshold: minimum IoU for a prediction to match a region.
      track_fraction: fraction of a track's regions that must be detected.

    Raises:
      ValueError: no ground-truth regions, malformed rows (naming the video and row), or
        frames outside ``[0, num_frames)``.
    """
    curves = detection_curves(
        gt, predictions, num_frames, iou_threshold=iou_threshold, track_fraction=track_fraction
    )
    return {
        "RBDC": area_to_max_fpr(curves["FPR"], curves["RBDR"]),
        "TBDC": area_to_max_fpr(curves["FPR"], curves["TBDR"]),
    }
