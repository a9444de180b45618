"""The ``Method`` protocol every method package implements, and the pieces they share.

A method (``vau_jax/methods/<name>/``) is built from its config and run folder and then
driven in this order (:func:`vau_jax.methods.runner.run`):

1. ``Method(config, workdir)``: cheap, it only reads the config;
2. :meth:`Method.prepare`: builds (or finds cached) everything training needs: the dataset
   index, frozen encoders, the feature store entries, auxiliary heads trained alone (TETG),
   pretrained tiny encoders; idempotent, with progress bars. ``prepare(inference=True)``
   only loads what prediction needs (encoders, heads) and never trains or encodes a split;
3. :meth:`Method.stages` -> the trainer runs them (``abstract_params`` / ``init_params``
   describe the trained tree);
4. :meth:`Method.evaluate` on the test split -> ``metrics.json``;
5. :meth:`Method.predict` (one video -> timeline) and :meth:`Method.report` (``report.html``);
6. :meth:`Method.finish`: runs that follow the main one (VAD-LLaMA's phase 3).

``predict(params, frames, fps, state)`` returns a timeline dict with at least
``frame_probs`` (per input frame, in [0, 1]), ``intervals_s`` (``[[start, end], ...]``
seconds, half-open), ``fps`` and ``n_frames``, plus the method's own extras; ``state``
carries what a stream needs between windows (``None`` starts a new video).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from absl import logging

from vau_jax.train.trainer import Stage


@runtime_checkable
class Method(Protocol):
    """What :func:`vau_jax.methods.runner.run`, ``main``, ``explain`` and ``serve`` use."""

    name: str
    config: Any
    workdir: str

    def prepare(self, inference: bool = False) -> None:
        """Builds / loads the cached artefacts (see the module docstring)."""
        ...

    def abstract_params(self) -> Any:
        """Boxed ``ShapeDtypeStruct`` tree (logical axis names) of the trained params."""
        ...

    def init_params(self, rng: Any) -> Any:
        """Fresh (unboxed) params."""
        ...

    def stages(self) -> Sequence[Stage]:
        """The training stages, in order."""
        ...

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Test-split metrics, flat ``{"name": number}``."""
        ...

    def predict(
        self, params: Any, frames: np.ndarray, fps: float, state: Any = None
    ) -> tuple[dict[str, Any], Any]:
        """uint8 ``[T, H, W, 3]`` frames at ``fps`` -> ``(timeline, state)``."""
        ...

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str | None:
        """Writes ``workdir/report.html``; returns its path (``None``: no report)."""
        ...

    def finish(self, params: Any, metrics: dict[str, float], mode: str) -> dict[str, float]:
        """Runs after the main run (e.g. another phase); returns extra metrics."""
        ...


class MethodBase:
    """Defaults for the optional parts of :class:`Method` and the cheap constructor."""

    name = "method"

    def __init__(self, config: Any, workdir: str):
        self.config, self.workdir = config, workdir
        self.prepared: str | None = None  # None, "inference" or "train"

    def _need(self, what: str = "train") -> None:
        if self.prepared is None or (what == "train" and self.prepared != "train"):
            raise RuntimeError(f"{self.name}: call prepare() first (needs {what!r} artefacts)")

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str | None:
        return None

    def finish(self, params: Any, metrics: dict[str, float], mode: str) -> dict[str, float]:
        return {}


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-token standardisation over the last axis (zero mean, unit variance), float32: the
    scale every frozen-encoder token has before a trained head sees it."""
    x = np.asarray(x, np.float32)
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt(np.mean(np.square(x), -1, keepdims=True) + 1e-6)


def runs_seconds(
    probs: np.ndarray, timestamps: np.ndarray, threshold: float, frame_seconds: float
) -> list[list[float]]:
    """Half-open ``[start, end)`` second intervals where ``probs >= threshold`` (each frame
    covers ``frame_seconds`` from its timestamp)."""
    on = np.asarray(probs) >= threshold
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    out = []
    for s, e in edges.reshape(-1, 2):
        out.append(
            [round(float(timestamps[s]), 3), round(float(timestamps[e - 1]) + frame_seconds, 3)]
        )
    return out


def pick_videos(videos: list[Any], count: int) -> list[int]:
    """Up to ``count`` indices, anomalous and normal alternating (split order): the videos
    a report shows."""
    anomalous = [i for i, v in enumerate(videos) if v.is_anomalous]
    normal = [i for i, v in enumerate(videos) if not v.is_anomalous]
    out: list[int] = []
    for k in range(count):
        for group in (anomalous, normal):
            if k < len(group) and len(out) < count:
                out.append(group[k])
    return out


def timeline_head(
    method: str,
    frames: np.ndarray,
    fps: float,
    start_s: float,
    frame_probs: np.ndarray,
    threshold: float,
    stream_times: bool = False,
) -> dict[str, Any]:
    """The keys every method's timeline starts with: ``method``, ``fps``, ``n_frames``,
    ``start_s``, ``duration_s``, ``frame_probs`` (per input frame, 6 decimals), ``threshold``
    and ``intervals_s`` (runs of ``frame_probs >= threshold``, half-open seconds from the
    window's first frame, or stream seconds when ``stream_times``)."""
    n = len(frames)
    t_in = (float(start_s) if stream_times else 0.0) + np.arange(n) / float(fps)
    return {
        "method": method,
        "fps": float(fps),
        "n_frames": int(n),
        "start_s": round(float(start_s), 6),
        "duration_s": round(n / float(fps), 6),
        "frame_probs": [round(float(x), 6) for x in frame_probs],
        "threshold": float(threshold),
        "intervals_s": [
            [a + 0.0, b + 0.0] for a, b in runs_seconds(frame_probs, t_in, threshold, 1 / fps)
        ],
    }


def _is_llama(tree: Any) -> bool:
    """Whether ``tree`` is a :class:`~vau_jax.models.llama.LlamaForCausalLM` params tree."""
    model = tree.get("model") if isinstance(tree, dict) else None
    return isinstance(model, dict) and ("layers" in model or "layers_0" in model)


def put_parts(params: Any, parts: dict[str, Any]) -> Any:
    """``params`` with top-level subtrees replaced by host arrays of the same shapes, placed on
    the replaced leaves' shardings (raises naming the leaf on a shape mismatch). A LLaMA part
    (a converted GGUF / HF LLM) is first put in the model's decoder-block layout, unrolled or
    scanned (``scan_layers``)."""
    if not parts:
        return params

    def put(path: Any, new: Any, old: jax.Array) -> jax.Array:
        if np.shape(new) != old.shape:
            raise ValueError(
                f"pretrained weight {jax.tree_util.keystr(path)} has shape {np.shape(new)}, "
                f"the model expects {old.shape}"
            )
        # straight from the host onto the leaf's sharding: no whole copy on one device
        return jax.device_put(np.asarray(new, dtype=old.dtype), old.sharding)

    out = dict(params)
    for key, tree in parts.items():
        if _is_llama(tree) and _is_llama(params[key]):  # unrolled or scanned blocks
            from vau_jax.models.llama_layout import match_layer_layout

            tree = match_layer_layout(tree, params[key])
        out[key] = jax.tree_util.tree_map_with_path(put, tree, dict(params[key]))
    logging.info("loaded pretrained %s", sorted(parts))
    return out
