"""VAD-LLaMA on one video or a stream: frames -> per-frame anomaly probabilities.

``predict(method, params, frames, fps, state)``: the frames (any size, at ``fps``) are
resampled to the VE's frame rate (sample-and-hold), resized and, for the tiny CLIP,
background-subtracted with the stream's own causal background; encoded; grouped into
``F``-frame clips; and scored by the phase-2 VADor, whose LTC lists carry over between calls
in ``state``. Frames of an unfinished clip are scored provisionally (the clip zero-padded,
as the last clip of a video is in training) and kept for the next call, so every call
returns a probability for every input frame; only complete clips enter the LTC lists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vau_jax.data.frames import BackgroundSubtractor, resize_crop
from vau_jax.methods.base import timeline_head
from vau_jax.methods.vadllama import data as D


@dataclasses.dataclass
class StreamState:
    """What a VAD-LLaMA stream carries between calls.

    Attributes:
      seconds: stream time of the next input frame (seconds since the stream's start).
      next_out: index of the next output frame at the VE's rate.
      last_frame: the newest input frame (held for sample-and-hold), or None.
      background: the stream's causal background estimate.
      pending: tokens ``[k, M, D]`` of the frames of the unfinished clip (``k < F``).
      ltc: the LTC lists after the last complete clip.
      clips_done: complete clips scored so far.
    """

    seconds: float = 0.0
    next_out: int = 0
    last_frame: np.ndarray | None = None
    background: BackgroundSubtractor | None = None
    pending: np.ndarray | None = None
    ltc: Any = None
    clips_done: int = 0


def _resample(
    frames: np.ndarray, fps: float, out_fps: float, st: StreamState
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input frames at ``fps`` (stream time ``st.seconds`` for the first) -> the output grid
    frames at ``out_fps`` they cover: ``(frames [k, H, W, 3], times [k], source [k])`` with
    ``source`` the input index shown (-1: the held frame of the previous call)."""
    t_in = st.seconds + np.arange(len(frames)) / fps
    end = t_in[-1]
    k = np.arange(st.next_out, int(np.floor(end * out_fps + 1e-6)) + 1)
    times = k / out_fps
    src = np.searchsorted(t_in, times + 1e-6, side="right") - 1  # last input frame <= t
    if (src < 0).any() and st.last_frame is None:
        src = np.maximum(src, 0)
    pool = frames if st.last_frame is None else np.concatenate([st.last_frame[None], frames])
    shift = 0 if st.last_frame is None else 1
    out = pool[src + shift] if len(k) else frames[:0]
    st.next_out = int(k[-1]) + 1 if len(k) else st.next_out
    st.last_frame = frames[-1]
    st.seconds = float(end + 1.0 / fps)
    return out, times, src


def predict(
    method: Any, params: Any, frames: np.ndarray, fps: float, state: StreamState | None = None
) -> tuple[dict[str, Any], StreamState]:
    """One window of a video -> ``(timeline, state)`` (module docstring).

    Args:
      method: a prepared :class:`~vau_jax.methods.vadllama.method.VADLLaMA`.
      params: its phase-2 params.
      frames: uint8 ``[T, H, W, 3]``.
      fps: their frame rate.
      state: the previous call's state, ``None`` for a new video.
    Returns:
      the timeline (``frame_probs [T]`` per input frame, ``intervals_s``, ``clip_scores``
      of the clips touched, ``fps``, ``n_frames``, ``start_s``, ...) and the new state.
    """
    method._need("inference")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be uint8 [T>0, H, W, 3], got {frames.dtype} {frames.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    spec = method.spec
    st = state if state is not None else StreamState()
    if st.background is None and spec.input == "background":
        st.background = BackgroundSubtractor(spec.warmup)
    start_s = st.seconds
    seen, times, src = _resample(frames, fps, float(spec.fps), st)
    f = method.frames_per_clip
    new_tokens = np.zeros((0, 1, 1), np.float32)
    if len(seen):
        x = resize_crop(seen, spec.size, spec.shorter_side)
        if st.background is not None:
            x = st.background(x)
        enc = method.encoder
        outs = [enc(x[a : a + enc.batch_size]) for a in range(0, len(x), enc.batch_size)]
        rec = {k: np.concatenate([np.asarray(o[k], np.float32) for o in outs]) for k in outs[0]}
        new_tokens = D.frame_tokens(rec)
    tokens = new_tokens if st.pending is None else np.concatenate([st.pending, new_tokens])
    n_complete = len(tokens) // f
    fn = method.scorer(2)
    scores_done, st.ltc = (
        method.score_clips(params, D.to_clips(tokens[: n_complete * f], f), st.ltc, 2, fn)
        if n_complete
        else (np.zeros((0,), np.float32), st.ltc)
    )
    rest = tokens[n_complete * f :]
    if len(rest):  # provisional score of the unfinished clip; not committed to the LTC
        partial, _ = method.score_clips(params, D.to_clips(rest, f), st.ltc, 2, fn)
    else:
        partial = np.zeros((0,), np.float32)
    n_pending_before = 0 if st.pending is None else len(st.pending)
    st.pending = rest if len(rest) else None
    clip_scores = np.concatenate([scores_done, partial])
    # Score of every output frame of this call (the first n_pending_before tokens belong to
    # frames of the previous call, re-scored now that their clip is known).
    per_token = np.repeat(clip_scores, f)[: len(tokens)]
    out_scores = per_token[n_pending_before:]
    # Every input frame gets the score of the newest output frame at or before it.
    t_in = start_s + np.arange(len(frames)) / fps
    if len(times):
        j = np.clip(np.searchsorted(times, t_in + 1e-6, side="right") - 1, 0, len(times) - 1)
        frame_probs = out_scores[j]
    else:  # no grid point in this window: carry the last provisional score
        frame_probs = np.full(len(frames), float(partial[-1]) if len(partial) else 0.0)
    st.clips_done += n_complete
    thr = float(method.config.get("threshold", 0.5))
    timeline = {
        **timeline_head("vadllama", frames, fps, start_s, frame_probs, thr, stream_times=True),
        "clip_seconds": f / float(spec.fps),
        "clip_scores": [round(float(s), 6) for s in clip_scores],
        "clips_done": st.clips_done,
    }
    return timeline, st
