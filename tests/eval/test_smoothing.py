"""Temporal smoothing of frame scores (``vau_jax/eval/smoothing.py``)."""

import numpy as np
import pytest

from vau_jax.eval.smoothing import smooth_scores


def test_smooth_scores_is_a_gaussian_in_seconds():
    rng = np.random.default_rng(0)
    s = rng.random(40).astype(np.float32)
    t = np.arange(40) * 0.5  # 2 fps: 1 s = 2 frames
    np.testing.assert_array_equal(smooth_scores(s, t, 0.0), s)
    # Reference: a Gaussian of 2 frames truncated at 4 sigma, edges extended, normalised.
    k = np.arange(-8, 9)
    w = np.exp(-0.5 * (k / 2.0) ** 2)
    w /= w.sum()
    padded = np.concatenate([np.full(8, s[0]), s, np.full(8, s[-1])]).astype(np.float64)
    want = np.convolve(padded, w, mode="valid")
    np.testing.assert_allclose(smooth_scores(s, t, 1.0), want, atol=1e-6)
    with pytest.raises(ValueError, match="timestamps must increase"):
        smooth_scores(s, np.zeros(40), 1.0)


def test_fewer_than_two_frames_are_returned_as_float32():
    one = smooth_scores(np.array([0.7]), np.array([0.0]), 1.0)
    assert one.dtype == np.float32 and one.tolist() == [np.float32(0.7)]
