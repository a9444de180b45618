"""Dense products whose kernel gradient is summed over batch rows (CPU training speed).

A Dense layer's kernel gradient ``dW [D, F] = Σ_t x[t]ᵀ dy[t]`` contracts the token axis,
which is the *major* axis of both ``x [B, N, D]`` and ``dy [B, N, F]``. XLA:CPU's matmul
library takes the contracted axis minor, so XLA transposes both whole activations
(``[B·N, D] -> [D, B·N]``) and fuses the transpose into the element-wise backward work that
produces them (SiLU's, RMSNorm's), a loop that reads ``B·N`` rows with a stride and misses
the cache on every element: on the tiny LLaMA's text pretraining step (16 rows of 432
tokens), those fused transposes took a fifth of the step.

:func:`dense_dot` computes the same gradient as ``Σ_b (x[b]ᵀ dy[b])``: a batched product over
the rows, whose per-row transposes (one row's activations: ``N·D`` floats) stay in cache,
then a sum over ``B`` small ``[D, F]`` results in float32. The forward product and the input
gradient are the plain ones; only the kernel gradient's summation order changes (float
rounding). It applies where it pays: on the CPU backend (TPU and GPU compilers pick their
own layouts; :func:`per_row_kernel_grads` turns it off, as the AOT compiles for them do),
for inputs ``[B, N, D]`` with ``B ≥ 2`` rows of ``N ≥`` :data:`MIN_TOKENS` tokens (short
rows would make ``B`` partial ``[D, F]`` results for little work each).

Under the same switch, a product of bfloat16 (or float16) operands accumulates in float32
and returns float32, cast back to the operands' dtype: XLA:CPU runs a bf16 matmul on AMX
tiles only when its output is float32 (2048³ on an Intel Xeon with AMX: 1,372 GFLOP/s
against 238 with a bf16 output, and float32 305), and a float32 accumulator is what a
TPU's or GPU's bf16 matmul keeps inside anyway. Float32 products are unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

#: Rows shorter than this keep the plain product (``B`` partial kernel gradients of a few
#: tokens each cost more than the transposes they save).
MIN_TOKENS = 128

_PER_ROW: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "per_row_kernel_grads", default=None
)


@contextlib.contextmanager
def per_row_kernel_grads(on: bool | None) -> Iterator[None]:
    """Within the block, :func:`dense_dot` sums kernel gradients per row (``True``), never
    (``False``), or as outside any block (``None``: :func:`enabled`). It is read
    when a function is traced, so wrap the tracing (``jit(...).trace`` / ``.lower``)."""
    token = _PER_ROW.set(on)
    try:
        yield
    finally:
        _PER_ROW.reset(token)


def enabled() -> bool:
    """Whether :func:`dense_dot` traced now sums kernel gradients per row: the innermost
    :func:`per_row_kernel_grads`, else ``$VAU_JAX_PER_ROW_GRADS`` (``0`` / ``1``), else on
    the CPU backend only."""
    on = _PER_ROW.get()
    if on is None and os.environ.get("VAU_JAX_PER_ROW_GRADS", "") in ("0", "1"):
        on = os.environ["VAU_JAX_PER_ROW_GRADS"] == "1"
    return jax.default_backend() == "cpu" if on is None else bool(on)


def dense_dot(
    lhs: Array,
    rhs: Array,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> Array:
    """``lax.dot_general`` for ``nn.Dense(dot_general=...)``: the same product; its kernel
    gradient is summed per batch row (module docstring) for ``lhs [B, N, D]`` (``B ≥ 2``,
    ``N ≥`` :data:`MIN_TOKENS`) times ``rhs [D, F]`` on the CPU, where bf16 / f16 products
    (forward and gradients) also accumulate in float32 before the cast back."""
    (lc, rc), (lb, rb) = dimension_numbers
    on = enabled()
    f32_acc = (
        preferred_element_type is None and jnp.result_type(lhs.dtype, rhs.dtype) in _LOW and on
    )
    plain = (
        lhs.ndim != 3
        or rhs.ndim != 2
        or tuple(lc) != (2,)
        or tuple(rc) != (0,)
        or lb
        or rb
        or preferred_element_type is not None
        or lhs.shape[0] < 2
        or lhs.shape[1] < MIN_TOKENS
        or not on
    )
    if plain and not f32_acc:
        return jax.lax.dot_general(
            lhs,
            rhs,
            dimension_numbers,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
    if plain:
        return _product(lhs, rhs, dimension_numbers, precision, True)
    return _per_row(lhs, rhs, precision, f32_acc)


_DIMS = (((2,), (0,)), ((), ()))
#: Operand dtypes whose CPU products accumulate in float32 (module docstring).
_LOW = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _product(x: Array, w: Array, dims: Any, precision: Any, f32_acc: bool) -> Array:
    """``lax.dot_general``; with ``f32_acc``, accumulated and returned in float32, then cast
    to the operands' dtype (module docstring)."""
    if not f32_acc:
        return jax.lax.dot_general(x, w, dims, precision=precision)
    out = jax.lax.dot_general(x, w, dims, precision=precision, preferred_element_type=jnp.float32)
    return out.astype(jnp.result_type(x.dtype, w.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _per_row(x: Array, w: Array, precision: Any, f32_acc: bool) -> Array:
    return _product(x, w, _DIMS, precision, f32_acc)


def _fwd(x: Array, w: Array, precision: Any, f32_acc: bool) -> tuple[Array, tuple[Array, Array]]:
    return _product(x, w, _DIMS, precision, f32_acc), (x, w)


def _bwd(precision: Any, f32_acc: bool, res: tuple[Array, Array], dy: Array) -> tuple[Array, Array]:
    x, w = res
    # dx [B, N, D] = dy [B, N, F] · wᵀ: the plain input gradient
    dx = _product(dy, w, (((2,), (1,)), ((), ())), precision, f32_acc)
    # dw [D, F] = Σ_b x[b]ᵀ dy[b]: B row products (batch axis 0, tokens contracted), summed
    # in float32
    per_row = jax.lax.dot_general(
        x,
        dy,
        (((1,), (1,)), ((0,), (0,))),
        precision=precision,
        preferred_element_type=jnp.float32,
    )
    return dx.astype(x.dtype), _sum_rows(per_row).astype(w.dtype)


def _sum_rows(t: Array) -> Array:
    """``t.sum(axis=0)`` as a tree of whole-slab adds: XLA:CPU reduces over a major axis
    element by element (``[8, 128, 352]``: 2.2 ms against 0.05 ms for the adds)."""
    while t.shape[0] > 1:
        half = t.shape[0] // 2
        head = t[:half] + t[half : 2 * half]
        t = jnp.concatenate([head, t[2 * half :]]) if t.shape[0] % 2 else head
    return t[0]


_per_row.defvjp(_fwd, _bwd)
