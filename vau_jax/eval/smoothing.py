"""Temporal smoothing of per-frame scores (T-VAU's frame scores, VA-GPT's TETG prior)."""

from __future__ import annotations

import numpy as np


def smooth_scores(scores: np.ndarray, timestamps: np.ndarray, sigma_s: float) -> np.ndarray:
    """One video's frame scores ``[T]`` smoothed over time: a Gaussian of ``sigma_s`` seconds
    (in frames: ``sigma_s`` / the median spacing of ``timestamps`` ``[T]``, seconds), edges
    extended with the end values. ``sigma_s <= 0`` or fewer than 2 frames: unchanged.

    Returns float32 ``[T]``. Non-causal: each output reads ``~3 sigma_s`` seconds ahead.
    """
    from scipy.ndimage import gaussian_filter1d

    scores = np.asarray(scores, np.float32)
    if sigma_s <= 0 or len(scores) < 2:
        return scores
    step = float(np.median(np.diff(np.asarray(timestamps, np.float64))))
    if not step > 0:
        raise ValueError(f"timestamps must increase to smooth over time, got spacing {step}")
    out = gaussian_filter1d(scores.astype(np.float64), sigma_s / step, mode="nearest")
    return out.astype(np.float32)
