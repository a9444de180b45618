"""Per-row kernel gradients of Dense layers (vau_jax/models/dense_grad.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.models import dense_grad
from vau_jax.models.dense_grad import dense_dot, per_row_kernel_grads


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.silu(nn.Dense(48, dot_general=dense_dot, name="up")(x))
        return nn.Dense(24, dot_general=dense_dot, name="down")(h)


def _loss_and_grads(x, on: bool):
    m = _Mlp()
    params = m.init(jax.random.key(0), x[:1])["params"]

    def loss(p, x):
        return jnp.sum(jnp.tanh(m.apply({"params": p}, x)) ** 2)

    with per_row_kernel_grads(on):
        fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        jaxpr = jax.make_jaxpr(jax.value_and_grad(loss, argnums=(0, 1)))(params, x).jaxpr
        out = fn(params, x)
    return out, jaxpr


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in its equations."""
    for eqn in jaxpr.eqns:
        yield eqn
        for v in eqn.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _batched_dots(jaxpr) -> int:
    """dot_general equations with a batch dimension (the per-row kernel gradients)."""
    return sum(
        e.primitive.name == "dot_general" and bool(e.params["dimension_numbers"][1][0])
        for e in _eqns(jaxpr)
    )


@pytest.mark.parametrize("rows", [3, 4])  # odd and even counts of row sums
def test_per_row_gradients_equal_the_plain_ones(rows):
    x = jax.random.normal(jax.random.key(1), (rows, dense_grad.MIN_TOKENS + 16, 24))
    (l_row, g_row), jaxpr_row = _loss_and_grads(x, True)
    (l_plain, g_plain), jaxpr_plain = _loss_and_grads(x, False)
    # the forward is the same product: the same loss to the bit
    assert float(l_row) == float(l_plain)
    # both kernels (and nothing else) take the per-row form
    assert _batched_dots(jaxpr_row) == 2 and _batched_dots(jaxpr_plain) == 0
    for a, b in zip(jax.tree.leaves(g_row), jax.tree.leaves(g_plain)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        # only the kernel gradients' summation order differs: measured 4.4e-7 of their
        # largest entry; biases and the input gradient equal to the bit
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())
    # and it is not a no-op: the kernel gradients are not identically zero
    assert np.abs(np.asarray(g_row[0]["up"]["kernel"])).max() > 1e-3


def test_short_rows_single_rows_and_other_products_stay_plain():
    short = jax.random.normal(jax.random.key(2), (4, dense_grad.MIN_TOKENS - 1, 24))
    one_row = jax.random.normal(jax.random.key(3), (1, dense_grad.MIN_TOKENS + 1, 24))
    flat = jax.random.normal(jax.random.key(4), (3 * dense_grad.MIN_TOKENS, 24))
    for x in (short, one_row, flat):
        _, jaxpr = _loss_and_grads(x, True)
        assert _batched_dots(jaxpr) == 0, x.shape


def test_default_follows_the_backend_and_the_context_overrides_it(monkeypatch):
    monkeypatch.delenv("VAU_JAX_PER_ROW_GRADS", raising=False)
    assert dense_grad.enabled() is (jax.default_backend() == "cpu")
    monkeypatch.setenv("VAU_JAX_PER_ROW_GRADS", "0")
    assert dense_grad.enabled() is False
    with per_row_kernel_grads(True):
        assert dense_grad.enabled() is True
    monkeypatch.delenv("VAU_JAX_PER_ROW_GRADS")
    with per_row_kernel_grads(False):
        assert dense_grad.enabled() is False
        with per_row_kernel_grads(True):
            assert dense_grad.enabled() is True
        assert dense_grad.enabled() is False
    assert dense_grad.enabled() is (jax.default_backend() == "cpu")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_gradient_dtypes_follow_the_inputs(dtype):
    x = jnp.ones((2, dense_grad.MIN_TOKENS, 8), dtype)
    w = jnp.full((8, 4), 0.5, dtype)

    def f(x, w):
        return jnp.sum(dense_dot(x, w, (((2,), (0,)), ((), ()))).astype(jnp.float32))

    with per_row_kernel_grads(True):
        dx, dw = jax.grad(f, argnums=(0, 1))(x, w)
    assert dx.dtype == dtype and dw.dtype == dtype
    # every kernel entry sums 2 rows x MIN_TOKENS tokens of ones
    np.testing.assert_array_equal(np.asarray(dw, np.float32), 2.0 * dense_grad.MIN_TOKENS)
    np.testing.assert_array_equal(np.asarray(dx, np.float32), 2.0)


def _dot_outputs(jaxpr) -> list[tuple[str, str]]:
    """``(operand dtype, output dtype)`` of every dot_general in ``jaxpr`` and its nests."""
    return [
        (str(e.invars[0].aval.dtype), str(e.outvars[0].aval.dtype))
        for e in _eqns(jaxpr)
        if e.primitive.name == "dot_general"
    ]


@pytest.mark.parametrize("tokens", [dense_grad.MIN_TOKENS, 3])  # per-row and plain paths
def test_bf16_products_accumulate_in_float32_on_the_cpu_switch_only(tokens):
    """On: every bf16 product (forward, input and kernel gradients) returns float32, cast
    back to bf16 outside; off (TPU / GPU compiles): bf16 in, bf16 out. float32 unchanged."""
    x = jax.random.normal(jax.random.key(5), (2, tokens, 64), jnp.bfloat16)
    w = (0.1 * jax.random.normal(jax.random.key(6), (64, 32))).astype(jnp.bfloat16)

    def f(x, w):
        return jnp.sum(dense_dot(x, w, (((2,), (0,)), ((), ()))).astype(jnp.float32) ** 2)

    results = {}
    for on in (True, False):
        with per_row_kernel_grads(on):
            jaxpr = jax.make_jaxpr(jax.value_and_grad(f, argnums=(0, 1)))(x, w).jaxpr
            y = dense_dot(x, w, (((2,), (0,)), ((), ())))
            results[on] = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(x, w)
        dots = _dot_outputs(jaxpr)
        assert len(dots) >= 3 and y.dtype == jnp.bfloat16
        if on:
            assert all(o == "float32" for _, o in dots), dots
        else:
            assert all(o == "bfloat16" for _, o in dots), dots
    # both are bf16 products of the same operands: they agree to bf16's final rounding
    (l_on, g_on), (l_off, g_off) = results[True], results[False]
    np.testing.assert_allclose(float(l_on), float(l_off), rtol=1e-3)  # measured: equal
    for a, b in zip(g_on, g_off):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        # measured: 7.0e-4 of the largest entry (the per-row input gradient), else equal
        assert np.abs(a - b).max() <= 2e-3 * np.abs(b).max()
    with per_row_kernel_grads(True):
        w32, x32 = w.astype(jnp.float32), x.astype(jnp.float32)
        jaxpr = jax.make_jaxpr(lambda a, b: dense_dot(a, b, (((2,), (0,)), ((), ()))))(x32, w32)
    assert _dot_outputs(jaxpr.jaxpr) == [("float32", "float32")]
