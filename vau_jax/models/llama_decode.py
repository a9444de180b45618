"""A cached LLaMA decoding step on weights re-laid for matrix-vector products (XLA:CPU).

One decoding step reads every weight once to produce one token per row, so at batch 1 it is
bound by memory bandwidth, and on XLA:CPU two things cost bandwidth beside the bytes
themselves:

- **layout.** ``nn.Dense`` keeps its kernel ``[in, out]``; a row vector times that matrix
  walks the weights column-wise, while ``[out, in]`` rows are contiguous dot products.
  Measured on a 2-core AVX2 EPYC: a 4096 × 16384 f32 matrix-vector product reads 25 GB/s
  from ``[in, out]`` and 30 GB/s (the machine's sum bandwidth) from ``[out, in]``.
- **op count.** Each small product pays a fixed dispatch and thread start-up cost (~25 µs
  there), so SmolLM2's 7 products per block cost more than their bytes.  Fusing
  ``q, k, v`` into one ``[Hq·Dh + 2·Hkv·Dh, D]`` matrix and ``gate, up`` into one
  ``[2F, D]`` leaves 4 per block.

:func:`prepare` builds that copy (it costs a transposing pass over the weights, 0.16 s for
SmolLM2-135M there, and their size in memory while it is kept), and :func:`decode_step` is
:func:`vau_jax.models.llama.decode_step` on it: the same cache, the same mask and position
rules, the same attention function, logits equal up to float summation order
(tests/models/test_llama_decode.py measures the difference). Make it once per set of weights
and pass it to every :func:`vau_jax.eval.generate.generate` call (``decode_weights=``);
:func:`for_backend` returns ``None`` off the CPU, where the compiler picks its own layouts and
the copy would only cost memory.
"""

from __future__ import annotations

import weakref
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import layers
from vau_jax.models.llama import Cache, LlamaConfig, apply_rope, rope_cos_sin

Array = jax.Array
Weights = dict[str, Any]


def _block(params: Any, i: int) -> Any:
    """Block ``i``'s parameter subtree in either layer layout (loop or stacked scan)."""
    model = params["model"]
    if f"layers_{i}" in model:
        return model[f"layers_{i}"]
    if "layers" in model:
        return jax.tree.map(lambda x: x[i], model["layers"])
    raise KeyError(f"no decoder block {i} in the parameters (model/layers_{i} or model/layers)")


def decode_weights(cfg: LlamaConfig, params: Any) -> Weights:
    """The weights of a :class:`~vau_jax.models.llama.LlamaForCausalLM` as
    :func:`decode_step` reads them, in the compute dtype ``cfg.dtype``:

    - ``embed [V, D]`` and ``head [V, D]`` (the same array when embeddings are tied);
    - ``norm [D]``;
    - ``blocks``: per decoder block ``in_norm [D]``, ``qkv [Hq·Dh + 2·Hkv·Dh, D]``,
      ``o [D, Hq·Dh]``, ``post_norm [D]``, ``gate_up [2F, D]``, ``down [D, F]`` and, with the
      config's biases, ``qkv_bias``, ``o_bias``, ``gate_up_bias``, ``down_bias``.

    Traceable; :func:`prepare` is it jitted on its own, so that the copy exists as arrays
    (made inside a decoding loop's jit it would be made again on every call)."""
    p = nn.meta.unbox(params)
    dt = jnp.dtype(cfg.dtype)
    cast = lambda x: jnp.asarray(x).astype(dt)  # noqa: E731
    rows = lambda *kernels: jnp.concatenate([cast(k).T for k in kernels], axis=0)  # noqa: E731
    embed = cast(p["model"]["embed_tokens"]["embedding"])
    blocks = []
    for i in range(cfg.num_hidden_layers):
        blk = _block(p, i)
        attn, mlp = blk["self_attn"], blk["mlp"]
        w = {
            "in_norm": blk["input_layernorm"]["scale"],
            "post_norm": blk["post_attention_layernorm"]["scale"],
            "qkv": rows(*(attn[f"{n}_proj"]["kernel"] for n in "qkv")),
            "o": rows(attn["o_proj"]["kernel"]),
            "gate_up": rows(mlp["gate_proj"]["kernel"], mlp["up_proj"]["kernel"]),
            "down": rows(mlp["down_proj"]["kernel"]),
        }
        if cfg.attention_bias:
            w["qkv_bias"] = jnp.concatenate([cast(attn[f"{n}_proj"]["bias"]) for n in "qkv"])
            w["o_bias"] = cast(attn["o_proj"]["bias"])
        if cfg.mlp_bias:
            w["gate_up_bias"] = jnp.concatenate(
                [cast(mlp["gate_proj"]["bias"]), cast(mlp["up_proj"]["bias"])]
            )
            w["down_bias"] = cast(mlp["down_proj"]["bias"])
        blocks.append(w)
    head = embed if cfg.tie_word_embeddings else rows(p["lm_head"]["kernel"])
    return {"embed": embed, "head": head, "norm": p["model"]["norm"]["scale"], "blocks": blocks}


_prepare = jax.jit(decode_weights, static_argnums=0)


def prepare(cfg: LlamaConfig, params: Any) -> Weights:
    """:func:`decode_weights` as arrays (one compiled call per config and parameter shapes)."""
    return _prepare(cfg, params)


#: Below this width the decoding layout loses: the tiny preset's LLaMA (128 wide, 4 blocks)
#: decodes one row in 0.216 ms per step on its own layout and 0.232 ms on this one (2-core
#: AVX2 EPYC), where its products are too small for the layout to matter and the slicing of
#: the fused outputs costs more than the 3 products per block it saves.
MIN_HIDDEN_SIZE = 512

_MADE: dict[int, tuple[Any, Weights]] = {}


def for_backend(cfg: LlamaConfig, params: Any) -> Weights | None:
    """The decoding layout of ``params`` where it pays: on the CPU backend, for a model at
    least :data:`MIN_HIDDEN_SIZE` wide; ``None`` otherwise (decode on ``params``).

    Made once per parameter tree: the copy is kept while the tree's embedding array lives
    (keyed by that array's identity, dropped when it is freed), so repeated calls with the
    same loaded weights (a chat's turns, one-row generations) reuse it."""
    if jax.default_backend() != "cpu" or cfg.hidden_size < MIN_HIDDEN_SIZE:
        return None
    anchor = nn.meta.unbox(params["model"]["embed_tokens"]["embedding"])
    key = id(anchor)
    hit = _MADE.get(key)
    if hit is not None and hit[0]() is anchor:
        return hit[1]
    weights = prepare(cfg, params)
    try:
        ref = weakref.ref(anchor, lambda _, key=key: _MADE.pop(key, None))
    except TypeError:  # an array type without weak references: made again on each call
        return weights
    _MADE[key] = (ref, weights)
    return weights


def _linear(x: Array, w: Array, bias: Array | None) -> Array:
    """``x [B, in] @ w[out, in].T (+ bias)`` -> ``[B, out]``."""
    y = jnp.einsum("bi,oi->bo", x, w)
    return y if bias is None else y + bias


def decode_step(
    cfg: LlamaConfig, weights: Weights, token_ids: Array, cache: Cache
) -> tuple[Array, Cache]:
    """One cached decoding step on :func:`decode_weights`' copy: ``token_ids [B]`` ->
    next-token logits ``[B, V]`` (float32) and the cache, as
    :func:`vau_jax.models.llama.decode_step` returns them (slot ``cache["index"]`` written
    in every layer, the slot marked valid, ``pos`` and ``index`` advanced by one)."""
    dt = jnp.dtype(cfg.dtype)
    h, hkv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    b = token_ids.shape[0]
    s = cache["mask"].shape[1]
    index = cache["index"]
    x = jnp.take(weights["embed"], token_ids.reshape(-1), axis=0)  # [B, D]
    cos, sin = rope_cos_sin(cfg, cache["pos"][:, None])  # [B, 1, 1, Dh]
    slot_mask = jax.lax.dynamic_update_slice(cache["mask"], jnp.ones((b, 1), bool), (0, index))
    mask = ((jnp.arange(s) <= index)[None, :] & slot_mask)[:, None, None, :]  # [B, 1, 1, S]
    ck, cv = cache["k"], cache["v"]  # [L, B, Hkv, S, Dh]
    act = layers.activation(cfg.hidden_act)
    nq = h * dh
    for i, w in enumerate(weights["blocks"]):
        qkv = _linear(
            layers.rms_norm(x, w["in_norm"], cfg.rms_norm_eps, dt), w["qkv"], w.get("qkv_bias")
        )
        q = qkv[:, :nq].reshape(b, h, 1, dh)
        k = qkv[:, nq : nq + hkv * dh].reshape(b, hkv, 1, dh)
        v = qkv[:, nq + hkv * dh :].reshape(b, hkv, 1, dh)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = (i, 0, 0, index, 0)
        ck = jax.lax.dynamic_update_slice(ck, k[None].astype(ck.dtype), start)
        cv = jax.lax.dynamic_update_slice(cv, v[None].astype(cv.dtype), start)
        att = layers.attention(q, ck[i], cv[i], mask=mask, dtype=dt)  # [B, H, 1, Dh]
        x = x + _linear(att.reshape(b, nq), w["o"], w.get("o_bias"))
        gu = _linear(
            layers.rms_norm(x, w["post_norm"], cfg.rms_norm_eps, dt),
            w["gate_up"],
            w.get("gate_up_bias"),
        )
        f = gu.shape[-1] // 2
        x = x + _linear(act(gu[:, :f]) * gu[:, f:], w["down"], w.get("down_bias"))
    x = layers.rms_norm(x, weights["norm"], cfg.rms_norm_eps, dt)
    logits = jnp.einsum("bd,vd->bv", x, weights["head"]).astype(jnp.float32)
    new_cache = {
        "k": ck,
        "v": cv,
        "mask": slot_mask,
        "pos": cache["pos"] + 1,
        "index": index + 1,
    }
    return logits, new_cache
