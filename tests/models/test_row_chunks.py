"""Attention a few batch rows at a time (vau_jax/models/row_chunks.py): the same numbers, bit
for bit, as the whole batch at once."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax.models import layers, llama, row_chunks
from vau_jax.models.dense_grad import per_row_kernel_grads


@pytest.fixture
def small_logits(monkeypatch):
    """Chunk test-sized attentions too (the default threshold is 8 MB of logits)."""
    monkeypatch.setattr(row_chunks, "MIN_LOGIT_BYTES", 0)
    monkeypatch.setattr(row_chunks, "CHUNK_LOGIT_BYTES", 0)


def test_row_chunk_policy():
    mb = 2**20
    assert row_chunks.row_chunk(16, 48 * mb) == 2  # 3 MB of logits per row: two rows
    assert row_chunks.row_chunk(64, 16 * mb) == 4  # 1 MB in 4 rows
    assert row_chunks.row_chunk(6, 600 * mb) == 2
    assert row_chunks.row_chunk(12, 9 * mb) == 2  # 1.5 MB in 2 rows
    assert row_chunks.row_chunk(2, 64 * mb) is None  # one chunk only
    assert row_chunks.row_chunk(7, 64 * mb) is None  # prime
    assert row_chunks.row_chunk(16, 4 * mb) is None  # small logits stay whole
    with row_chunks.whole_batch():
        assert row_chunks.row_chunk(16, 48 * mb) is None
    with per_row_kernel_grads(False):  # the AOT compiles' switch
        assert row_chunks.row_chunk(16, 48 * mb) is None
    if jax.device_count() > 1:
        mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
        with jax.set_mesh(mesh):
            assert row_chunks.row_chunk(16, 48 * mb) is None
    one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    with jax.set_mesh(one):
        assert row_chunks.row_chunk(16, 48 * mb) == 2


def _inputs(b=8, h=4, hkv=2, n=96, dh=16, seed=0):
    r = np.random.default_rng(seed)
    q = jnp.asarray(r.standard_normal((b, h, n, dh)), jnp.float32)
    k = jnp.asarray(r.standard_normal((b, hkv, n, dh)), jnp.float32)
    v = jnp.asarray(r.standard_normal((b, hkv, n, dh)), jnp.float32)
    dout = jnp.asarray(r.standard_normal((b, h, n, dh)), jnp.float32)
    seg = np.sort(r.integers(1, 4, (b, n)), axis=1)
    per_row = layers.segment_mask(jnp.asarray(seg))[0] & jnp.tril(jnp.ones((n, n), bool))
    return q, k, v, dout, per_row


def _run(fn, *args, dout):
    """Output and the q / k / v cotangents of ``fn``, jitted fresh (so the switch is read)."""
    out = jax.jit(lambda *a: fn(*a))(*args)
    grads = jax.jit(lambda *a: jax.vjp(lambda q, k, v: fn(q, k, v, *a[4:]), *a[:3])[1](a[3]))(
        *args[:3], dout, *args[3:]
    )
    return [np.asarray(out)] + [np.asarray(g) for g in grads]


@pytest.mark.parametrize("mask_kind", ["per_row", "shared", "none"])
def test_causal_attention_chunked_is_bitwise_plain(small_logits, mask_kind):
    q, k, v, dout, per_row = _inputs()
    n = q.shape[2]
    mask = {"per_row": per_row, "shared": jnp.tril(jnp.ones((n, n), bool))[None, None]}.get(
        mask_kind
    )
    args = (q, k, v) if mask is None else (q, k, v, mask)

    def fn(q, k, v, *m):
        return layers.causal_attention(q, k, v, mask=m[0] if m else None, block=32)

    assert row_chunks.row_chunk(q.shape[0], 1) == 2
    chunked = _run(fn, *args, dout=dout)
    with row_chunks.whole_batch():
        plain = _run(fn, *args, dout=dout)
    for a, b in zip(chunked, plain):
        np.testing.assert_array_equal(a, b)
    # and the chunked path really ran: its jaxpr maps (scans) over the chunks
    # (fresh lambdas: a traced function's jaxpr is cached)
    assert "scan[" in str(jax.make_jaxpr(lambda *a: fn(*a))(*args))
    with row_chunks.whole_batch():
        assert "scan[" not in str(jax.make_jaxpr(lambda *a: fn(*a))(*args))


def test_over_rows_gradients_and_masks(small_logits):
    """A generic row function: floats get their cotangents, a boolean row argument and a shared
    one get none, and a batch that does not split is refused."""
    r = np.random.default_rng(1)
    x = jnp.asarray(r.standard_normal((6, 5, 3)), jnp.float32)
    keep = jnp.asarray(r.random((6, 5, 3)) > 0.3)
    scale = jnp.asarray(r.standard_normal((1, 5, 3)), jnp.float32)

    def fn(x, keep, scale):
        return jnp.where(keep, jnp.sin(x) * scale, 0.0).sum(-1)

    def chunked(x):
        return row_chunks.over_rows(fn, 2, x, keep, shared=(scale,))

    np.testing.assert_array_equal(jax.jit(chunked)(x), jax.jit(fn)(x, keep, scale))
    g1 = jax.jit(jax.grad(lambda x: jnp.sum(chunked(x) ** 2)))(x)
    g2 = jax.jit(jax.grad(lambda x: jnp.sum(fn(x, keep, scale) ** 2)))(x)
    np.testing.assert_array_equal(g1, g2)
    assert np.all(np.asarray(g1)[~np.asarray(keep)] == 0)
    with pytest.raises(ValueError, match="do not split"):
        row_chunks.over_rows(fn, 4, x, keep, shared=(scale,))


def test_llama_training_gradients_bitwise(small_logits):
    """The tiny LLaMA's loss and every parameter gradient on packed rows: equal bit for bit with
    the chunked attention and without it."""
    cfg = dataclasses.replace(llama.PRESETS["tiny-llama"], vocab_size=64, attention_block=32)
    model = llama.module_from_config(cfg)
    r = np.random.default_rng(2)
    ids = jnp.asarray(r.integers(3, 64, (4, 80)), jnp.int32)
    seg = jnp.asarray(np.sort(r.integers(1, 3, (4, 80)), axis=1), jnp.int32)
    params = model.init(jax.random.key(0), ids[:1, :8])["params"]

    def loss(p):
        logits = model.apply({"params": p}, ids, segment_ids=seg)["logits"]
        lp = jax.nn.log_softmax(logits[:, :-1])
        return -jnp.mean(jnp.take_along_axis(lp, ids[:, 1:, None], -1))

    chunked = jax.jit(jax.value_and_grad(lambda p: loss(p)))(params)
    assert "scan[" in str(jax.make_jaxpr(lambda p: loss(p))(params))
    with row_chunks.whole_batch():
        assert "scan[" not in str(jax.make_jaxpr(lambda p: loss(p))(params))
        plain = jax.jit(jax.value_and_grad(lambda p: loss(p)))(params)
    for a, b in zip(jax.tree.leaves(chunked), jax.tree.leaves(plain)):
        np.testing.assert_array_equal(a, b)
