"""Which AHD heatmaps RAE reads: the sampled frames', or each segment's mean (ours).

RAE reads one heatmap per LVLM frame, ``S = config.frames_per_video`` of them. Set by
``config.rae.heat_frames``:

* ``"sampled"`` (the paper's reading; the ``:paper`` preset's): the AHD heatmaps of the ``S``
  frames the LVLM samples (:func:`vau_jax.methods.tvau.data.sample_indices`), one frame each;
* ``"segment_mean"`` (ours, not the paper's; the tiny preset's since 2026-12-05, chosen on the
  validation split: README, T-VAU): the video's encoded frames split into ``S``
  consecutive segments (PyTorch's adaptive pooling bins, as RAE pools space:
  :func:`vau_jax.models.heads.rae.adaptive_bins`), and per segment the mean of its frames' AHD
  heatmaps, patch by patch: adaptive average pooling over time.

Why: on SynthVAD (tiny preset, seed 0, 2026-12-05) the AHD's heat flickers on single frames
of normal videos, and evaluation's frame score survives that only by smoothing over time.
The maximum over the ``S = 16`` sampled frames' raw heatmaps separates anomalous from normal
test videos with AUC 0.898 (validation 0.820), against 0.955 (validation 0.938) for the
maximum over the 16 segment means; the normal training videos' median maximum is 0.22 on
sampled frames against 0.38 on the test split's, and 0.15 against 0.16 on segment means.
RAE trained on the sampled frames' heat answered Yes/No right on 0.79 of the test videos,
about what the best threshold on that maximum reaches there (0.81).

* ``"segment_peak"`` (ours, not the paper's; the tiny preset's since 2026-12-06, together
  with RAE's ``level`` and maxima readouts, chosen on 128 validation videos: README, T-VAU):
  each segment mean rescaled so that its maximum over the patches is the segment's mean of
  its frames' own heatmap maxima (:func:`segment_peaks`): where the heat is stays the
  segment mean's, how strong it is is the peak's. A moving object's heat lies on other
  patches in each frame, so a mean over time patch by patch spreads and lowers it; the maximum
  taken before the mean over time keeps it (as evaluation's frame score, the maximum before
  smoothing over time). With the AHD of ``ahd.background`` and 48 frames per video, seeds 0
  and 2, the maximum over the 16 segments separated the 128 validation videos with AUC 0.969 /
  0.966 against 0.940 / 0.948 for the segment means (``scripts/tvau_heat_readings.py``).
  RAE alone on them answered no better (its difference-and-mean readout does not compute a
  maximum); with the heat level beside each difference and maxima over patches and time it
  did (validation Yes/No 0.919 -> 0.927 over 3 seeds).

Every reading gives ``[S, g, g]`` per video, so RAE and its prompts are unchanged; only what
the frames' heatmaps summarise differs. Training (:mod:`vau_jax.methods.tvau.frozen`),
evaluation (:mod:`vau_jax.methods.tvau.evaluation`) and prediction on any video
(:mod:`vau_jax.methods.tvau.predict`) all read them through :func:`video_heat`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from vau_jax.models.heads.rae import adaptive_bins

#: ``config.rae.heat_frames`` values (see the module docstring).
HEAT_FRAMES = ("sampled", "segment_mean", "segment_peak")


def heat_frames(config: Any) -> str:
    """``config.rae.heat_frames`` checked (``"sampled"`` when absent, as in runs saved before
    the option existed)."""
    kind = str(config.rae.get("heat_frames", "sampled"))
    if kind not in HEAT_FRAMES:
        raise ValueError(f"rae.heat_frames={kind!r}: expected one of {HEAT_FRAMES}")
    return kind


def segment_means(heat: np.ndarray, segments: int) -> np.ndarray:
    """Adaptive average pooling over time: ``heat [T, ...]`` -> float32 ``[segments, ...]``,
    segment ``k`` the mean of frames ``[floor(k T / S), ceil((k + 1) T / S))``. With fewer
    frames than segments a frame serves several segments (every segment holds at least one
    frame)."""
    heat = np.asarray(heat, np.float32)
    if heat.shape[0] < 1 or segments < 1:
        raise ValueError(f"cannot pool {heat.shape[0]} frames into {segments} segments")
    return np.stack([heat[s:e].mean(axis=0) for s, e in adaptive_bins(heat.shape[0], segments)])


def segment_peaks(heat: np.ndarray, segments: int) -> np.ndarray:
    """``heat [T, g, g]`` -> float32 ``[segments, g, g]``: the :func:`segment_means`, each
    rescaled so that its maximum is the mean over the segment's frames of each frame's own
    maximum (a segment whose mean is zero everywhere stays zero). The maximum of the result
    is never above 1 when the frames' are not (a mean of maxima in [0, 1])."""
    means = segment_means(heat, segments)
    frame_max = np.asarray(heat, np.float32).reshape(len(heat), -1).max(axis=1)
    peaks = segment_means(frame_max, segments)  # [segments]
    top = means.reshape(segments, -1).max(axis=1)
    scale = np.where(top > 0, peaks / np.maximum(top, 1e-12), 0.0).astype(np.float32)
    return means * scale[:, None, None]


def reads_segment_means(method: Any) -> bool:
    """Whether ``method``'s RAE reads pooled segments (``rae.heat_frames`` ``"segment_mean"``
    or ``"segment_peak"``, with RAE and AHD both on): then its rows must carry them as
    ``heat``, since the in-step path (:meth:`TVAU.prefix_embeds`) sees the sampled frames'
    taps only."""
    # every HEAT_FRAMES value but "sampled" pools segments (heat_frames() checked the value)
    return bool(method.use_rae and method.use_ahd and method.heat_frames != "sampled")


def video_heat(
    method: Any, ahd_params: Any, feats: dict[str, Any], grid: np.ndarray | None = None
) -> np.ndarray:
    """One video's heatmaps as RAE reads them under ``rae.heat_frames="segment_mean"`` or
    ``"segment_peak"``: float32 ``[S, g, g]``, the AHD patch-grid heatmaps of every encoded
    frame of ``feats`` (a :meth:`vau_jax.methods.tvau.data.TapFeatures.video` or
    ``predict.video_features`` output) pooled into ``S = method.frames`` segment means
    (:func:`segment_means`) or segment peaks (:func:`segment_peaks`). ``grid``: those heatmaps
    ``[T, g, g]`` when the caller has them already (prediction computes them for its
    timeline), so the AHD does not run twice."""
    if grid is None:
        from vau_jax.methods.tvau.evaluation import heatmaps

        _, grid = heatmaps(method, ahd_params, feats["taps"], grid=True)
    if method.heat_frames == "segment_peak":
        return segment_peaks(grid, int(method.frames))
    return segment_means(grid, int(method.frames))


def params_digest(params: Any) -> str:
    """A SHA-1 of a parameter tree's structure, shapes, dtypes and bytes."""
    import jax

    h = hashlib.sha1(str(jax.tree.structure(params)).encode())
    for leaf in jax.tree.leaves(params):
        a = np.asarray(jax.device_get(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _kept(method: Any, ahd_params: Any, split: str) -> dict[int, np.ndarray]:
    """The per-video :func:`video_heat` kept on ``method`` for ``split`` and these AHD
    parameters (the entries of other parameters are dropped: one AHD at a time)."""
    key = (params_digest(ahd_params), method.heat_frames, int(method.frames))
    memo = method.__dict__.setdefault("_segment_heat", {})
    if memo.get("key") != key:
        memo.clear()
        memo["key"] = key
    return memo.setdefault(split, {})


def keep_video_heat(method: Any, ahd_params: Any, split: str, heat: dict[int, np.ndarray]) -> None:
    """Keeps ``{video index: [T, g, g]}`` AHD patch-grid heatmaps (every encoded frame, made
    by the caller: evaluation makes them for its frame scores and boxes) as the videos'
    :func:`video_heat`, which :func:`split_heat` then returns without running AHD again."""
    kept = _kept(method, ahd_params, split)
    for i, grid in heat.items():
        kept[int(i)] = _read_only(video_heat(method, ahd_params, {}, grid=grid))


def _read_only(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)
    return x


def split_heat(
    method: Any, ahd_params: Any, split: str, videos: list[int]
) -> dict[int, np.ndarray]:
    """``{video index: [S, g, g]}`` of :func:`video_heat` for videos of ``split``, read-only.
    Each video's is computed once per AHD (``ahd_params``) and kept on ``method``: both RAE
    stages read the frozen AHD's heat of the same training videos (AHD on every frame: ~18
    s of each stage's data on the tiny preset), and evaluation's questions the heat its
    frame scores came from (:func:`keep_video_heat`)."""
    from vau_jax.methods.tvau.data import full_video

    kept = _kept(method, ahd_params, split)
    for i in videos:
        if int(i) not in kept:
            feats = full_video(method, split, int(i))
            kept[int(i)] = _read_only(video_heat(method, ahd_params, feats))
    return {int(i): kept[int(i)] for i in videos}
