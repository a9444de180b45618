"""LLaMA-family causal LM (LLaMA-2, Vicuna, SmolLM2...) in Flax Linen, with a functional KV cache.

Parameter names mirror HF ``LlamaForCausalLM``::

    model/embed_tokens/embedding                       [V, D]
    model/layers_{i}/self_attn/{q,k,v,o}_proj/kernel   [D, H*Dh] ... (loop layout)
    model/layers/self_attn/q_proj/kernel               [L, D, H*Dh]  (scan layout, stacked)
    model/layers_{i}/mlp/{gate,up,down}_proj/kernel
    model/layers_{i}/{input,post_attention}_layernorm/scale
    model/norm/scale
    lm_head/kernel                                     [D, V] (absent when embeddings are tied)

RoPE follows HF's ``rotate_half`` convention (first half / second half of each head), which is
what HF checkpoints expect; GGUF files are converted to it by ``vau_jax.convert.gguf_llama``.

KV cache (static length ``S``, a plain pytree carried explicitly)::

    cache = init_cache(cfg, batch, S)
    logits, cache = prefill(model, params, cache, input_ids=ids, attention_mask=mask)
    logits, cache = decode_step(model, params, next_ids, cache)       # logits [B, V]

Rows share the slot counter ``index`` but keep their own position counter ``pos`` and a
validity mask over slots, so left- or right-padded batches decode correctly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.models import layers
from vau_jax.models.layers import RMSNorm, constrain, dense, merge_heads, split_heads

Array = jax.Array
Cache = dict[str, Array]

REMAT_POLICIES = {
    "full": None,  # recompute everything
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a LLaMA-style decoder (field names follow HF ``LlamaConfig``).

    ``rope_type`` is ``"default"`` or ``"llama3"`` (then the ``rope_*`` scaling fields apply).
    ``dtype``/``param_dtype`` are numpy dtype names (compute / storage). ``remat_policy`` is
    ``"none"`` or one of ``REMAT_POLICIES``. ``attention_block``: query block of causal
    self-attention over a prompt (``layers.causal_attention``); not a checkpoint field.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position_embeddings: int = 8192
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    scan_layers: bool = False
    remat_policy: str = "none"
    attention_block: int = 128

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.rope_type not in ("default", "llama3"):
            raise ValueError(f"unsupported rope_type {self.rope_type!r} (default, llama3)")
        if self.remat_policy != "none" and self.remat_policy not in REMAT_POLICIES:
            raise ValueError(
                f"unknown remat_policy {self.remat_policy!r}; known: none, {sorted(REMAT_POLICIES)}"
            )


# ----------------------------------------------------------------------------------- RoPE


def rope_inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """Inverse frequencies ``[Dh/2]`` (float32), with HF's ``llama3`` scaling when configured."""
    dh = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, dh, 2, dtype=np.int64).astype(np.float32) / dh))
    if cfg.rope_type == "llama3":
        old = cfg.rope_original_max_position_embeddings
        low_wavelen = old / cfg.rope_low_freq_factor
        high_wavelen = old / cfg.rope_high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / cfg.rope_factor, inv)
        smooth = (old / wavelen - cfg.rope_low_freq_factor) / (
            cfg.rope_high_freq_factor - cfg.rope_low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def rope_cos_sin(cfg: LlamaConfig, positions: Array) -> tuple[Array, Array]:
    """``positions [B, N]`` -> ``cos, sin [B, 1, N, Dh]`` (float32, halves duplicated as HF)."""
    freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(
        rope_inv_freq(cfg)
    )  # [B, N, Dh/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)  # [B, N, Dh]
    return jnp.cos(emb)[:, None], jnp.sin(emb)[:, None]


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """HF ``rotate_half`` RoPE on head-major ``x [B, H, N, Dh]``."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * cos + rotated * sin).astype(x.dtype)


# --------------------------------------------------------------------------------- blocks


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with RoPE, optionally reading/writing one layer's cache.

    ``kv`` is one layer's ``(k, v)`` cache ``[B, Hkv, S, Dh]``, or, with ``layer`` set, the
    whole stacked cache ``[L, B, Hkv, S, Dh]`` of which row ``layer`` is this block's: the
    new keys/values are then written into the stacked buffer in place (no per-layer slice
    and restack of the cache on every decoding step).
    """

    config: LlamaConfig
    layer: int | None = None

    @nn.compact
    def __call__(
        self,
        x: Array,  # [B, N, D]
        cos: Array,  # [B, 1, N, Dh]
        sin: Array,
        mask: Array,  # [B, 1, N, K] bool
        kv: tuple[Array, Array] | None,  # ([B, Hkv, S, Dh], [B, Hkv, S, Dh]) or None
        index: Array | None,  # scalar int32 slot where x's first token is written
    ) -> tuple[Array, tuple[Array, Array] | None]:
        cfg = self.config
        dt, pdt = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        h, hkv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim

        def proj(feat: int, axes: tuple[str, str], name: str) -> nn.Dense:
            return dense(
                feat, axes, name=name, use_bias=cfg.attention_bias, dtype=dt, param_dtype=pdt
            )

        q = split_heads(proj(h * dh, ("embed", "heads"), "q_proj")(x), h)  # [B, H, N, Dh]
        k = split_heads(proj(hkv * dh, ("embed", "heads"), "k_proj")(x), hkv)  # [B, Hkv, N, Dh]
        v = split_heads(proj(hkv * dh, ("embed", "heads"), "v_proj")(x), hkv)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_kv = None
        n = x.shape[1]
        # ``mask [B, 1, N, K]``: K = N attends the new tokens only (no cache, or a fresh
        # cache's prefill: then the cache is only written); K = S attends every cache slot.
        # (S = N is both: N tokens fill all S slots only from slot 0.)
        local = kv is None or mask.shape[-1] == n
        if kv is not None:
            ck, cv = kv
            if self.layer is None:
                start = (0, 0, index, 0)
                ck = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), start)
                cv = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), start)
                new_kv = (ck, cv)
            else:
                start = (self.layer, 0, 0, index, 0)
                ck = jax.lax.dynamic_update_slice(ck, k[None].astype(ck.dtype), start)
                cv = jax.lax.dynamic_update_slice(cv, v[None].astype(cv.dtype), start)
                new_kv = (ck, cv)
                ck, cv = ck[self.layer], cv[self.layer]
            if not local:
                k, v = ck, cv
        if local:
            out = layers.causal_attention(q, k, v, mask=mask, block=cfg.attention_block, dtype=dt)
        else:
            out = layers.attention(q, k, v, mask=mask, dtype=dt)  # [B, H, N, Dh]
        out = proj(cfg.hidden_size, ("heads", "embed"), "o_proj")(merge_heads(out))
        return out, new_kv


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: ``down(act(gate(x)) * up(x))``."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:  # [B, N, D] -> [B, N, D]
        cfg = self.config
        kw = dict(
            use_bias=cfg.mlp_bias,
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=jnp.dtype(cfg.param_dtype),
        )
        gate = dense(cfg.intermediate_size, ("embed", "mlp"), name="gate_proj", **kw)(x)
        up = dense(cfg.intermediate_size, ("embed", "mlp"), name="up_proj", **kw)(x)
        hid = constrain(layers.activation(cfg.hidden_act)(gate) * up, ("batch", "length", "mlp"))
        return dense(cfg.hidden_size, ("mlp", "embed"), name="down_proj", **kw)(hid)


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    Returns ``(x, new_kv)``; as the body of ``nn.scan`` (``scanned=True``) it returns
    ``(x, (new_kv, x or None))`` so the per-layer hidden states are stacked when
    ``keep_hidden`` (a static Python bool) asks for them.
    """

    config: LlamaConfig
    scanned: bool = False
    layer: int | None = None  # set: ``kv`` is the stacked cache (see LlamaAttention)

    @nn.compact
    def __call__(self, x, cos, sin, mask, kv, index, keep_hidden=False):  # noqa: ANN001
        cfg = self.config
        dt, pdt = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        norm = lambda name: RMSNorm(eps=cfg.rms_norm_eps, dtype=dt, param_dtype=pdt, name=name)
        attn_out, new_kv = LlamaAttention(cfg, layer=self.layer, name="self_attn")(
            norm("input_layernorm")(x), cos, sin, mask, kv, index
        )
        x = x + attn_out
        x = x + LlamaMLP(cfg, name="mlp")(norm("post_attention_layernorm")(x))
        x = constrain(x, ("batch", "length", "embed"))
        return (x, (new_kv, x if keep_hidden else None)) if self.scanned else (x, new_kv)


def _layer_cls(cfg: LlamaConfig) -> type[nn.Module]:
    if cfg.remat_policy == "none":
        return LlamaDecoderLayer
    return nn.remat(
        LlamaDecoderLayer,
        policy=REMAT_POLICIES[cfg.remat_policy],
        prevent_cse=not cfg.scan_layers,
        static_argnums=(7,),  # keep_hidden (argnums count self as 0)
    )


class LlamaModel(nn.Module):
    """Embeddings + decoder stack + final norm (HF ``LlamaModel``)."""

    config: LlamaConfig

    def setup(self) -> None:
        cfg = self.config
        self.embed_tokens = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=jnp.dtype(cfg.dtype),
            param_dtype=jnp.dtype(cfg.param_dtype),
            embedding_init=layers.partitioned(layers.default_kernel_init, ("vocab", "embed")),
        )
        if cfg.scan_layers:
            body = nn.scan(
                _layer_cls(cfg),
                variable_axes={"params": 0},
                split_rngs={"params": True},
                # carry x; broadcast cos, sin, mask; scan the cache over layers; broadcast index
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast, nn.broadcast),
                length=cfg.num_hidden_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            self.scanned = body(cfg, scanned=True, name="layers")
        else:
            cls = _layer_cls(cfg)
            self.layers = [
                cls(cfg, layer=i, name=f"layers_{i}") for i in range(cfg.num_hidden_layers)
            ]
        self.norm = RMSNorm(
            eps=cfg.rms_norm_eps, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype)
        )

    def embed(self, input_ids: Array) -> Array:  # [B, N] -> [B, N, D]
        return self.embed_tokens(input_ids)

    def attend(self, x: Array) -> Array:  # [B, N, D] -> [B, N, V] (tied head)
        return self.embed_tokens.attend(x)

    def __call__(
        self,
        x: Array,  # [B, N, D] input embeddings
        positions: Array,  # [B, N] int
        mask: Array,  # [B, 1, N, K] bool
        cache_kv: tuple[Array, Array] | None = None,  # ([L, B, Hkv, S, Dh], same)
        index: Array | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[Array, tuple[Array, ...] | None, tuple[Array, Array] | None]:
        """Returns ``(last_hidden [B, N, D] after the final norm, hidden_states, new_cache_kv)``."""
        cfg = self.config
        x = constrain(x.astype(jnp.dtype(cfg.dtype)), ("batch", "length", "embed"))
        cos, sin = rope_cos_sin(cfg, positions)
        hidden: list[Array] = [x]
        if cfg.scan_layers:
            x, (new_kv, stacked) = self.scanned(
                x, cos, sin, mask, cache_kv, index, output_hidden_states
            )
            if output_hidden_states:
                hidden.extend(stacked[i] for i in range(cfg.num_hidden_layers))
            else:
                hidden.append(x)
        else:
            new_kv = cache_kv  # the stacked cache, threaded through the blocks
            for layer in self.layers:
                x, new_kv = layer(x, cos, sin, mask, new_kv, index, False)
                hidden.append(x)
        x = self.norm(x)
        hidden_states = None
        if output_hidden_states:
            hidden_states = tuple(hidden[:-1]) + (x,)  # as HF: the last entry is normed
        return x, hidden_states, new_kv


class LlamaForCausalLM(nn.Module):
    """HF ``LlamaForCausalLM``: ``apply(vars, input_ids)`` -> ``{"logits", "hidden_states"?}``.

    ``attention_mask [B, N]`` (1 = token, 0 = padding) may pad on either side; when
    ``position_ids`` is omitted they are ``cumsum(mask) - 1`` (``arange`` without a mask), so
    left-padded rows see the same positions as unpadded ones. Pass ``inputs_embeds [B, N, D]``
    instead of ``input_ids`` for multimodal prefixes. ``segment_ids [B, N]`` (instead of
    ``attention_mask``) marks packed rows: attention stays inside each segment and positions
    restart at each segment's first token (:func:`vau_jax.models.layers.segment_mask`).
    """

    config: LlamaConfig

    def setup(self) -> None:
        cfg = self.config
        self.model = LlamaModel(cfg)
        if not cfg.tie_word_embeddings:
            self.lm_head = dense(
                cfg.vocab_size,
                ("embed", "vocab"),
                name="lm_head",
                use_bias=False,
                dtype=jnp.dtype(cfg.dtype),
                param_dtype=jnp.dtype(cfg.param_dtype),
            )

    def embed(self, input_ids: Array) -> Array:
        """Token embeddings ``[B, N] -> [B, N, D]`` (to build multimodal ``inputs_embeds``)."""
        return self.model.embed(input_ids)

    def _logits(self, x: Array, at: Array | None = None) -> Array:
        """``x [B, N, D]`` -> ``[B, N, V]`` float32, or ``[B, K, V]`` at positions ``at``."""
        if at is not None:
            x = jnp.take_along_axis(x, at[..., None].astype(jnp.int32), axis=1)
        out = self.model.attend(x) if self.config.tie_word_embeddings else self.lm_head(x)
        return constrain(out.astype(jnp.float32), ("batch", "length", "vocab"))

    def _inputs(self, input_ids: Array | None, inputs_embeds: Array | None) -> Array:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids [B, N] or inputs_embeds [B, N, D]")
        return self.model.embed(input_ids) if inputs_embeds is None else inputs_embeds

    def __call__(
        self,
        input_ids: Array | None = None,  # [B, N] int
        attention_mask: Array | None = None,  # [B, N] {0, 1}
        position_ids: Array | None = None,  # [B, N] int
        inputs_embeds: Array | None = None,  # [B, N, D]
        output_hidden_states: bool = False,
        segment_ids: Array | None = None,  # [B, N] int, 0 = padding (packed rows)
        logits_at: Array | None = None,  # [B, K] int positions: logits there only
    ) -> dict[str, Any]:
        """``{"logits": [B, N, V] float32, "hidden_states"?}``; with ``logits_at [B, K]`` the
        logits are those of the given positions only, ``[B, K, V]`` (a loss on a few target
        tokens then skips the vocabulary projection and its gradient everywhere else)."""
        x = self._inputs(input_ids, inputs_embeds)
        b, n = x.shape[:2]
        causal = jnp.tril(jnp.ones((n, n), bool))
        if segment_ids is not None:
            if attention_mask is not None:
                raise ValueError("pass attention_mask or segment_ids, not both")
            same, packed_positions = layers.segment_mask(segment_ids)
            mask = causal[None, None] & same
            position_ids = packed_positions if position_ids is None else position_ids
        else:
            valid = (
                jnp.ones((b, n), bool) if attention_mask is None else attention_mask.astype(bool)
            )
            if position_ids is None:
                position_ids = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
            mask = causal[None, None] & valid[:, None, None, :]  # [B, 1, N, N]
        x, hidden_states, _ = self.model(x, position_ids, mask, None, None, output_hidden_states)
        out: dict[str, Any] = {"logits": self._logits(x, logits_at)}
        if output_hidden_states:
            out["hidden_states"] = hidden_states
        return out

    def cached_step(
        self,
        x: Array,  # [B, N, D] embeddings of the new tokens
        valid: Array,  # [B, N] bool, False for padding
        cache: Cache,
        all_logits: bool = False,
        fresh: bool = False,
        logits_at: Array | None = None,
    ) -> tuple[Array, Cache]:
        """Appends ``N`` tokens at slot ``cache["index"]``; returns next-token logits ``[B, V]``.

        ``fresh`` (static) promises an empty cache (``index == 0``): the tokens then attend
        one another only, in causal query blocks, instead of every one of the ``S`` slots.

        The logits are those of each row's last valid new token (rows whose new tokens are all
        padding get the logits of their last position anyway; they are meaningless). With
        ``all_logits`` they are every new position's, ``[B, N, V]`` (scoring continuations);
        with ``logits_at [B, K]`` (positions among the new tokens) those positions', ``[B, K,
        V]`` (a loss on a few target tokens after a cached prefix).
        """
        b, n = x.shape[:2]
        s = cache["mask"].shape[1]
        index = cache["index"]
        positions = cache["pos"][:, None] + jnp.cumsum(valid, axis=1) - 1  # [B, N]
        positions = jnp.maximum(positions, 0)
        slot_mask = jax.lax.dynamic_update_slice(cache["mask"], valid, (0, index))  # [B, S]
        if fresh:
            causal = jnp.tril(jnp.ones((n, n), bool))
            mask = causal[None, None] & valid[:, None, None, :]  # [B, 1, N, N]
        else:
            q_slot = index + jnp.arange(n)  # [N]
            causal = jnp.arange(s)[None, :] <= q_slot[:, None]  # [N, S]
            mask = causal[None, None] & slot_mask[:, None, None, :]  # [B, 1, N, S]
        h, _, (k, v) = self.model(x, positions, mask, (cache["k"], cache["v"]), index, False)
        if logits_at is not None or all_logits:
            logits = self._logits(h, logits_at)
        else:
            last = jnp.max(jnp.where(valid, jnp.arange(n)[None], 0), axis=1)  # [B]
            h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)  # [B, 1, D]
            logits = self._logits(h_last)[:, 0]
        new_cache = {
            "k": k,
            "v": v,
            "mask": slot_mask,
            "pos": cache["pos"] + jnp.sum(valid, axis=1).astype(jnp.int32),
            "index": index + n,
        }
        return logits, new_cache


# ------------------------------------------------------------------------- KV cache API


def init_cache(cfg: LlamaConfig, batch: int, max_len: int, dtype: Any = None) -> Cache:
    """An empty static-length cache: ``k``/``v`` ``[L, B, Hkv, S, Dh]``, ``mask [B, S]``,
    ``pos [B]`` (next position id per row) and ``index`` (next slot, scalar int32)."""
    dtype = jnp.dtype(cfg.dtype) if dtype is None else dtype
    shape = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
    return {
        "k": jnp.zeros(shape, dtype),
        "v": jnp.zeros(shape, dtype),
        "mask": jnp.zeros((batch, max_len), bool),
        "pos": jnp.zeros((batch,), jnp.int32),
        "index": jnp.zeros((), jnp.int32),
    }


def cache_logical_axes() -> dict[str, tuple[str | None, ...]]:
    """Logical axis names of each :func:`init_cache` entry (for ``vau_jax.sharding``)."""
    kv = ("layers", "batch", "heads", "length", "kv")
    return {"k": kv, "v": kv, "mask": ("batch", "length"), "pos": ("batch",), "index": ()}


def prefill(
    module: LlamaForCausalLM,
    params: Any,
    cache: Cache,
    input_ids: Array | None = None,
    attention_mask: Array | None = None,
    inputs_embeds: Array | None = None,
    fresh: bool = False,
) -> tuple[Array, Cache]:
    """Runs a (padded) prompt ``[B, N]`` (or ``inputs_embeds [B, N, D]``) through the model,
    filling cache slots ``[index, index + N)``; returns next-token logits ``[B, V]`` and the cache.
    ``fresh=True`` (static) promises an empty cache, from :func:`init_cache`: the prompt then
    attends only itself, block-causally (the same result, about half the attention cost of a
    long prompt). Jit it with ``module`` static (e.g. ``jax.jit(prefill, static_argnums=0)``)."""

    def fn(mdl: LlamaForCausalLM) -> tuple[Array, Cache]:
        x = mdl._inputs(input_ids, inputs_embeds)
        b, n = x.shape[:2]
        valid = jnp.ones((b, n), bool) if attention_mask is None else attention_mask.astype(bool)
        return mdl.cached_step(x, valid, cache, fresh=fresh)

    return nn.apply(fn, module)({"params": params})


def decode_step(
    module: LlamaForCausalLM, params: Any, token_ids: Array, cache: Cache
) -> tuple[Array, Cache]:
    """One cached decoding step: ``token_ids [B]`` -> next-token logits ``[B, V]`` and the cache."""

    def fn(mdl: LlamaForCausalLM) -> tuple[Array, Cache]:
        x = mdl.model.embed(token_ids.reshape(-1, 1))
        return mdl.cached_step(x, jnp.ones(x.shape[:2], bool), cache)

    return nn.apply(fn, module)({"params": params})


# -------------------------------------------------------------------------------- registry

_LLAMA2_7B = LlamaConfig(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    head_dim=128,
    rms_norm_eps=1e-5,
    max_position_embeddings=4096,
)

PRESETS: dict[str, LlamaConfig] = {
    "llama-2-7b": _LLAMA2_7B,
    # Vicuna v1.5 is LLaMA-2-7B fine-tuned: same shapes, pad id 0 in its tokenizer config.
    "vicuna-7b": dataclasses.replace(_LLAMA2_7B, pad_token_id=0),
    "smollm2-135m": LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    ),
    "tiny-llama": LlamaConfig(
        vocab_size=1024,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        rms_norm_eps=1e-5,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    ),
}


def module_from_config(cfg: LlamaConfig) -> LlamaForCausalLM:
    """The Flax module for ``cfg`` (no parameters are created)."""
    return LlamaForCausalLM(cfg)


def dummy_inputs(cfg: LlamaConfig) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for ``module.init``: a ``[1, 8]`` batch of token ids."""
    return (jnp.zeros((1, 8), jnp.int32),), {}
