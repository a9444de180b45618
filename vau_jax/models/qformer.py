"""BLIP-2 / InstructBLIP Q-Former in Flax Linen: learned queries reading image tokens.

A post-LN BERT encoder whose first ``num_query_tokens`` positions are learned queries. Every
``cross_attention_frequency``-th layer (0, f, 2f, ...) lets the query positions attend to the
image tokens (``encoder_hidden_states``, width ``encoder_hidden_size``). Query and text
positions share self-attention but have separate feed-forward blocks (``*_query`` for the
queries). With ``text_input`` the module also embeds ``input_ids`` (word + position
embeddings, positions counted from 0 within the text) and places them after the queries, as
HF ``InstructBlipQFormerModel`` does; LLaMA-VID's text-conditioned context queries use this.

Parameter tree (names mirror the HF checkpoints; see ``vau_jax.convert.hf_qformer``)::

    query_tokens                                              [1, Nq, D]
    embeddings/word_embeddings/embedding                      [V, D]    (text_input only)
    embeddings/position_embeddings/embedding                  [P, D]    (text_input only)
    layernorm/{scale,bias}                                    [D]
    encoder/layer_{i}/attention/attention/{query,key,value}/kernel   [D, D]
    encoder/layer_{i}/attention/output/dense/kernel           [D, D]
    encoder/layer_{i}/attention/output/LayerNorm/{scale,bias}
    encoder/layer_{i}/crossattention/attention/{key,value}/kernel    [De, D]  (i % f == 0)
    encoder/layer_{i}/{intermediate,intermediate_query}/dense/kernel [D, F]
    encoder/layer_{i}/{output,output_query}/dense/kernel      [F, D]   (text FFN: text_input)

HF keeps ``query_tokens`` beside the Q-Former (``Blip2Model.query_tokens``); here they live in
the module so ``apply`` needs only the image tokens (pass ``query_embeds`` to override them).
Attention-probability dropout is not implemented (hidden dropout is, via ``deterministic``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import layers
from vau_jax.models.layers import constrain, dense, layer_norm, merge_heads, split_heads

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class QFormerConfig:
    """Hyper-parameters of a Q-Former (field names follow HF ``Blip2QFormerConfig``).

    ``text_input``: word/position embeddings and the text-position feed-forward blocks exist
    (HF ``use_qformer_text_input``; always true for InstructBLIP). ``hf_model_type`` names the
    HF checkpoint layout the converter reads and writes (``blip_2_qformer`` keeps the
    embedding LayerNorm at ``layernorm``; ``instructblip_qformer`` at ``embeddings.layernorm``).
    ``dtype``/``param_dtype`` are numpy dtype names (compute / storage); ``remat``
    recomputes each layer in the backward pass.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    cross_attention_frequency: int = 2
    encoder_hidden_size: int = 1408
    num_query_tokens: int = 32
    text_input: bool = True
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    pad_token_id: int = 0
    initializer_range: float = 0.02
    hf_model_type: str = "instructblip_qformer"
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.cross_attention_frequency < 1:
            raise ValueError(
                f"cross_attention_frequency must be >= 1, got {self.cross_attention_frequency}"
            )
        if self.hf_model_type not in ("blip_2_qformer", "instructblip_qformer"):
            raise ValueError(f"unknown hf_model_type {self.hf_model_type!r}")
        if self.hf_model_type == "instructblip_qformer" and not self.text_input:
            raise ValueError("instructblip_qformer always has text input (text_input=True)")


class _Sub(nn.Module):
    """Base for the sub-blocks: carries the config and its dtypes."""

    config: QFormerConfig

    @property
    def dtype(self) -> Any:
        return jnp.dtype(self.config.dtype)

    @property
    def param_dtype(self) -> Any:
        return jnp.dtype(self.config.param_dtype)

    def dense(self, features: int, axes: tuple[str, str], name: str) -> nn.Dense:
        init = nn.initializers.normal(stddev=self.config.initializer_range)
        return dense(
            features,
            axes,
            name=name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=init,
        )

    def norm(self, name: str) -> nn.LayerNorm:
        return layer_norm(
            name=name,
            eps=self.config.layer_norm_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )


class QFormerMultiHeadAttention(_Sub):
    """Self- or cross-attention projections ``query``/``key``/``value`` (HF names), head-major."""

    @nn.compact
    def __call__(self, x: Array, kv: Array, mask: Array | None) -> Array:
        # x [B, N, D]; kv [B, M, D or De]; mask broadcastable to [B, H, N, M] -> [B, N, D]
        cfg = self.config
        h = cfg.num_attention_heads
        q = split_heads(self.dense(cfg.hidden_size, ("embed", "heads"), "query")(x), h)
        k = split_heads(self.dense(cfg.hidden_size, ("embed", "heads"), "key")(kv), h)
        v = split_heads(self.dense(cfg.hidden_size, ("embed", "heads"), "value")(kv), h)
        out = layers.attention(q, k, v, mask=mask, dtype=self.dtype)  # [B, H, N, Dh]
        return merge_heads(out)


class QFormerResidualOutput(_Sub):
    """``LayerNorm(dense(x) + residual)`` (HF ``*SelfOutput`` / ``*Output``)."""

    in_axis: str = "heads"

    @nn.compact
    def __call__(self, x: Array, residual: Array, deterministic: bool) -> Array:
        y = self.dense(self.config.hidden_size, (self.in_axis, "embed"), "dense")(x)
        y = nn.Dropout(self.config.hidden_dropout_prob)(y, deterministic=deterministic)
        return self.norm("LayerNorm")(y + residual)


class QFormerAttention(_Sub):
    """Attention + output block: ``attention`` then ``output`` (HF ``Blip2QFormerAttention``)."""

    @nn.compact
    def __call__(self, x: Array, kv: Array, mask: Array | None, deterministic: bool) -> Array:
        attn = QFormerMultiHeadAttention(self.config, name="attention")(x, kv, mask)
        return QFormerResidualOutput(self.config, name="output")(attn, x, deterministic)


class _Intermediate(_Sub):
    """``dense`` + activation (HF ``Blip2QFormerIntermediate``)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        y = self.dense(cfg.intermediate_size, ("embed", "mlp"), "dense")(x)
        return layers.activation(cfg.hidden_act)(y)


class QFormerLayer(_Sub):
    """One post-LN layer: self-attention over queries+text, cross-attention for the queries."""

    has_cross_attention: bool = False

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None,
        image: Array,
        image_mask: Array | None,
        query_length: int,
        deterministic: bool,
    ) -> Array:
        # x [B, Nq+T, D]; image [B, M, De]
        cfg = self.config
        x = QFormerAttention(cfg, name="attention")(x, x, mask, deterministic)
        queries, text = x[:, :query_length], x[:, query_length:]
        if self.has_cross_attention:
            queries = QFormerAttention(cfg, name="crossattention")(
                queries, image, image_mask, deterministic
            )

        def ffn(h: Array, suffix: str) -> Array:  # [B, n, D] -> [B, n, D]
            inner = _Intermediate(cfg, name=f"intermediate{suffix}")(h)
            return QFormerResidualOutput(cfg, in_axis="mlp", name=f"output{suffix}")(
                inner, h, deterministic
            )

        queries = ffn(queries, "_query")
        if text.shape[1] == 0:
            return queries
        return jnp.concatenate([queries, ffn(text, "")], axis=1)


class QFormerTextEmbeddings(_Sub):
    """``word_embeddings`` + ``position_embeddings`` of the text tokens (no LayerNorm here)."""

    @nn.compact
    def __call__(self, input_ids: Array, position_ids: Array) -> Array:  # [B, T] -> [B, T, D]
        cfg = self.config
        init = nn.initializers.normal(stddev=cfg.initializer_range)
        word = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=layers.partitioned(init, ("vocab", "embed")),
            name="word_embeddings",
        )
        pos = nn.Embed(
            cfg.max_position_embeddings,
            cfg.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=layers.partitioned(init, ("pos", "embed")),
            name="position_embeddings",
        )
        return word(input_ids) + pos(position_ids)


class QFormerEncoder(_Sub):
    """The stack of ``layer_{i}`` (HF ``encoder.layer.{i}``)."""

    @nn.compact
    def __call__(self, x, mask, image, image_mask, query_length, deterministic):
        cfg = self.config
        states = [x]
        # remat: each layer recomputed in the backward pass (query_length, deterministic static)
        cls = nn.remat(QFormerLayer, static_argnums=(5, 6)) if cfg.remat else QFormerLayer
        for i in range(cfg.num_hidden_layers):
            layer = cls(
                cfg, has_cross_attention=i % cfg.cross_attention_frequency == 0, name=f"layer_{i}"
            )
            x = layer(x, mask, image, image_mask, query_length, deterministic)
            x = constrain(x, ("batch", "length", "embed"))
            states.append(x)
        return x, tuple(states)


class QFormer(nn.Module):
    """BLIP-2 / InstructBLIP Q-Former with its learned query tokens.

    ``apply({"params": p}, encoder_hidden_states, input_ids=None, attention_mask=None, ...)``
    returns a dict keyed like HF's ``BaseModelOutputWithPoolingAndCrossAttentions``.
    """

    config: QFormerConfig

    @nn.compact
    def __call__(
        self,
        encoder_hidden_states: Array,
        input_ids: Array | None = None,
        attention_mask: Array | None = None,
        encoder_attention_mask: Array | None = None,
        position_ids: Array | None = None,
        query_embeds: Array | None = None,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """Runs the Q-Former.

        Args:
          encoder_hidden_states: image tokens ``[B, M, De]``.
          input_ids: optional text tokens ``[B, T]`` (needs ``config.text_input``).
          attention_mask: 1 = keep, 0 = padding; either ``[B, T]`` over the text tokens (the
            queries are always attended) or HF-style ``[B, Nq + T]`` over queries and text.
          encoder_attention_mask: optional ``[B, M]`` mask over the image tokens.
          position_ids: optional ``[B, T]`` text positions (default ``0..T-1``).
          query_embeds: optional ``[B, Nq', D]`` replacing the learned ``query_tokens``.
          output_hidden_states: also return ``hidden_states`` (embeddings + every layer).
          deterministic: disables hidden dropout (pass False and a ``dropout`` rng to train).
        Returns:
          ``last_hidden_state`` ``[B, Nq+T, D]``, ``pooler_output`` ``[B, D]`` (first query's
          final state, as HF), and ``hidden_states`` (tuple of ``num_hidden_layers + 1``
          arrays ``[B, Nq+T, D]``) when requested.
        """
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        init = nn.initializers.normal(stddev=cfg.initializer_range)
        query_tokens = self.param(
            "query_tokens",
            layers.partitioned(init, (None, "pos", "embed")),
            (1, cfg.num_query_tokens, cfg.hidden_size),
            jnp.dtype(cfg.param_dtype),
        )
        b = encoder_hidden_states.shape[0]
        if query_embeds is None:
            query_embeds = jnp.broadcast_to(query_tokens, (b, *query_tokens.shape[1:]))
        query_embeds = query_embeds.astype(dtype)  # [B, Nq, D]
        nq = query_embeds.shape[1]

        text_len = 0
        if cfg.text_input and (input_ids is not None or self.is_initializing()):
            if input_ids is None:  # create the embedding params even when init has no text
                input_ids = jnp.zeros((b, 1), jnp.int32)
            text_len = input_ids.shape[1]
            if position_ids is None:
                position_ids = jnp.broadcast_to(jnp.arange(text_len), input_ids.shape)
            text = QFormerTextEmbeddings(cfg, name="embeddings")(input_ids, position_ids)
            x = jnp.concatenate([query_embeds, text.astype(dtype)], axis=1)
        elif input_ids is not None:
            raise ValueError(
                "input_ids given but this Q-Former has no text input (text_input=False)"
            )
        else:
            x = query_embeds
        x = layer_norm(
            name="layernorm",
            eps=cfg.layer_norm_eps,
            dtype=dtype,
            param_dtype=jnp.dtype(cfg.param_dtype),
        )(x)
        x = nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        x = constrain(x, ("batch", "length", "embed"))  # [B, Nq+T, D]

        mask = _self_attention_mask(attention_mask, b, nq, text_len)
        image_mask = None
        if encoder_attention_mask is not None:
            image_mask = encoder_attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, M]
        image = encoder_hidden_states.astype(dtype)
        x, states = QFormerEncoder(cfg, name="encoder")(
            x, mask, image, image_mask, nq, deterministic
        )
        out: dict[str, Any] = {"last_hidden_state": x, "pooler_output": x[:, 0]}
        if output_hidden_states:
            out["hidden_states"] = states
        return out


def _self_attention_mask(attention_mask: Array | None, b: int, nq: int, t: int) -> Array | None:
    """Key mask ``[B, 1, 1, Nq+T]`` from a ``[B, T]`` or ``[B, Nq+T]`` keep-mask (None: all)."""
    if attention_mask is None:
        return None
    m = attention_mask.astype(bool)
    if m.shape[-1] == t:
        m = jnp.concatenate([jnp.ones((b, nq), bool), m], axis=1)
    elif m.shape[-1] != nq + t:
        raise ValueError(
            f"attention_mask has length {m.shape[-1]}; expected {t} (text) or {nq + t} (queries+text)"
        )
    return m[:, None, None, :]


@dataclasses.dataclass(frozen=True)
class VideoQFormerConfig:
    """Video-LLaMA's video Q-Former: learned frame-position embeddings (``max_frames`` rows,
    the width of the per-frame tokens) added to each frame's tokens, then a Q-Former over
    the concatenated frames (``qformer``: 2 layers, cross-attention in every layer, no text)."""

    qformer: QFormerConfig
    max_frames: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.qformer, dict):  # from a converted checkpoint's JSON
            object.__setattr__(self, "qformer", QFormerConfig(**self.qformer))


class VideoQFormer(nn.Module):
    """Per-frame tokens ``[B, T, M, De]`` -> Q-Former outputs over the ``T * M`` tokens
    (Video-LLaMA's ``encode_videoQformer_visual`` after the image Q-Former): frame ``t``'s
    tokens get ``frame_position_embedding[t]``. Parameters: ``frame_position_embedding``
    ``[max_frames, De]`` (Video-LLaMA's ``video_frame_position_embedding``) and ``qformer``."""

    config: VideoQFormerConfig

    @nn.compact
    def __call__(self, frame_tokens: Array, **kwargs: Any) -> dict[str, Any]:
        cfg = self.config
        b, t, m, de = frame_tokens.shape
        if t > cfg.max_frames:
            raise ValueError(f"{t} frames > max_frames={cfg.max_frames}")
        pos = self.param(
            "frame_position_embedding",
            layers.partitioned(nn.initializers.normal(0.02), ("pos", "embed")),
            (cfg.max_frames, de),
            jnp.dtype(cfg.qformer.param_dtype),
        )
        x = frame_tokens + pos[None, :t, None, :].astype(frame_tokens.dtype)  # [B, T, M, De]
        return QFormer(cfg.qformer, name="qformer")(x.reshape(b, t * m, de), **kwargs)


# ------------------------------------------------------------------------------ registry

PRESETS: dict[str, QFormerConfig] = {
    # BLIP-2 / InstructBLIP Q-Former on EVA-ViT-g/14 features (BERT-base init, 32 queries).
    "blip2-qformer": QFormerConfig(),
    # LLaMA-VID's context Q-Former (llamavid_arch.py init_bert: InstructBLIP's, BERT vocabulary
    # + [DEC] = 30,523, cross-attention every 2nd layer, reading 1408-wide EVA-ViT-g tokens).
    "llama-vid-qformer": QFormerConfig(vocab_size=30523),
    # Video-LLaMA's video Q-Former (video_llama.py init_video_Qformer: BERT-base width, 2
    # layers, cross-attention in every layer over the image Q-Former's 768-wide queries, 32
    # video queries, no text embeddings / text FFN); its frame positions: VideoQFormer.
    "video-llama-qformer": QFormerConfig(
        num_hidden_layers=2,
        cross_attention_frequency=1,
        encoder_hidden_size=768,
        text_input=False,
        hf_model_type="blip_2_qformer",
    ),
    "tiny-qformer": QFormerConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        encoder_hidden_size=64,
        num_query_tokens=8,
        vocab_size=128,
        max_position_embeddings=64,
    ),
}


def module_from_config(cfg: QFormerConfig | VideoQFormerConfig) -> nn.Module:
    """The Flax module of a Q-Former (or video Q-Former) config."""
    if isinstance(cfg, VideoQFormerConfig):
        return VideoQFormer(config=cfg)
    return QFormer(config=cfg)


def dummy_inputs(cfg: QFormerConfig | VideoQFormerConfig) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Tiny ``(args, kwargs)`` for ``init``/``eval_shape``: 4 image tokens (+ 4 text tokens);
    a video Q-Former gets 2 frames of 2 tokens ``[1, 2, 2, De]``."""
    if isinstance(cfg, VideoQFormerConfig):
        de = cfg.qformer.encoder_hidden_size
        return (jnp.zeros((1, 2, 2, de), jnp.float32),), {}
    image = jnp.zeros((1, 4, cfg.encoder_hidden_size), jnp.float32)  # [B, M, De]
    kwargs: dict[str, Any] = {}
    if cfg.text_input:
        kwargs["input_ids"] = jnp.zeros((1, 4), jnp.int32)  # [B, T]
    return (image,), kwargs
