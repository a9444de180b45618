"""CLIP text transformer and the full CLIP model (vision + text + projections).

:class:`CLIPTextTransformer` mirrors HF ``CLIPTextModel`` (``...WithProjection`` with
``with_projection``): token + absolute position embeddings, causal self-attention with an
optional padding mask, ``final_layer_norm`` and the pooled output taken at the end-of-text
token. :class:`CLIPModel` mirrors HF ``CLIPModel``; its encoder layers are the CLIP layers of
:mod:`vau_jax.models.vit`.

Pooling rule (HF): when ``eos_token_id == 2`` (legacy configs) the pooled position is the
argmax of the token ids; otherwise it is the first position holding ``eos_token_id``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import layers, vit

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """Hyper-parameters of the CLIP text tower (HF ``CLIPTextConfig`` field names)."""

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    with_projection: bool = False
    projection_dim: int = 512
    dtype: str = "float32"

    def layer_config(self) -> vit.ViTConfig:
        """The CLIP encoder-layer config shared with the vision tower."""
        return vit.ViTConfig(
            variant="clip",
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps,
            dtype=self.dtype,
        )


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    """HF ``CLIPConfig``: a text and a vision tower, a shared projection width, a logit scale."""

    text_config: CLIPTextConfig = CLIPTextConfig()
    vision_config: vit.ViTConfig = vit.ViTConfig(variant="clip", patch_size=32)
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592

    def __post_init__(self) -> None:
        # Sub-configs given as plain dicts (e.g. read back from JSON) become dataclasses.
        if isinstance(self.text_config, dict):
            object.__setattr__(self, "text_config", CLIPTextConfig(**self.text_config))
        if isinstance(self.vision_config, dict):
            object.__setattr__(self, "vision_config", vit.ViTConfig(**self.vision_config))


def eos_positions(input_ids: Array, eos_token_id: int) -> Array:
    """``[B, L] -> [B]`` position of the pooled token, by HF's rule (see module docstring)."""
    if eos_token_id == 2:
        return jnp.argmax(input_ids.astype(jnp.int32), axis=-1)
    return jnp.argmax((input_ids == eos_token_id).astype(jnp.int32), axis=-1)


class CLIPTextTransformer(nn.Module):
    """CLIP text encoder; returns ``last_hidden_state``, ``pooler_output`` [, ``text_embeds``]."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(
        self,
        input_ids: Array,  # [B, L] int
        attention_mask: Array | None = None,  # [B, L], 1 = token, 0 = padding
        position_ids: Array | None = None,  # [B, L] or [1, L]
        *,
        output_hidden_states: bool = False,
    ) -> dict[str, Any]:
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        b, n = input_ids.shape
        if n > cfg.max_position_embeddings:
            raise ValueError(
                f"sequence length {n} exceeds max_position_embeddings {cfg.max_position_embeddings}"
            )
        emb = _Embeddings(cfg, name="embeddings")
        x = emb(input_ids, position_ids)  # [B, L, D]
        causal = jnp.tril(jnp.ones((n, n), bool))[None, None]  # [1, 1, L, L]
        mask = causal
        if attention_mask is not None:
            mask = causal & (attention_mask.astype(bool)[:, None, None, :])  # [B, 1, L, L]
        x, hidden = _TextEncoder(cfg, name="encoder")(x, mask)
        x = layers.layer_norm(name="final_layer_norm", eps=cfg.layer_norm_eps, dtype=dt)(x)
        pooled = x[jnp.arange(b), eos_positions(input_ids, cfg.eos_token_id)]  # [B, D]
        out: dict[str, Any] = {"last_hidden_state": x, "pooler_output": pooled}
        if cfg.with_projection:
            out["text_embeds"] = layers.dense(
                cfg.projection_dim,
                ("embed", None),
                name="text_projection",
                use_bias=False,
                dtype=dt,
            )(pooled)
        if output_hidden_states:
            out["hidden_states"] = hidden
        return out


class _Embeddings(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, input_ids: Array, position_ids: Array | None) -> Array:  # -> [B, L, D]
        cfg = self.config
        tok = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            embedding_init=layers.partitioned(nn.initializers.normal(0.02), ("vocab", "embed")),
            name="token_embedding",
        )
        pos_table = self.param(
            "position_embedding",
            layers.partitioned(nn.initializers.normal(0.02), ("pos", "embed")),
            (cfg.max_position_embeddings, cfg.hidden_size),
        )
        if position_ids is None:
            position_ids = jnp.arange(input_ids.shape[1])[None]
        x = tok(input_ids) + jnp.take(pos_table, position_ids, axis=0)
        return layers.constrain(x.astype(jnp.dtype(cfg.dtype)), ("batch", "length", "embed"))


class _TextEncoder(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array) -> tuple[Array, tuple[Array, ...]]:
        lcfg = self.config.layer_config()
        hidden = [x]
        for i in range(lcfg.num_hidden_layers):
            x = vit.EncoderLayer(lcfg, name=f"layers_{i}")(x, mask)
            hidden.append(x)
        return x, tuple(hidden)


def _normalize(x: Array) -> Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))


class CLIPModel(nn.Module):
    """HF ``CLIPModel``: ``text_embeds``, ``image_embeds`` (unit norm), ``logits_per_image``
    ``[Bi, Bt]``, ``logits_per_text`` ``[Bt, Bi]``, ``logit_scale`` (the raw parameter, as in
    the checkpoint; logits use its exp), ``text_model_output`` and ``vision_model_output``.

    As in HF 5.x, the towers' outputs carry the *projected* (not normalised) features as
    ``pooler_output`` (what :meth:`get_text_features`/:meth:`get_image_features` return).
    """

    config: CLIPConfig

    def setup(self) -> None:
        cfg = self.config
        self.text_model = CLIPTextTransformer(
            dataclasses.replace(cfg.text_config, with_projection=False)
        )
        self.vision_model = vit.VisionTransformer(
            dataclasses.replace(cfg.vision_config, with_projection=False)
        )
        self.visual_projection = layers.dense(
            cfg.projection_dim,
            ("embed", None),
            name=None,
            use_bias=False,
            dtype=jnp.dtype(cfg.vision_config.dtype),
        )
        self.text_projection = layers.dense(
            cfg.projection_dim,
            ("embed", None),
            name=None,
            use_bias=False,
            dtype=jnp.dtype(cfg.text_config.dtype),
        )
        self.logit_scale = self.param(
            "logit_scale",
            layers.partitioned(nn.initializers.constant(cfg.logit_scale_init_value), ()),
            (),
        )

    def get_text_features(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        *,
        output_hidden_states: bool = False,
    ) -> dict[str, Any]:
        """Text tower outputs with ``pooler_output`` replaced by the projected features ``[B, P]``."""
        out = dict(
            self.text_model(
                input_ids, attention_mask, position_ids, output_hidden_states=output_hidden_states
            )
        )
        out["pooler_output"] = self.text_projection(out["pooler_output"])
        return out

    def get_image_features(
        self,
        pixel_values: Array,
        *,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
    ) -> dict[str, Any]:
        """Vision tower outputs with ``pooler_output`` replaced by the projected features ``[B, P]``."""
        out = dict(
            self.vision_model(
                pixel_values,
                output_hidden_states=output_hidden_states,
                interpolate_pos_encoding=interpolate_pos_encoding,
            )
        )
        out["pooler_output"] = self.visual_projection(out["pooler_output"])
        return out

    def __call__(
        self,
        input_ids: Array,  # [Bt, L]
        pixel_values: Array,  # [Bi, H, W, C]
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        *,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool = False,
    ) -> dict[str, Any]:
        vision = self.get_image_features(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=output_hidden_states,
        )
        text = self.get_text_features(
            input_ids, attention_mask, position_ids, output_hidden_states=output_hidden_states
        )
        image_embeds = _normalize(vision["pooler_output"].astype(jnp.float32))  # [Bi, P]
        text_embeds = _normalize(text["pooler_output"].astype(jnp.float32))  # [Bt, P]
        logits_per_text = jnp.matmul(
            text_embeds, image_embeds.T, precision=jax.lax.Precision.HIGHEST
        ) * jnp.exp(self.logit_scale)  # [Bt, Bi]
        return {
            "logits_per_image": logits_per_text.T,
            "logits_per_text": logits_per_text,
            "text_embeds": text_embeds,
            "image_embeds": image_embeds,
            "logit_scale": self.logit_scale,
            "text_model_output": text,
            "vision_model_output": vision,
        }


# ----------------------------------------------------------------------------------------------
# Registry


def module_from_config(cfg: CLIPTextConfig | CLIPConfig) -> nn.Module:
    """The Linen module of a text-tower or full CLIP config."""
    if isinstance(cfg, CLIPConfig):
        return CLIPModel(cfg)
    return CLIPTextTransformer(cfg)


def dummy_inputs(cfg: CLIPTextConfig | CLIPConfig) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for ``init``/``eval_shape``: small zero inputs (no parameters)."""
    text = cfg.text_config if isinstance(cfg, CLIPConfig) else cfg
    ids = jnp.zeros((1, text.max_position_embeddings), jnp.int32)
    if isinstance(cfg, CLIPConfig):
        (pixels,), _ = vit.dummy_inputs(cfg.vision_config)
        return (ids, pixels), {}
    return (ids,), {}


def _text_cfg(width: int, heads: int, proj: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=12,
        num_attention_heads=heads,
        projection_dim=proj,
    )


_TINY_TEXT = CLIPTextConfig(
    vocab_size=1000,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=32,
    pad_token_id=1,
    bos_token_id=998,
    eos_token_id=999,
    projection_dim=32,
)

PRESETS: dict[str, Any] = {
    "clip-text-b": _text_cfg(512, 8, 512),
    "clip-text-l": _text_cfg(768, 12, 768),
    "clip-b/16": CLIPConfig(
        text_config=_text_cfg(512, 8, 512),
        vision_config=vit.PRESETS["clip-vit-b/16"],
        projection_dim=512,
    ),
    "clip-l/14": CLIPConfig(
        text_config=_text_cfg(768, 12, 768),
        vision_config=vit.PRESETS["clip-vit-l/14"],
        projection_dim=768,
    ),
    "clip-l/14-336": CLIPConfig(
        text_config=_text_cfg(768, 12, 768),
        vision_config=vit.PRESETS["clip-vit-l/14-336"],
        projection_dim=768,
    ),
    # OpenCLIP ViT-H/14 (laion2B): a 24-layer, 1024-wide text tower, 1024-d joint space
    "clip-h/14": CLIPConfig(
        text_config=dataclasses.replace(
            _text_cfg(1024, 16, 1024), num_hidden_layers=24, hidden_act="gelu"
        ),
        vision_config=vit.PRESETS["clip-vit-h/14"],
        projection_dim=1024,
    ),
    "tiny-clip-text": _TINY_TEXT,
    "tiny-clip": CLIPConfig(
        text_config=_TINY_TEXT, vision_config=vit.PRESETS["tiny-clip-vit"], projection_dim=32
    ),
}
