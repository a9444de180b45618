"""Which video is which: disjoint seeds per split and a balanced, prefix-stable type schedule.

Splits: ``train`` and ``test`` (the benchmark: weakly labelled training videos, frame-labelled
test videos), ``validation``, and ``pretrain``: videos no method trains or evaluates on as
anomaly-detection data, reserved for pretraining the tiny frozen encoders (the tiny CLIP's
frame/caption pairs), the stand-in for the web data a real CLIP is pretrained on. Keeping it
apart is what makes the benchmark weakly supervised: per-frame captions describe the anomaly
frame by frame, so pretraining on ``train`` videos would hand their frame labels to the
frozen encoder the weakly supervised detector stands on (DESIGN §5, VAD-LLaMA).
"""

from __future__ import annotations

import numpy as np

from vau_jax.data.synthvad.types import NORMAL, SynthConfig

# Seeds of split s are SPLIT_OFFSETS[s] + i, i < SPLIT_STRIDE, so splits never share a seed.
SPLIT_STRIDE = 1_000_000
SPLIT_OFFSETS = {
    "train": 1 * SPLIT_STRIDE,
    "validation": 2 * SPLIT_STRIDE,
    "test": 3 * SPLIT_STRIDE,
    "pretrain": 4 * SPLIT_STRIDE,  # encoder pretraining only (module docstring)
}
_GOLDEN = 0.6180339887498949


def _offset(split: str) -> int:
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown SynthVAD split {split!r}; expected one of {list(SPLIT_OFFSETS)}")
    return SPLIT_OFFSETS[split]


def split_seeds(split: str, n: int) -> list[int]:
    """Seeds of the first ``n`` videos of ``split`` (disjoint across splits)."""
    if not 0 <= n <= SPLIT_STRIDE:
        raise ValueError(f"split_seeds: n must be in [0, {SPLIT_STRIDE}], got {n}")
    base = _offset(split)
    return [base + i for i in range(n)]


def video_id(split: str, index: int) -> str:
    """``"<split>_<index:06d>"``, e.g. ``"test_000012"``."""
    _offset(split)
    return f"{split}_{index:06d}"


def _anomalous(indices: np.ndarray, anomaly_prob: float) -> np.ndarray:
    """Low-discrepancy draw: the fraction of anomalous videos in any prefix tracks the prob."""
    return ((indices.astype(np.float64) + 0.5) * _GOLDEN) % 1.0 < anomaly_prob


def anomaly_type_at(index: int, config: SynthConfig) -> str:
    """Type of video ``index`` of a split: normal, or the anomaly types in turn.

    Depends only on ``index`` (not on the split size), so a longer split extends a shorter
    one; any ``len(types)`` consecutive anomalous videos cover every type.
    """
    flags = _anomalous(np.arange(index + 1), config.anomaly_prob)  # [index + 1]
    if not flags[index]:
        return NORMAL
    rank = int(np.count_nonzero(flags[:index]))
    return config.anomaly_types[rank % len(config.anomaly_types)]
