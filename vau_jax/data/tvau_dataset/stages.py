"""T-VAU stages 2 and 3: object timelines, cross-modal consistency (refinement),
anomalous-object assignment, and the anomaly-focused blur and masks.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any

import numpy as np

from vau_jax.data import instruct
from vau_jax.data.formats.record import VideoRecord
from vau_jax.data.tvau_dataset.records import FrameRecord, Timeline, VideoInput

# --- stage 2: object timelines ---------------------------------------------------------------


def _majority(values: list) -> Any:
    known = [v for v in values if v is not None]
    return Counter(known).most_common(1)[0][0] if known else None


def displacement(boxes: np.ndarray, width: int, height: int) -> float:
    """Net shift of the box centre ``[M, 4]`` in frame sizes: median centre of the last
    quarter minus that of the first quarter (robust to jitter and flicker)."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2.0 / np.array([width, height], np.float64)  # [M, 2]
    k = max(1, len(c) // 4)
    return float(np.linalg.norm(np.median(c[-k:], 0) - np.median(c[:k], 0)))


def build_timelines(records: list[FrameRecord], width: int, height: int) -> list[Timeline]:
    """Stage 2: the records of each object (by ``object_id``) as one :class:`Timeline`."""
    by_id: dict[int, list[FrameRecord]] = {}
    for r in records:
        by_id.setdefault(r.object_id, []).append(r)
    out = []
    for oid in sorted(by_id):
        rs = sorted(by_id[oid], key=lambda r: r.frame)
        boxes = np.asarray([r.box for r in rs], np.int64).reshape(-1, 4)
        kind = _majority([r.kind for r in rs])
        static = kind in instruct.STATIC_KINDS
        out.append(
            Timeline(
                object_id=oid,
                kind=kind,
                colour=_majority([r.colour for r in rs]),
                size=_majority([r.size for r in rs]),
                action=_majority([r.action for r in rs]),
                anomalous=_majority([r.anomalous for r in rs]),
                frames=np.asarray([r.frame for r in rs], np.int64),
                boxes=boxes,
                spatial_word=_majority([r.spatial for r in rs]),
                trajectory="static" if static else instruct.trajectory_key(boxes, width, height),
                displacement=displacement(boxes, width, height),
            )
        )
    return out


# --- stage 3: anomaly-focused refinement -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Consistency:
    """Cross-modal rules (shifts in frame sizes, see :func:`displacement`)."""

    static_max_shift: float = 0.25  # a static kind/action moving this far contradicts itself
    still_max_shift: float = 0.05  # "running" moving less than this contradicts itself...
    min_seconds: float = 0.75  # ...when seen over at least this long
    min_frames: int = 3  # ...and on at least this many sampled frames


def contradiction(tl: Timeline, fps: float, rules: Consistency = Consistency()) -> str | None:
    """The :data:`DROP_REASONS` entry a timeline violates, else ``None``."""
    if tl.action == "static" and tl.displacement >= rules.static_max_shift:
        return "static_moves"
    span = (tl.frames[-1] - tl.frames[0]) / fps
    seen = len(tl.frames) >= rules.min_frames and span >= rules.min_seconds
    if tl.action == "running" and seen and tl.displacement < rules.still_max_shift:
        return "running_still"
    return None


def refine(
    timelines: list[Timeline], fps: float, rules: Consistency = Consistency()
) -> tuple[list[Timeline], list[tuple[Timeline, str]]]:
    """Stage 3b: (kept timelines, [(dropped timeline, reason)])."""
    kept, dropped = [], []
    for tl in timelines:
        reason = contradiction(tl, fps, rules)
        (kept.append(tl) if reason is None else dropped.append((tl, reason)))
    return kept, dropped


def _cover(box: np.ndarray, other: np.ndarray) -> float:
    """Fraction of inclusive ``box`` inside ``other``."""
    iw = min(box[2], other[2]) - max(box[0], other[0]) + 1
    ih = min(box[3], other[3]) - max(box[1], other[1]) + 1
    return max(iw, 0) * max(ih, 0) / float((box[2] - box[0] + 1) * (box[3] - box[1] + 1))


def assign_anomalous(timelines: list[Timeline], record: VideoRecord, labels: np.ndarray) -> None:
    """Objects the annotator did not flag: anomalous when the median cover of their box by
    the layout's anomaly boxes (``record.tracks``) on anomalous frames is >= 0.5."""
    rows = [np.asarray(r).reshape(-1, 5) for r in record.tracks.values()]
    rows = np.concatenate(rows) if rows else np.zeros([0, 5], np.int64)  # frame, x1, y1, x2, y2
    for tl in timelines:
        if tl.anomalous is not None:
            continue
        covers = [
            max(_cover(box, a) for a in rows[rows[:, 0] == t, 1:])
            for t, box in zip(tl.frames, tl.boxes)
            if labels[t] and (rows[:, 0] == t).any()
        ]
        tl.anomalous = bool(covers) and float(np.median(covers)) >= 0.5


def blur_outside(frame: np.ndarray, mask: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Stage 3a: uint8 [H, W, 3] with pixels outside bool ``mask`` [H, W] Gaussian-blurred
    (std ``sigma`` pixels); pixels inside are returned unchanged."""
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(frame.astype(np.float32), sigma=(sigma, sigma, 0))
    blurred = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    return np.where(mask[..., None], frame, blurred)


def anomaly_mask(video: VideoInput, t: int, timelines: list[Timeline]) -> np.ndarray:
    """bool [H, W] anomaly mask of frame ``t``: the layout's mask (UBnormal ``_gt.png``,
    ShanghaiTech pixel ``.npy``), else the anomalous timelines' boxes."""
    path, vid = video.record.masks_path, video.record.id
    if path and path.endswith(".npy"):
        return np.load(path, mmap_mode="r", allow_pickle=False)[t] > 0
    if path and os.path.isdir(path):
        from vau_jax.data.formats.ubnormal import load_mask, mask_files

        png = mask_files(path, vid).get(int(t))
        if png:
            return load_mask(png) > 0
    mask = np.zeros([video.height, video.width], bool)
    for tl in timelines:
        for x1, y1, x2, y2 in tl.boxes[(tl.frames == t)] if tl.anomalous else []:
            mask[y1 : y2 + 1, x1 : x2 + 1] = True
    return mask
