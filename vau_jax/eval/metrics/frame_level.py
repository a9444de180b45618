"""Frame-level anomaly detection protocols: UCF-Crime / TAD / XD-Violence and UBnormal.

Scores come per video, keyed by video id; ground truth comes as annotation records (anything
with ``id``, ``intervals`` (0-based half-open frame intervals), ``n_frames`` (or ``None``)
and ``frame_labels(n)``, i.e. :class:`vau_jax.data.formats.VideoRecord`).

Snippet -> frame protocols (``protocol=``):

* ``"ucf"`` (Sultani / RTFM / XD-Violence public code): one score per 16-frame snippet,
  ``np.repeat(scores, 16)``. With ``T`` snippets and ``L`` annotated frames we require
  ``|16 T - L| <= 15`` (the tail a floor or ceil snippet split leaves) and evaluate the first
  ``min(16 T, L)`` frames: unscored tail frames of the video are cut from the ground truth,
  repeated scores past the video end are cut from the scores. When ``n_frames`` is unknown
  (the UCF-Crime file has no frame counts) ``L = 16 T``; an interval *starting* at or after
  ``16 T + 16`` then raises (the scores cannot belong to that video).
* ``"umil"`` (UMIL / VAD-LLaMA public code): ``T`` segment scores spread over ``L`` frames
  with ``r = L / T``; segment ``i`` fills frames ``[int(i r + 0.5), int((i + 1) r + 0.5))``.
  ``L`` is ``n_frames`` (``16 T`` when unknown). Optional ``windows=W`` (the public code uses
  32) then replaces each of ``W`` equal windows of ``L // W`` frames, and the remaining
  tail, by its mean. Labels are the annotation as read (``gt[s:e] = 1`` for every interval).
* ``"vadllama"`` (VAD-LLaMA's public ``evaluate_result``, exactly): the ``"umil"`` mapping
  into a float32 frame array, always followed by the 32-window averaging (``np.mean`` of each
  window in float32, as the public ``postpress``), and labels built by the public rule
  ``if s > 0: gt[s:e] = 1``: an interval that starts at frame 0 is **not** anomalous (TAD
  has such videos; they then count as normal for AUC_O and drop out of AUC_A). Use it to
  match published VAD-LLaMA / UMIL numbers; ``"umil"`` is the same mapping on the
  annotation as written. (The public code skips listed videos that have no scores; here
  they raise, as in the other protocols.)

Every protocol clips intervals that end past the last frame (the UCF-Crime and TAD lists
have some; numpy slicing clips them in the public code too).

AUC_O is the ROC AUC over all videos' frames concatenated; AUC_A the same over only the
videos that contain anomalous frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vau_jax.eval.metrics.auc import ap_step, ap_trapz, roc_auc

PROTOCOLS = ("ucf", "umil", "vadllama")
VADLLAMA_WINDOWS = 32  # the public post-processing's window count (``postpress``)
SNIPPET = 16  # frames per snippet score in the "ucf" protocol


def as_scores(values: Any, video: str) -> np.ndarray:
    """Float64 ``[T]`` scores of ``video``; trailing/leading singleton axes are squeezed.

    Raises:
      ValueError: naming ``video`` when the scores are not 1-D, empty or not finite.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > 1:
        arr = arr.squeeze()
    if arr.ndim != 1:
        raise ValueError(f"video {video!r}: expected 1-D scores, got shape {np.shape(values)}")
    if arr.size == 0:
        raise ValueError(f"video {video!r}: empty score array")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"video {video!r}: score {int(bad[0])} is {arr[bad[0]]} (not finite)")
    return arr


def ucf_frames(
    scores: np.ndarray, record: Any, snippet: int = SNIPPET
) -> tuple[np.ndarray, np.ndarray]:
    """``"ucf"`` protocol for one video: ``(labels uint8 [n], frame scores [n])``."""
    t = scores.shape[0]
    expanded = np.repeat(scores, snippet)  # [snippet * T]
    n_annot = record.n_frames
    if n_annot is None:
        limit = snippet * t + snippet
        late = [s for s, _ in record.intervals if s >= limit]
        if late:
            raise ValueError(
                f"video {record.id!r}: anomaly starts at frame {late[0]} but {t} snippet "
                f"scores cover only {snippet * t} frames"
            )
        n_annot = snippet * t
    n_annot = int(n_annot)
    if abs(snippet * t - n_annot) > snippet - 1:
        raise ValueError(
            f"video {record.id!r}: {t} snippet scores cover {snippet * t} frames but the "
            f"annotation has {n_annot} frames (allowed difference <= {snippet - 1})"
        )
    n = min(n_annot, snippet * t)
    return record.frame_labels(n_annot)[:n], expanded[:n]


def umil_frames(
    scores: np.ndarray, record: Any, windows: int = 0, snippet: int = SNIPPET
) -> tuple[np.ndarray, np.ndarray]:
    """``"umil"`` protocol for one video: ``(labels uint8 [L], frame scores [L])``."""
    t = scores.shape[0]
    n = int(record.n_frames) if record.n_frames is not None else snippet * t
    if n <= 0:
        raise ValueError(f"video {record.id!r}: n_frames is {n}")
    ratio = float(n) / float(t)
    bounds = (np.arange(t + 1) * ratio + 0.5).astype(np.int64)  # [T + 1] segment starts
    seg = np.searchsorted(bounds, np.arange(n), side="right") - 1  # [L] segment of each frame
    frames = scores[np.clip(seg, 0, t - 1)]
    if windows:
        frames = window_average(frames, windows)
    return record.frame_labels(n), frames


def vadllama_labels(record: Any, n_frames: int) -> np.ndarray:
    """VAD-LLaMA's ground truth of one video: ``gt[s:e] = 1`` only for intervals with ``s > 0``."""
    labels = np.zeros([n_frames], np.uint8)
    for start, end in record.intervals:
        if start > 0:
            labels[int(start) : max(int(start), int(end))] = 1  # slicing clips the end
    return labels


def vadllama_frames(
    scores: np.ndarray, record: Any, snippet: int = SNIPPET
) -> tuple[np.ndarray, np.ndarray]:
    """``"vadllama"`` protocol for one video: ``(labels uint8 [L], frame scores float32 [L])``.

    Written from VAD-LLaMA's public ``evaluate_result``: ``L`` frames (``n_frames``, else
    ``16 T``), ``r = L / T``, segment ``i`` fills ``[int(i r + 0.5), int((i + 1) r + 0.5))``
    of a float32 array, then :func:`vadllama_postprocess` (32 windows).
    """
    t = scores.shape[0]
    n = int(record.n_frames) if record.n_frames is not None else snippet * t
    if n <= 0:
        raise ValueError(f"video {record.id!r}: n_frames is {n}")
    ratio = float(n) / float(t)
    # float64 i * r + 0.5 truncated: the same numbers as the public int(i * ratio + 0.5).
    bounds = (np.arange(t + 1) * ratio + 0.5).astype(np.int64)  # [T + 1]
    seg = np.searchsorted(bounds, np.arange(n), side="right") - 1  # last segment starting <= f
    frames = scores.astype(np.float32)[np.clip(seg, 0, t - 1)]
    frames[np.arange(n) >= bounds[-1]] = 0.0  # never in practice: the public array starts at 0
    return vadllama_labels(record, n), vadllama_postprocess(frames)


def vadllama_postprocess(frames: np.ndarray, windows: int = VADLLAMA_WINDOWS) -> np.ndarray:
    """The public ``postpress``: each of ``windows`` windows of ``L // windows`` frames, then
    the tail, replaced by its ``np.mean`` (float32 in, float32 out, one mean per slice)."""
    n = frames.shape[0]
    size = n // windows
    out = np.zeros_like(frames)
    for w in range(windows):
        if size:
            out[w * size : (w + 1) * size] = np.mean(frames[w * size : (w + 1) * size])
    if n > size * windows:
        out[size * windows :] = np.mean(frames[size * windows :])
    return out


def window_average(frames: np.ndarray, windows: int) -> np.ndarray:
    """Replace each of ``windows`` windows of ``len // windows`` frames, and the tail, by its mean."""
    n = frames.shape[0]
    size = n // windows
    out = np.empty_like(frames)
    head = size * windows
    if size:
        out[:head] = np.repeat(frames[:head].reshape(windows, size).mean(axis=1), size)
    if head < n:
        out[head:] = frames[head:].mean()
    return out


def _match(
    records: Iterable[Any], scores: Mapping[str, Any], unlisted_normal: bool
) -> list[tuple[Any, np.ndarray]]:
    """Pair records with scores by video id; errors name the offending ids."""
    by_id: dict[str, Any] = {}
    for rec in records:
        if rec.id in by_id:
            raise ValueError(f"video {rec.id!r} is annotated twice")
        by_id[rec.id] = rec
    missing = sorted(set(by_id) - set(scores))
    if missing:
        raise ValueError(
            f"no scores for {len(missing)} annotated video(s): {', '.join(missing[:5])}"
        )
    extra = sorted(set(scores) - set(by_id))
    if extra and not unlisted_normal:
        raise ValueError(
            f"scores for {len(extra)} video(s) not in the annotation: {', '.join(extra[:5])}"
        )
    pairs = []
    for vid in sorted(scores):
        rec = by_id[vid] if vid in by_id else _NormalVideo(vid)
        pairs.append((rec, as_scores(scores[vid], vid)))
    return pairs


class _NormalVideo:
    """Stand-in record for a video the annotation file does not list (XD-Violence normals)."""

    def __init__(self, vid: str):
        self.id = vid
        self.intervals: list[tuple[int, int]] = []
        self.n_frames = None

    def frame_labels(self, n_frames: int) -> np.ndarray:
        return np.zeros([n_frames], np.uint8)


def video_frames(
    records: Iterable[Any],
    scores: Mapping[str, Any],
    *,
    protocol: str = "ucf",
    windows: int = 0,
    unlisted_normal: bool = False,
    snippet: int = SNIPPET,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per video ``(id, labels [L], frame scores [L])`` under ``protocol``, sorted by id.

    Args:
      records: annotation records of the test videos.
      scores: video id -> snippet (``"ucf"``) or segment (``"umil"``, ``"vadllama"``)
        scores ``[T]``.
      protocol: ``"ucf"``, ``"umil"`` or ``"vadllama"`` (module docstring).
      windows: ``"umil"``: number of averaging windows (0 = off; public code: 32).
        ``"vadllama"`` always averages over 32 windows (``windows`` must be 0 or 32).
      unlisted_normal: score ids absent from ``records`` are normal videos (XD-Violence's
        ``annotations.txt`` lists only anomalous videos); otherwise they raise.
      snippet: frames per score in the ``"ucf"`` protocol (16 for the public benchmarks;
        e.g. 8 for SynthVAD's 1-second clips at 8 fps).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if windows < 0:
        raise ValueError(f"windows must be >= 0, got {windows}")
    if protocol == "vadllama" and windows not in (0, VADLLAMA_WINDOWS):
        raise ValueError(
            f"the 'vadllama' protocol always averages over {VADLLAMA_WINDOWS} windows "
            f"(got windows={windows}; use protocol='umil' for another count)"
        )
    if windows and protocol == "ucf":
        raise ValueError("window averaging belongs to the 'umil' and 'vadllama' protocols")
    out = []
    for rec, s in _match(records, scores, unlisted_normal):
        if protocol == "ucf":
            labels, frames = ucf_frames(s, rec, snippet)
        elif protocol == "vadllama":
            labels, frames = vadllama_frames(s, rec, snippet)
        else:
            labels, frames = umil_frames(s, rec, windows, snippet)
        out.append((rec.id, labels, frames))
    return out


def frame_auc(
    records: Iterable[Any],
    scores: Mapping[str, Any],
    *,
    protocol: str = "ucf",
    windows: int = 0,
    unlisted_normal: bool = False,
    snippet: int = SNIPPET,
) -> dict[str, float]:
    """Frame-level ``{"AUC_O", "AUC_A"}`` (fractions in [0, 1]); see :func:`video_frames`."""
    videos = video_frames(
        records,
        scores,
        protocol=protocol,
        windows=windows,
        unlisted_normal=unlisted_normal,
        snippet=snippet,
    )
    labels = np.concatenate([v[1] for v in videos])
    frames = np.concatenate([v[2] for v in videos])
    abnormal = [v for v in videos if v[1].any()]
    if not abnormal:
        raise ValueError("no video has anomalous frames: AUC_O and AUC_A are undefined")
    return {
        "AUC_O": roc_auc(labels, frames),
        "AUC_A": roc_auc(
            np.concatenate([v[1] for v in abnormal]), np.concatenate([v[2] for v in abnormal])
        ),
    }


def xd_ap(
    records: Iterable[Any],
    scores: Mapping[str, Any],
    *,
    protocol: str = "ucf",
    windows: int = 0,
    unlisted_normal: bool = True,
    snippet: int = SNIPPET,
) -> dict[str, float]:
    """XD-Violence frame-level ``{"AP_trapz", "AP_step"}`` over all videos concatenated."""
    videos = video_frames(
        records,
        scores,
        protocol=protocol,
        windows=windows,
        unlisted_normal=unlisted_normal,
        snippet=snippet,
    )
    labels = np.concatenate([v[1] for v in videos])
    frames = np.concatenate([v[2] for v in videos])
    return {"AP_trapz": ap_trapz(labels, frames), "AP_step": ap_step(labels, frames)}


def ubnormal_auc(
    records: Iterable[Any], scores: Mapping[str, Any], *, sigma: float = 0.0
) -> dict[str, float]:
    """UBnormal ``{"micro_AUC", "macro_AUC"}`` from per-video **frame** scores.

    Scores are first smoothed per video with a Gaussian of std ``sigma`` frames when
    ``sigma > 0`` (``scipy.ndimage.gaussian_filter1d``, default ``reflect`` boundary).
    micro-AUC: one ROC AUC over all frames concatenated. macro-AUC: per video, the labels
    get a leading 0 and a trailing 1 and the scores a leading 0.0 and a trailing 1.0 (the
    public protocol; it makes every video two-class and assumes scores in [0, 1]); the
    per-video AUCs are averaged.

    Raises:
      ValueError: ids do not match, a video's score count differs from its ``n_frames``,
        or scores are not finite.
    """
    pairs = _match(records, scores, unlisted_normal=False)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    all_labels, all_scores, per_video = [], [], []
    for rec, s in pairs:
        if rec.n_frames is not None and int(rec.n_frames) != s.shape[0]:
            raise ValueError(
                f"video {rec.id!r}: {s.shape[0]} frame scores but {rec.n_frames} frames "
                "in the annotation"
            )
        if sigma > 0:
            from scipy.ndimage import gaussian_filter1d

            s = gaussian_filter1d(s, sigma)
        labels = rec.frame_labels(s.shape[0])
        all_labels.append(labels)
        all_scores.append(s)
        per_video.append(
            roc_auc(np.concatenate([[0], labels, [1]]), np.concatenate([[0.0], s, [1.0]]))
        )
    return {
        "micro_AUC": roc_auc(np.concatenate(all_labels), np.concatenate(all_scores)),
        "macro_AUC": float(np.mean(per_video)),
    }


#: Metric function name -> the keys it writes (``metrics.json`` names per dataset).
METRIC_KEYS = {
    "frame_auc": ("AUC_O", "AUC_A"),
    "xd_ap": ("AP_trapz", "AP_step"),
    "ubnormal_auc": ("micro_AUC", "macro_AUC"),
}


def frame_metrics(
    metric: str, records: Iterable[Any], scores: Mapping[str, Any]
) -> dict[str, float]:
    """A dataset's protocol on one score per *frame* (records count the same frames).

    ``metric`` is ``"frame_auc"`` (UCF-Crime, TAD, folder, SynthVAD: ``AUC_O`` / ``AUC_A``),
    ``"xd_ap"`` (XD-Violence: ``AP_trapz`` / ``AP_step``) or ``"ubnormal_auc"`` (UBnormal,
    ShanghaiTech: ``micro_AUC`` / ``macro_AUC``).
    """
    records = list(records)
    if metric == "frame_auc":
        return frame_auc(records, scores, snippet=1)
    if metric == "xd_ap":
        return xd_ap(records, scores, snippet=1, unlisted_normal=False)
    if metric == "ubnormal_auc":
        return ubnormal_auc(records, scores)
    raise ValueError(f"unknown frame metric {metric!r}; choose one of {tuple(METRIC_KEYS)}")
