"""Shared blocks: grouped-query attention against a numpy repeat-kv reference, and the
block-causal attention against the plain one."""

import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax.models import layers


def _reference(q, k, v, mask):
    """numpy softmax attention with HF's repeat_kv (kv head i // g for query head i)."""
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    m = logits.max(-1, keepdims=True)
    p = np.exp(logits - np.where(np.isfinite(m), m, 0))
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-30)
    return np.nan_to_num(p) @ v


def _inputs(h, hkv, n, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(2, h, n, 8)).astype(np.float32)
    k = rng.normal(size=(2, hkv, n, 8)).astype(np.float32)
    v = rng.normal(size=(2, hkv, n, 8)).astype(np.float32)
    valid = np.ones((2, n), bool)
    valid[1, :3] = False  # left padding: row 1's first queries see no key at all
    mask = np.tril(np.ones((n, n), bool))[None, None] & valid[:, None, None, :]
    return q, k, v, mask


@pytest.mark.parametrize("h,hkv", [(4, 4), (6, 2), (3, 1)])
def test_grouped_attention_equals_repeat_kv(h, hkv):
    q, k, v, mask = _inputs(h, hkv, 7)
    out = np.asarray(layers.attention(q, k, v, mask=mask))
    # measured max abs err 2.1e-7 to 2.35e-7 over 3 seeds (AVX2 EPYC)
    np.testing.assert_allclose(out, _reference(q, k, v, mask), atol=1.2e-6)
    assert np.all(out[1, :, :3] == 0)  # fully masked rows give zeros, not NaN
    # a per-head mask [B, H, Q, K] is grouped the same way as the heads
    head_mask = np.broadcast_to(mask, (2, h, 7, 7)).copy()
    head_mask[:, -1, :, 0] = False
    out = np.asarray(layers.attention(q, k, v, mask=head_mask))
    np.testing.assert_allclose(out, _reference(q, k, v, head_mask), atol=1.2e-6)  # 2.35e-7


@pytest.mark.parametrize("n,block", [(12, 4), (13, 5), (6, 8)])
def test_causal_attention_skips_only_masked_blocks(n, block):
    q, k, v, mask = _inputs(6, 2, n, seed=1)
    full = np.asarray(layers.attention(q, k, v, mask=mask))
    blocked = np.asarray(layers.causal_attention(q, k, v, mask=jnp.asarray(mask), block=block))
    np.testing.assert_allclose(blocked, full, atol=1e-6)  # measured 2.4e-7
    np.testing.assert_allclose(blocked, _reference(q, k, v, mask), atol=1.5e-6)  # 3.4e-7


def test_segment_mask_keeps_attention_inside_segments_and_restarts_positions():
    mask, pos = layers.segment_mask(jnp.array([[1, 1, 2, 2, 2, 0, 0]]))
    np.testing.assert_array_equal(np.asarray(pos)[0], [0, 1, 0, 1, 2, 0, 1])
    m = np.asarray(mask)[0, 0]
    assert m[3, 2] and not m[2, 1] and not m[4, 5] and m[6, 5]  # padding sees padding only
