"""Frozen-encoder features of SynthVAD splits, computed once and cached in the data dir.

Methods whose image encoder is frozen (VAD-LLaMA's VE, VA-GPT's CLIP) never need the
encoder's gradients, so per-frame tokens are computed once per (split, encoder checkpoint,
SynthVAD config) and stored as ``.npz``; training then reads features, not pixels.

Per frame the CLIP vision tower gives ``1 + pool²`` tokens: the class token and the patch
grid average-pooled to ``pool × pool`` (spatial layout kept coarsely), each standardised
(zero mean, unit variance over channels) so the downstream heads see a stable scale.

Optionally the encoder sees a scene-invariant view of each frame instead of its pixels
(:func:`background_subtracted`): SynthVAD scenes are random per video, and an encoder that
sees them learns the scene rather than the event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.data import synthvad


def background_subtracted(frames: np.ndarray, warmup: int = 16) -> np.ndarray:
    """Causal background subtraction: uint8 ``[T, H, W, 3]`` -> uint8 ``[T, H, W, 3]``.

    The background of frame ``t`` is the per-pixel median of frames ``0..min(t, warmup-1)``
    (the first ``warmup`` frames: 2 s at 8 fps, before SynthVAD anomalies start; moving
    walkers drop out of the median). The frame minus its background, minus the per-channel
    median of that difference (the global light drift), is written around grey 128.
    Frame ``t`` only depends on frames ``<= t``, so it is usable online.
    """
    f = np.asarray(frames, np.float32)  # [T, H, W, C]
    n = min(len(f), warmup)
    bg = np.empty_like(f)
    for t in range(n):
        bg[t] = np.median(f[: t + 1], 0)
    bg[n:] = bg[n - 1]  # fixed after the warm-up
    d = f - bg
    d -= np.median(d.reshape(len(f), -1, f.shape[-1]), 1)[:, None, None]  # [T, 1, 1, C]
    return np.clip(np.rint(128.0 + d), 0, 255).astype(np.uint8)


def prepare_frames(frames: np.ndarray, input_mode: str) -> np.ndarray:
    """What the encoder sees of a whole video's uint8 frames: ``"rgb"`` (the pixels) or
    ``"background"`` (:func:`background_subtracted`)."""
    if input_mode == "rgb":
        return frames
    if input_mode == "background":
        return background_subtracted(frames)
    raise ValueError(f"unknown encoder input mode {input_mode!r}; expected 'rgb' or 'background'")


def _standardise(x: jax.Array) -> jax.Array:
    x = x - x.mean(-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + 1e-6)


def frame_tokens_fn(vision_apply: Any, pool: int) -> Any:
    """Returns jitted ``(params, pixels [N, H, W, 3] normalised) -> tokens [N, 1 + pool², D]``.

    ``vision_apply(params, pixels) -> dict`` must return HF-style ``last_hidden_state``
    ``[N, 1 + g², D]`` (class token first, then a ``g × g`` patch grid).
    """

    def fn(params: Any, pixels: jax.Array) -> jax.Array:
        h = vision_apply(params, pixels)["last_hidden_state"].astype(jnp.float32)
        cls, patches = h[:, :1], h[:, 1:]
        g = int(round(patches.shape[1] ** 0.5))
        if g * g != patches.shape[1] or g % pool:
            raise ValueError(
                f"patch grid {patches.shape[1]} is not a square divisible by pool={pool}"
            )
        grid = patches.reshape(h.shape[0], pool, g // pool, pool, g // pool, h.shape[-1]).mean(
            (2, 4)
        )
        return _standardise(jnp.concatenate([cls, grid.reshape(h.shape[0], pool * pool, -1)], 1))

    return jax.jit(fn)


def split_features(
    data_dir: str,
    split: str,
    num_videos: int,
    synth_cfg: synthvad.SynthConfig,
    *,
    encoder_key: str,
    tokens_fn: Any,
    params: Any,
    normalize: Any,
    batch_size: int = 128,
    input_mode: str = "rgb",
) -> dict[str, np.ndarray]:
    """Per-frame tokens of every video of a SynthVAD split (cached ``.npz``).

    Args:
      encoder_key: identifies the encoder weights (e.g. the checkpoint path + step) so a new
        encoder never reuses stale features.
      tokens_fn / params: from :func:`frame_tokens_fn`; normalize: uint8 frames -> pixels.
      input_mode: what the encoder sees of each video (:func:`prepare_frames`).
    Returns:
      ``tokens`` float16 ``[V, Tmax, M, D]`` (zero beyond each video's end), ``n_frames``
      ``[V]``, ``labels`` uint8 ``[V, Tmax]``, ``fps`` ``[V]``, ``anomaly_type`` str ``[V]``,
      ``video_id`` str ``[V]``, ``intervals`` float32 ``[V, 4, 2]`` seconds (``-1`` padded).
    """
    key = hashlib.sha1(
        json.dumps(
            [split, num_videos, dataclasses.asdict(synth_cfg), encoder_key]
            + ([] if input_mode == "rgb" else [input_mode]),
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = os.path.join(data_dir, f"features_{split}_{key}.npz")
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    videos = [synthvad.render_split_video(split, i, synth_cfg) for i in range(num_videos)]
    tmax = max(v.num_frames for v in videos)
    feats = None
    labels = np.zeros((num_videos, tmax), np.uint8)
    intervals = np.full((num_videos, 4, 2), -1.0, np.float32)
    for i, v in enumerate(videos):
        frames = prepare_frames(v.frames, input_mode)
        chunks = []
        for s in range(0, v.num_frames, batch_size):
            px = normalize(jnp.asarray(frames[s : s + batch_size]))
            chunks.append(np.asarray(tokens_fn(params, px), np.float16))
        tok = np.concatenate(chunks)
        if feats is None:
            feats = np.zeros((num_videos, tmax, *tok.shape[1:]), np.float16)
        feats[i, : v.num_frames] = tok
        labels[i, : v.num_frames] = v.labels
        iv = np.asarray(v.intervals, np.float32).reshape(-1, 2)[:4]
        intervals[i, : len(iv)] = iv
    out = {
        "tokens": feats,
        "n_frames": np.array([v.num_frames for v in videos], np.int32),
        "labels": labels,
        "fps": np.array([v.fps for v in videos], np.float32),
        "anomaly_type": np.array([v.anomaly_type for v in videos]),
        "video_id": np.array([v.video_id for v in videos]),
        "intervals": intervals,
    }
    os.makedirs(data_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out
