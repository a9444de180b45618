"""LTC lists against a brute-force numpy reference; causality; streaming == full."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.models.heads.ltc import (
    LTC,
    AnomalyPredictor,
    LTCConfig,
    anomaly_scores,
    init_state,
    scan_lists,
)


def _reference(x, s, k, mode):
    """For each clip i: lists from clips 0..i (K lowest, K highest, last K), then retrieval."""
    n, d = x.shape
    out = {"n": np.zeros((n, d)), "a": np.zeros((n, d)), "h": np.zeros((n, d))}
    for i in range(n):
        order = np.argsort(s[: i + 1])
        lists = {"n": order[:k], "a": order[::-1][:k], "h": np.arange(max(0, i + 1 - k), i + 1)}
        for name, idx in lists.items():
            items = x[idx]
            dots = items @ x[i]
            if mode == "dot":
                w = dots
            elif mode == "softmax":
                z = dots / np.sqrt(d)
                w = np.exp(z - z.max())
                w = w / w.sum()
            else:
                w = dots / (np.linalg.norm(items, axis=-1) * np.linalg.norm(x[i]) + 1e-6) / len(idx)
            out[name][i] = w @ items
    return out


@pytest.mark.parametrize("mode", ["dot", "softmax", "cosine"])
def test_lists_match_bruteforce(mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 6)).astype(np.float32)
    s = rng.uniform(size=(2, 11)).astype(np.float32)
    cfg = LTCConfig(dim=6, k=3, retrieval=mode)
    (n, a, h), _ = scan_lists(
        jnp.asarray(x), jnp.asarray(s), jnp.ones((2, 11), bool), init_state(2, 3, 6), cfg
    )
    for b in range(2):
        ref = _reference(x[b], s[b], 3, mode)
        np.testing.assert_allclose(np.asarray(n[b]), ref["n"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a[b]), ref["a"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(h[b]), ref["h"], rtol=1e-4, atol=1e-5)


def _module_and_params(k=4):
    cfg = LTCConfig(dim=8, k=k)
    m = LTC(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 12, 8))
    s = jax.random.uniform(jax.random.key(1), (2, 12))
    mask = jnp.ones((2, 12), bool)
    params = m.init(jax.random.key(2), x, s, mask)["params"]
    # non-zero soft weights so the context actually changes the output
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)
    return m, params, x, s, mask


def test_causal_and_streaming_equals_full():
    m, params, x, s, mask = _module_and_params()
    full, _ = m.apply({"params": params}, x, s, mask)
    x2 = x.at[:, 8:].set(100.0)
    s2 = s.at[:, 8:].set(0.5)
    changed, _ = m.apply({"params": params}, x2, s2, mask)
    np.testing.assert_allclose(np.asarray(changed[:, :8]), np.asarray(full[:, :8]), rtol=1e-6)
    assert not np.allclose(np.asarray(changed[:, 8:]), np.asarray(full[:, 8:]))
    state = None
    outs = []
    for c in range(0, 12, 5):  # chunks of 5, 5, 2
        y, state = m.apply(
            {"params": params}, x[:, c : c + 5], s[:, c : c + 5], mask[:, c : c + 5], state
        )
        outs.append(y)
    np.testing.assert_allclose(
        np.asarray(jnp.concatenate(outs, 1)), np.asarray(full), rtol=1e-5, atol=1e-6
    )
    assert state.normal.shape == (2, 4, 8)  # fixed-size carry, whatever the video length


def test_padding_clips_do_not_update_lists():
    m, params, x, s, mask = _module_and_params()
    mask = mask.at[:, 6:].set(False)
    _, st_masked = m.apply({"params": params}, x, s, mask)
    _, st_short = m.apply({"params": params}, x[:, :6], s[:, :6], mask[:, :6])
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        st_masked,
        st_short,
    )


def test_baseline_and_zero_init_identity():
    x = jax.random.normal(jax.random.key(0), (1, 5, 8))
    s, mask = jnp.zeros((1, 5)), jnp.ones((1, 5), bool)
    base = LTC(LTCConfig(dim=8, k=0))
    y, _ = base.apply(base.init(jax.random.key(0), x, s, mask), x, s, mask)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    m = LTC(LTCConfig(dim=8, k=2))
    y, _ = m.apply(m.init(jax.random.key(0), x, s, mask), x, s, mask)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-7)  # W_* start at zero output


def test_anomaly_predictor_scores():
    ap = AnomalyPredictor()
    x = jax.random.normal(jax.random.key(0), (3, 7, 16))
    params = nn.unbox(ap.init(jax.random.key(1), x)["params"])
    assert params["fc1"]["kernel"].shape == (16, 64) and params["fc2"]["kernel"].shape == (64, 2)
    p = anomaly_scores(ap.apply({"params": params}, x))
    assert p.shape == (3, 7) and bool(jnp.all((p > 0) & (p < 1)))
