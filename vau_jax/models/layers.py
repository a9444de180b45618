"""Shared Flax Linen building blocks with logical axis names.

Every parameter created here carries logical axis names (``nn.with_logical_partitioning``);
only the config (``vau_jax.sharding``) maps them to mesh axes. Logical names used across the
model zoo:

=========  ===============================================================
``embed``  model width (hidden size)
``mlp``    feed-forward inner width
``heads``  attention heads x head_dim, flattened (q/k/v/o projections)
``kv``     per-head feature dim (rarely sharded)
``vocab``  vocabulary
``batch``  batch (activations only)
``length`` sequence / token axis (activations only)
``pos``    position-table rows (never sharded)
``conv``   convolution spatial / input-channel dims (never sharded)
=========  ===============================================================

Linen leaf names are Flax's (``kernel``/``bias``/``scale``/``embedding``); module names mirror
the HF checkpoints (``q_proj``, ``layer_norm1``...), so converters are name tables plus shape
hooks (a ``kernel`` is the transpose of a torch ``Linear.weight``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import row_chunks
from vau_jax.models.dense_grad import dense_dot

Array = jax.Array
Dtype = Any
Axes = tuple[str | None, ...]

default_kernel_init = nn.initializers.normal(stddev=0.02)


def partitioned(init: Callable, axes: Axes) -> Callable:
    """Wraps an initializer so the created param carries logical axis names ``axes``."""
    return nn.with_logical_partitioning(init, axes)


def dense(
    features: int,
    axes: tuple[str | None, str | None],
    *,
    name: str,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    kernel_init: Callable = default_kernel_init,
    precision: Any = None,
) -> nn.Dense:
    """An ``nn.Dense`` whose kernel ``[in, out]`` has logical axes ``axes`` and bias ``axes[1]``."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        precision=precision,
        kernel_init=partitioned(kernel_init, axes),
        bias_init=partitioned(nn.initializers.zeros_init(), (axes[1],)),
        name=name,
        dot_general=dense_dot,  # kernel gradients summed per row on the CPU (dense_grad.py)
    )


def layer_norm(
    *,
    name: str,
    eps: float = 1e-5,
    axis_name: str | None = "embed",
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    use_bias: bool = True,
) -> nn.LayerNorm:
    """An ``nn.LayerNorm`` over the last axis with logically named ``scale``/``bias``.

    Computes its statistics in float32 whatever the compute dtype (as torch does).
    """
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        param_dtype=param_dtype,
        use_bias=use_bias,
        use_fast_variance=False,
        scale_init=partitioned(nn.initializers.ones_init(), (axis_name,)),
        bias_init=partitioned(nn.initializers.zeros_init(), (axis_name,)),
        name=name,
    )


def rms_norm(x: Array, scale: Array, eps: float, dtype: Dtype) -> Array:
    """``x [..., D] / sqrt(mean(x^2) + eps) * scale [D]`` in ``dtype``, statistics in float32
    (:class:`RMSNorm`'s arithmetic, for callers that hold the scale themselves)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    # HF LlamaRMSNorm casts back to the input dtype before multiplying by the weight.
    return (scale.astype(dtype) * y.astype(dtype)).astype(dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm (LLaMA): ``x / sqrt(mean(x^2) + eps) * scale``, stats in float32."""

    eps: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:  # [..., D] -> [..., D]
        scale = self.param(
            "scale",
            partitioned(nn.initializers.ones_init(), ("embed",)),
            (x.shape[-1],),
            self.param_dtype,
        )
        return rms_norm(x, scale, self.eps, self.dtype)


def quick_gelu(x: Array) -> Array:
    """CLIP's ``x * sigmoid(1.702 x)``."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF "gelu" is the exact erf form
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
}


def activation(name: str) -> Callable[[Array], Array]:
    """Looks up an activation by its HF config name; unknown names raise with the known list."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


def split_heads(x: Array, num_heads: int) -> Array:
    """``[B, N, H*Dh] -> [B, H, N, Dh]`` (head-major, fastest layout on XLA:CPU)."""
    b, n, hd = x.shape
    return x.reshape(b, n, num_heads, hd // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: Array) -> Array:
    """``[B, H, N, Dh] -> [B, N, H*Dh]``."""
    b, h, n, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, n, h * d)


#: Bytes of float32 attention logits above which :func:`attention` splits the queries into
#: blocks: logits that stop fitting in cache cost more to write and re-read than the extra,
#: smaller matmuls (DINOv2-B at 16x24 patches, batch 4: 28 MB per layer unsplit).
ATTENTION_BLOCK_BYTES = 16 * 2**20


def attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    scale: float | None = None,
    dtype: Dtype = jnp.float32,
) -> Array:
    """Scaled dot-product attention, head-major.

    Args:
      q: ``[B, H, Q, Dh]``; k, v: ``[B, Hkv, K, Dh]`` with ``H % Hkv == 0`` (grouped-query
        attention repeats each kv head ``H // Hkv`` times, as HF's ``repeat_kv``).
      mask: optional boolean, broadcastable to ``[B, H, Q, K]``; True = attend.
      bias: optional additive float bias broadcastable to ``[B, H, Q, K]``.
      scale: defaults to ``Dh ** -0.5``.
    Returns:
      ``[B, H, Q, Dh]``. Softmax is computed in float32. A row whose mask is all False gets
      zeros rather than NaNs.

    The softmax is normalised after the value matmul (``exp(l - max) @ v / sum``, the same
    function: the divide touches ``[Q, Dh]`` instead of ``[Q, K]``), and when the logits
    would exceed :data:`ATTENTION_BLOCK_BYTES` the queries are taken in blocks that fit.
    """
    b, h, nq, dh = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    if h % hkv:
        raise ValueError(f"num_heads {h} is not a multiple of num_kv_heads {hkv}")
    scale = dh**-0.5 if scale is None else scale
    rows = max(1, ATTENTION_BLOCK_BYTES // (4 * b * h * nk))
    if nq <= rows:
        return _attention_block(q, k, v, mask, bias, scale, dtype)
    block = max(8, -(-nq // -(-nq // rows)))  # equal blocks of at most `rows` queries

    def rows_of(t: Array | None, start: int, stop: int) -> Array | None:
        if t is None:
            return None
        t = jnp.asarray(t)
        return t[..., start:stop, :] if t.ndim >= 2 and t.shape[-2] == nq else t

    outs = [
        _attention_block(
            q[:, :, s : s + block],
            k,
            v,
            rows_of(mask, s, s + block),
            rows_of(bias, s, s + block),
            scale,
            dtype,
        )
        for s in range(0, nq, block)
    ]
    return jnp.concatenate(outs, axis=2)


def _attention_block(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None,
    bias: Array | None,
    scale: float,
    dtype: Dtype,
) -> Array:
    """:func:`attention` over all of ``q``'s rows at once."""
    b, h, nq, dh = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    g = h // hkv
    if g == 1:  # plain multi-head attention: the 4-D form XLA fuses best
        logits = jnp.matmul(q, jnp.swapaxes(k, -1, -2), preferred_element_type=jnp.float32)
        probs, norm = _unnormalised_softmax(logits * scale, mask, bias)
        out = jnp.matmul(probs.astype(dtype), v.astype(dtype), preferred_element_type=jnp.float32)
        return (out * norm).astype(dtype)
    # Grouped-query attention without copying k/v: the g query heads that share a kv head
    # become one [g * Q] row block of that head's matmul (HF's repeat_kv order: head i reads
    # kv head i // g).
    qg = q.reshape(b, hkv, g * nq, dh)
    logits = jnp.matmul(qg, jnp.swapaxes(k, -1, -2), preferred_element_type=jnp.float32)
    logits = logits.reshape(b, hkv, g, nq, nk) * scale  # [B, Hkv, g, Q, K]

    def grouped(t: Array) -> Array:  # [B|1, H|1, Q|1, K] -> broadcastable to [B, Hkv, g, Q, K]
        t = jnp.asarray(t)
        t = t.reshape((1,) * (4 - t.ndim) + t.shape)
        if t.shape[1] == 1:
            return t[:, :, None]
        return t.reshape(t.shape[0], hkv, g, *t.shape[2:])

    probs, norm = _unnormalised_softmax(
        logits,
        None if mask is None else grouped(mask),
        None if bias is None else grouped(bias),
    )
    probs = probs.reshape(b, hkv, g * nq, nk)
    out = jnp.matmul(probs.astype(dtype), v.astype(dtype), preferred_element_type=jnp.float32)
    out = out * norm.reshape(b, hkv, g * nq, 1)
    return out.reshape(b, h, nq, v.shape[-1]).astype(dtype)


def _unnormalised_softmax(
    logits: Array, mask: Array | None, bias: Array | None
) -> tuple[Array, Array]:
    """``(exp(l - max l), 1 / sum)`` over the last axis of ``logits + bias`` where ``mask``
    (float32): ``probs * norm`` is the softmax. Rows with no True entry get ``norm = 0``, so
    their output is zeros (``mask`` / ``bias`` broadcast against ``logits``)."""
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    # The max only keeps exp() in range; it cancels exactly, so no gradient flows through it.
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    probs = jnp.exp(logits - top)
    norm = 1.0 / jnp.sum(probs, axis=-1, keepdims=True)
    if mask is not None:
        norm = jnp.where(jnp.any(mask, axis=-1, keepdims=True), norm, 0.0)
    return probs, norm


def causal_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    mask: Array | None = None,
    block: int = 256,
    dtype: Dtype = jnp.float32,
) -> Array:
    """:func:`attention` over a causal self-attention, skipping the key blocks no query sees.

    ``q [B, H, N, Dh]`` and ``k, v [B, Hkv, N, Dh]`` cover the same ``N`` positions; ``mask``
    (broadcastable to ``[B, H, N, N]``) must be causal (False above the diagonal), e.g. causal
    & key validity. Queries ``[j*block, (j+1)*block)`` attend keys ``[0, (j+1)*block)`` only,
    so a long prompt costs about half the attention FLOPs and the ``[N, N]`` logits are never
    materialised. Equal to ``attention(q, k, v, mask=mask)`` up to float rounding.

    On the CPU it runs a few batch rows at a time, forward and backward
    (:mod:`vau_jax.models.row_chunks`: the same numbers, bit for bit, with each chunk's
    logits in cache).
    """
    b, h, n = q.shape[:3]
    chunk = row_chunks.row_chunk(b, 4 * b * h * n * n // 2)  # causal: about half the logits
    m = None if mask is None else jnp.asarray(mask)
    per_row = m is not None and m.ndim == 4 and m.shape[0] == b
    broadcast = m is None or m.ndim < 4 or m.shape[0] == 1
    if chunk is not None and k.shape[0] == v.shape[0] == b and (per_row or broadcast):

        def rows_fn(q: Array, k: Array, v: Array, *m: Array) -> Array:
            return _causal_attention(q, k, v, m[0] if m else None, block, dtype)

        if per_row:
            return row_chunks.over_rows(rows_fn, chunk, q, k, v, m)
        return row_chunks.over_rows(rows_fn, chunk, q, k, v, shared=() if m is None else (m,))
    return _causal_attention(q, k, v, mask, block, dtype)


def _causal_attention(
    q: Array, k: Array, v: Array, mask: Array | None, block: int, dtype: Dtype
) -> Array:
    """:func:`causal_attention` over the whole batch at once."""
    n = q.shape[2]
    if n <= block:
        return attention(q, k, v, mask=mask, dtype=dtype)
    outs = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        m = None
        if mask is not None:
            m = jnp.asarray(mask)
            m = m[..., start:stop, :stop] if m.shape[-2] > 1 else m[..., :stop]
        outs.append(
            attention(q[:, :, start:stop], k[:, :, :stop], v[:, :, :stop], mask=m, dtype=dtype)
        )
    return jnp.concatenate(outs, axis=2)


def segment_mask(segment_ids: Array) -> tuple[Array, Array]:
    """Attention within segments of packed rows (:mod:`vau_jax.data.packing`).

    Args:
      segment_ids: int ``[B, N]``: 1, 2, ... per packed sequence (contiguous), 0 = padding.
    Returns:
      bool ``[B, 1, N, N]`` (query and key in the same segment, padding with padding only;
      not causal) and int32 ``[B, N]`` positions restarting at 0 at each segment's first
      token.
    """
    seg = segment_ids.astype(jnp.int32)
    same = seg[:, :, None] == seg[:, None, :]  # padding sees padding: no empty softmax row
    idx = jnp.broadcast_to(jnp.arange(seg.shape[1], dtype=jnp.int32), seg.shape)
    first = jnp.concatenate([jnp.ones_like(seg[:, :1], bool), seg[:, 1:] != seg[:, :-1]], axis=1)
    start = jax.lax.cummax(jnp.where(first, idx, 0), axis=1)
    return same[:, None], idx - start


def constrain(x: Array, axes: Sequence[str | None]) -> Array:
    """Logical sharding constraint on an activation (no-op outside a mesh/rules context)."""
    return nn.with_logical_constraint(x, tuple(axes))
