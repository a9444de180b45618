"""Attention taken a few batch rows at a time, forward and backward (CPU training speed).

Self-attention over ``[B, H, N, Dh]`` writes logits ``[B, H, N, N]`` and passes over them
several times (mask, max, exp, sum, the value product; more in the gradient). On the tiny
LLaMA's text-pretraining rows (16 rows of 432 tokens, 4 heads) that is 48 MB per layer, far
more than a core's cache, so XLA:CPU's fused loops stream it through memory on every pass.
Measured alone (2026-12-07, AMD EPYC with AVX-512, 2 CPUs; one layer's attention core with
packed-row masks), its forward and backward took 72-74 ms, against 47 ms for PyTorch's
fused ``scaled_dot_product_attention`` on the same shapes.

:func:`over_rows` runs an attention function over ``chunk`` rows at a time inside one
``lax.map``, so each chunk's logits stay in cache from the first pass to the last. Its
gradient is a second ``lax.map`` that recomputes each chunk's forward pass and pulls the
chunk's cotangent back through it (the logits are not kept between the passes: keeping them
would stream them through memory again). On the shapes above the attention core's forward
and backward take 32-34 ms instead of 72-74, and the whole text-pretraining step (forward
and backward) 569-609 ms instead of 644-670.

The function computed is the same, operation for operation: each row's products, softmax and
gradient are those of the whole batch, so with ``chunk >= 2`` the outputs and gradients are
bit for bit the plain ones (``tests/models/test_row_chunks.py``; with one row per chunk XLA
drops the batch axis and picks other kernels, so :func:`row_chunk` never chooses 1). With
``scan_layers`` the forward stays equal and the gradients differ by float rounding (4e-7 of
their largest entry, tiny LLaMA).

It applies where it pays: the CPU backend, traced under no mesh or a one-device mesh (a
batch axis sharded over several devices would be gathered by the map), and outside the AOT
compiles for TPU / GPU, which turn it off with
:func:`vau_jax.models.dense_grad.per_row_kernel_grads` (the switch of the per-row kernel
gradients, :func:`vau_jax.models.dense_grad.enabled`). Only the causal self-attention of
the LLaMA blocks uses it (:func:`vau_jax.models.layers.causal_attention`); the vision
towers' logits are small enough to stay in cache (the tiny CLIP's 4 MB per layer: no gain).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from vau_jax.models import dense_grad

Array = jax.Array


#: Logits (float32 bytes, whole batch) under which attention is left whole: small enough to
#: stay in cache anyway, and a decoding step's ``lax.map`` would cost more than it saves.
MIN_LOGIT_BYTES = 8 * 2**20
#: Logits per chunk to aim at (about a core's L2 cache): fewer rows per chunk would add
#: loop steps that each do little.
CHUNK_LOGIT_BYTES = 2**20


_OFF: contextvars.ContextVar[bool] = contextvars.ContextVar("row_chunks_off", default=False)


@contextlib.contextmanager
def whole_batch() -> Iterator[None]:
    """Within the block, attention traced now takes the whole batch at once (the plain
    program: e.g. for XLA's FLOP count, which counts a loop's body once)."""
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)


def row_chunk(batch: int, logit_bytes: int) -> int | None:
    """Rows per chunk for an attention over ``batch`` rows whose logits take ``logit_bytes``
    (float32, whole batch): the smallest divisor ``d >= 2`` of ``batch`` whose chunk holds
    :data:`CHUNK_LOGIT_BYTES`, else the largest leaving two chunks; ``None`` when not chunked
    (logits under :data:`MIN_LOGIT_BYTES`, ``batch`` under 4 or prime, inside
    :func:`whole_batch`, or chunking off here, see the module docstring)."""
    if logit_bytes < MIN_LOGIT_BYTES or _OFF.get() or not dense_grad.enabled():
        return None
    if _mesh_devices() > 1:
        return None
    divisors = [d for d in range(2, batch // 2 + 1) if batch % d == 0]
    for d in divisors:
        if d * logit_bytes >= CHUNK_LOGIT_BYTES * batch:
            return d
    return divisors[-1] if divisors else None


def _mesh_devices() -> int:
    """Devices of the mesh being traced under (``jax.set_mesh``; 1 when none is set)."""
    mesh = jax.sharding.get_abstract_mesh()
    return 1 if mesh.empty else int(mesh.size)


def over_rows(fn: Callable[..., Array], chunk: int, *rows: Array, shared: tuple = ()) -> Array:
    """``fn(*rows, *shared)`` computed ``chunk`` batch rows at a time (module docstring).

    Args:
      fn: ``fn(*row_args, *shared) -> [B, ...]``, row ``b`` of the output depending only on
        row ``b`` of each ``rows`` argument. Its arguments must be arrays.
      chunk: rows per chunk; must divide the batch (see :func:`row_chunk`).
      rows: arrays with the batch as axis 0 (all the same ``B``), differentiable or not
        (boolean masks get no cotangent).
      shared: arrays every chunk reads whole (e.g. a mask broadcast over the batch); they
        get no gradient.

    Returns:
      ``fn``'s output, ``[B, ...]``.
    """
    b = rows[0].shape[0]
    if b % chunk or any(r.shape[0] != b for r in rows):
        raise ValueError(f"over_rows: rows {[r.shape for r in rows]} do not split into {chunk}s")

    def split(t: Array) -> Array:
        return t.reshape(b // chunk, chunk, *t.shape[1:])

    def merge(t: Array) -> Array:
        return t.reshape(b, *t.shape[2:])

    n = len(rows)

    @jax.custom_vjp
    def chunked(*xs: Array) -> Array:
        common = xs[n:]
        return merge(jax.lax.map(lambda a: fn(*a, *common), tuple(split(x) for x in xs[:n])))

    def fwd(*xs: Array) -> tuple[Array, tuple[Array, ...]]:
        return chunked(*xs), xs

    def bwd(xs: tuple[Array, ...], dout: Array) -> tuple[Array | None, ...]:
        common = xs[n:]
        diff = [i for i in range(n) if jnp.issubdtype(xs[i].dtype, jnp.inexact)]

        def pull(args: tuple[Array, ...]) -> tuple[Array, ...]:
            *parts, d = args

            def of_diff(*ds: Array) -> Array:
                full = list(parts)
                for i, v in zip(diff, ds):
                    full[i] = v
                return fn(*full, *common)

            _, vjp = jax.vjp(of_diff, *(parts[i] for i in diff))
            return vjp(d)

        grads = jax.lax.map(pull, (*(split(x) for x in xs[:n]), split(dout)))
        out: list[Array | None] = [None] * len(xs)
        for i, g in zip(diff, grads):
            out[i] = merge(g)
        return tuple(out)

    chunked.defvjp(fwd, bwd)
    return chunked(*rows, *shared)
