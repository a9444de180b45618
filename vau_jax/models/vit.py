"""Vision transformers: CLIP vision, DINOv2 (with registers, SwiGLU) and EVA-ViT (BLIP-2).

One Linen :class:`VisionTransformer` configured by :class:`ViTConfig`. ``variant`` picks the
architecture family and its HF parameter names; the other fields are the HF config fields:

========  ===========================  ======================================================
variant   HF class                     differences
========  ===========================  ======================================================
clip      ``CLIPVisionModel``          conv patch embedding without bias, ``pre_layrnorm``,
          (``...WithProjection``)      quick_gelu, ``post_layernorm`` on the pooled class token
                                       only; optional ``visual_projection`` (``image_embeds``)
dinov2    ``Dinov2Model``,             conv with bias, ``cls_token``, optional register tokens
          ``Dinov2WithRegistersModel`` and mask token, layerscale, optional SwiGLU FFN, final
                                       ``layernorm`` on the whole sequence; position embeddings
                                       always resampled (bicubic) to the input's patch grid
eva       ``Blip2VisionModel``         fused ``qkv`` without k bias (``q_bias``/``v_bias``),
                                       exact gelu, ``post_layernorm`` on the whole sequence and
                                       once more on the pooled token (as HF)
========  ===========================  ======================================================

Inputs are NHWC float32 pixels already normalised like HF's image processor. Outputs are dicts
keyed by HF output names: ``last_hidden_state`` ``[B, N, D]``, ``pooler_output`` ``[B, D]``,
``hidden_states`` (tuple of ``num_hidden_layers + 1`` arrays ``[B, N, D]``: the encoder input,
then every layer's output) when ``output_hidden_states=True``, and ``image_embeds`` for a CLIP
tower with projection.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.models import layers

Array = jax.Array

VARIANTS = ("clip", "dinov2", "eva")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a vision tower (field names follow the HF configs).

    ``intermediate_size`` is used by ``clip``/``eva``; ``dinov2`` derives its MLP width from
    ``mlp_ratio`` (SwiGLU keeps two thirds of it, rounded up to a multiple of 8, as HF).
    ``dtype`` is the compute dtype name (params are always float32).
    """

    variant: str = "clip"
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    intermediate_size: int = 3072
    mlp_ratio: float = 4.0
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    layerscale_value: float = 1.0
    num_register_tokens: int = 0
    use_mask_token: bool = False
    use_swiglu_ffn: bool = False
    interpolate_antialias: bool = False
    with_projection: bool = False
    projection_dim: int = 512
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"ViTConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )

    @property
    def mlp_width(self) -> int:
        """Inner width of the feed-forward block."""
        if self.variant != "dinov2":
            return self.intermediate_size
        width = int(self.hidden_size * self.mlp_ratio)
        if self.use_swiglu_ffn:
            width = (int(width * 2 / 3) + 7) // 8 * 8
        return width

    @property
    def grid(self) -> int:
        """Patches per side at the configured resolution."""
        return self.image_size // self.patch_size


# ----------------------------------------------------------------------------------------------
# Bicubic resampling of position tables, numerically as torch.nn.functional.interpolate
# (mode="bicubic", align_corners=False), with or without antialias.


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a`` (torch: -0.75 plain, -0.5 antialiased)."""
    a = x.dtype.type(a)
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """``[out_size, in_size]`` float32 weights so that ``W @ x`` resamples axis 0 of ``x``.

    Reproduces torch's CPU kernels: without antialias, taps at ``floor(src) - 1 .. + 2``
    (clamped at the borders) with ``a = -0.75`` and ``src = (i + 0.5) * in/out - 0.5``; with
    antialias, a kernel stretched by ``in/out`` when downsampling, ``a = -0.5``, normalised.
    """
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    if not antialias:
        # float32 throughout, as torch computes source positions and coefficients.
        f32 = np.float32
        scale32 = f32(in_size) / f32(out_size)
        for i in range(out_size):
            src = scale32 * (f32(i) + f32(0.5)) - f32(0.5)
            x0 = math.floor(src)
            t = f32(src - f32(x0))
            taps = np.array([t + f32(1), t, f32(1) - t, f32(2) - t], np.float32)
            for k, c in enumerate(_cubic(taps, -0.75).astype(np.float32)):
                w[i, min(max(x0 - 1 + k, 0), in_size - 1)] += c
        return w.astype(np.float32)
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = _cubic((np.arange(lo, hi) - center + 0.5) * inv, -0.5)
        total = taps.sum()
        w[i, lo:hi] = taps / total if total != 0 else taps
    return w.astype(np.float32)


def resize_pos_grid(table: Array, out_hw: tuple[int, int], antialias: bool) -> Array:
    """Bicubic resize of a square position grid ``[n, n, D] -> [h, w, D]`` (float32)."""
    n_h, n_w = table.shape[0], table.shape[1]
    wh = jnp.asarray(bicubic_matrix(n_h, out_hw[0], antialias))  # [h, n]
    ww = jnp.asarray(bicubic_matrix(n_w, out_hw[1], antialias))  # [w, n]
    return jnp.einsum(
        "hi,ijd,wj->hwd", wh, table.astype(jnp.float32), ww, precision=jax.lax.Precision.HIGHEST
    )


# ----------------------------------------------------------------------------------------------
# Blocks


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with the variant's HF parameter names."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:  # [B, N, D] -> [B, N, D]
        """``mask``: optional boolean ``[B, 1|H, N, N]``, True = attend (CLIP text: causal)."""
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        d, h = cfg.hidden_size, cfg.num_attention_heads
        if cfg.variant == "eva":
            qkv = layers.dense(3 * d, ("embed", "heads"), name="qkv", use_bias=False, dtype=dt)(x)
            if cfg.qkv_bias:
                init = layers.partitioned(nn.initializers.zeros_init(), ("heads",))
                q_bias = self.param("q_bias", init, (d,), jnp.float32)
                v_bias = self.param("v_bias", init, (d,), jnp.float32)
                qkv = qkv + jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).astype(dt)
            q, k, v = jnp.split(qkv, 3, axis=-1)  # 3 x [B, N, D]
            out_name = "projection"
        else:
            bias = cfg.qkv_bias if cfg.variant == "dinov2" else True
            q = layers.dense(d, ("embed", "heads"), name="q_proj", use_bias=bias, dtype=dt)(x)
            k = layers.dense(d, ("embed", "heads"), name="k_proj", use_bias=bias, dtype=dt)(x)
            v = layers.dense(d, ("embed", "heads"), name="v_proj", use_bias=bias, dtype=dt)(x)
            out_name = "o_proj" if cfg.variant == "dinov2" else "out_proj"
        q, k, v = (layers.split_heads(t, h) for t in (q, k, v))  # [B, H, N, Dh]
        y = layers.merge_heads(layers.attention(q, k, v, mask=mask, dtype=dt))  # [B, N, D]
        return layers.dense(d, ("heads", "embed"), name=out_name, dtype=dt)(y)


class MLP(nn.Module):
    """Feed-forward block: ``fc1 -> act -> fc2`` or SwiGLU ``down(silu(gate) * up)``."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:  # [B, N, D] -> [B, N, D]
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        if cfg.use_swiglu_ffn:
            gate = layers.dense(cfg.mlp_width, ("embed", "mlp"), name="gate_proj", dtype=dt)(x)
            up = layers.dense(cfg.mlp_width, ("embed", "mlp"), name="up_proj", dtype=dt)(x)
            y = jax.nn.silu(gate) * up
            return layers.dense(cfg.hidden_size, ("mlp", "embed"), name="down_proj", dtype=dt)(y)
        y = layers.dense(cfg.mlp_width, ("embed", "mlp"), name="fc1", dtype=dt)(x)
        y = layers.activation(cfg.hidden_act)(y)
        return layers.dense(cfg.hidden_size, ("mlp", "embed"), name="fc2", dtype=dt)(y)


class LayerScale(nn.Module):
    """DINOv2's per-channel residual scale ``x * lambda1``."""

    value: float = 1.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = layers.partitioned(nn.initializers.constant(self.value), ("embed",))
        lam = self.param("lambda1", init, (x.shape[-1],), jnp.float32)
        return x * lam.astype(x.dtype)


class EncoderLayer(nn.Module):
    """Pre-LN transformer block (CLIP/EVA names, or DINOv2 names with layerscale)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None) -> Array:  # [B, N, D] -> [B, N, D]
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        dino = cfg.variant == "dinov2"
        ln = functools.partial(layers.layer_norm, eps=cfg.layer_norm_eps, dtype=dt)
        y = ln(name="norm1" if dino else "layer_norm1")(x)
        y = SelfAttention(cfg, name="attention" if dino else "self_attn")(y, mask)
        if dino:
            y = LayerScale(cfg.layerscale_value, name="layer_scale1")(y)
        x = x + y
        y = ln(name="norm2" if dino else "layer_norm2")(x)
        y = MLP(cfg, name="mlp")(y)
        if dino:
            y = LayerScale(cfg.layerscale_value, name="layer_scale2")(y)
        return layers.constrain(x + y, ("batch", "length", "embed"))


class Embeddings(nn.Module):
    """Patch embedding + class (and register) tokens + absolute position embeddings."""

    config: ViTConfig

    @nn.compact
    def __call__(
        self,
        pixel_values: Array,  # [B, H, W, C]
        bool_masked_pos: Array | None = None,  # [B, h*w] (DINOv2 only)
        interpolate_pos_encoding: bool = False,
    ) -> Array:  # [B, 1 + R + h*w, D]
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        d = cfg.hidden_size
        b, height, width, c = pixel_values.shape
        if c != cfg.num_channels:
            raise ValueError(
                f"pixel_values has {c} channels, the config expects {cfg.num_channels}"
            )
        dino = cfg.variant == "dinov2"
        if dino:
            conv = PatchEmbeddings(cfg, name="patch_embeddings")
        else:
            conv = _patch_conv(cfg, "patch_embedding")
        patches = conv(pixel_values.astype(dt))  # [B, h, w, D]
        gh, gw = patches.shape[1], patches.shape[2]
        patches = patches.reshape(b, gh * gw, d)  # [B, h*w, D]

        n_pos = cfg.grid * cfg.grid + 1
        if dino:
            if cfg.use_mask_token:
                mask_token = self.param("mask_token", _param_init((None, "embed")), (1, d))
                if bool_masked_pos is not None:
                    patches = jnp.where(bool_masked_pos[..., None], mask_token.astype(dt), patches)
            elif bool_masked_pos is not None:
                raise ValueError("bool_masked_pos given but the config has no mask token")
            cls = self.param("cls_token", _param_init((None, None, "embed")), (1, 1, d))
            pos = self.param(
                "position_embeddings", _param_init((None, "pos", "embed")), (1, n_pos, d)
            )[0]
        elif cfg.variant == "clip":
            cls = self.param("class_embedding", _param_init(("embed",)), (d,))
            pos = self.param("position_embedding", _param_init(("pos", "embed")), (n_pos, d))
        else:
            cls = self.param("class_embedding", _param_init((None, None, "embed")), (1, 1, d))
            pos = self.param(
                "position_embedding", _param_init((None, "pos", "embed")), (1, n_pos, d)
            )[0]

        x = jnp.concatenate(
            [jnp.broadcast_to(cls.reshape(1, 1, d).astype(dt), (b, 1, d)), patches], 1
        )
        # Same rule as HF: DINOv2 resamples whenever the grid differs; CLIP/EVA only on request.
        same = gh * gw == n_pos - 1 and height == width
        if dino or interpolate_pos_encoding:
            if not same:
                grid = pos[1:].reshape(cfg.grid, cfg.grid, d)
                grid = resize_pos_grid(grid, (gh, gw), cfg.interpolate_antialias and dino)
                pos = jnp.concatenate([pos[:1], grid.reshape(gh * gw, d).astype(pos.dtype)], 0)
        elif cfg.variant == "clip" and (height != cfg.image_size or width != cfg.image_size):
            raise ValueError(
                f"input image size ({height}*{width}) does not match the model "
                f"({cfg.image_size}*{cfg.image_size}); pass interpolate_pos_encoding=True"
            )
        elif x.shape[1] > n_pos:
            raise ValueError(f"{x.shape[1]} tokens but only {n_pos} position embeddings")
        else:
            pos = pos[: x.shape[1]]  # EVA/BLIP-2 slices the table as HF does
        x = x + pos[None].astype(dt)
        if dino and cfg.num_register_tokens:
            regs = self.param(
                "register_tokens",
                layers.partitioned(nn.initializers.zeros_init(), (None, None, "embed")),
                (1, cfg.num_register_tokens, d),
            )
            regs = jnp.broadcast_to(regs.astype(dt), (b, cfg.num_register_tokens, d))
            x = jnp.concatenate([x[:, :1], regs, x[:, 1:]], 1)
        return layers.constrain(x, ("batch", "length", "embed"))


def _param_init(axes: tuple[str | None, ...], std: float = 0.02) -> Any:
    """Normal(std) initializer carrying logical ``axes``."""
    return layers.partitioned(nn.initializers.normal(std), axes)


class PatchEmbeddings(nn.Module):
    """DINOv2's ``patch_embeddings/projection`` nesting around the patch convolution."""

    config: ViTConfig

    @nn.compact
    def __call__(self, pixel_values: Array) -> Array:  # [B, H, W, C] -> [B, h, w, D]
        return _patch_conv(self.config, "projection")(pixel_values)


def _patch_conv(cfg: ViTConfig, name: str) -> nn.Conv:
    p = cfg.patch_size
    return nn.Conv(
        cfg.hidden_size,
        kernel_size=(p, p),
        strides=(p, p),
        padding="VALID",
        use_bias=cfg.variant != "clip",
        dtype=jnp.dtype(cfg.dtype),
        kernel_init=layers.partitioned(
            layers.default_kernel_init, ("conv", "conv", "conv", "embed")
        ),
        bias_init=layers.partitioned(nn.initializers.zeros_init(), ("embed",)),
        name=name,
    )


class VisionTransformer(nn.Module):
    """CLIP / DINOv2 / EVA vision tower; see the module docstring for outputs."""

    config: ViTConfig

    @nn.compact
    def __call__(
        self,
        pixel_values: Array,  # [B, H, W, C]
        *,
        output_hidden_states: bool = False,
        interpolate_pos_encoding: bool = False,
        bool_masked_pos: Array | None = None,
    ) -> dict[str, Any]:
        cfg = self.config
        dt = jnp.dtype(cfg.dtype)
        ln = functools.partial(layers.layer_norm, eps=cfg.layer_norm_eps, dtype=dt)
        x = Embeddings(cfg, name="embeddings")(
            pixel_values, bool_masked_pos, interpolate_pos_encoding
        )
        if cfg.variant == "clip":
            x = ln(name="pre_layrnorm")(x)
        x, hidden = _Encoder(cfg, name="encoder")(x)
        out: dict[str, Any] = {}
        if cfg.variant == "clip":
            pooled = ln(name="post_layernorm")(x[:, 0])
        elif cfg.variant == "dinov2":
            x = ln(name="layernorm")(x)
            pooled = x[:, 0]
        else:
            norm = ln(name="post_layernorm")
            x = norm(x)
            pooled = norm(x[:, 0])
        out["last_hidden_state"] = x
        out["pooler_output"] = pooled
        if cfg.with_projection:
            out["image_embeds"] = layers.dense(
                cfg.projection_dim,
                ("embed", None),
                name="visual_projection",
                use_bias=False,
                dtype=dt,
            )(pooled)
        if output_hidden_states:
            out["hidden_states"] = hidden
        return out


class _Encoder(nn.Module):
    """The stack of encoder layers (``encoder/layers_i`` or DINOv2's ``encoder/layer_i``)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, tuple[Array, ...]]:
        cfg = self.config
        prefix = "layer" if cfg.variant == "dinov2" else "layers"
        hidden = [x]
        for i in range(cfg.num_hidden_layers):
            x = EncoderLayer(cfg, name=f"{prefix}_{i}")(x)
            hidden.append(x)
        return x, tuple(hidden)


# ----------------------------------------------------------------------------------------------
# Registry


def module_from_config(cfg: ViTConfig) -> VisionTransformer:
    """The Linen module of a vision-tower config."""
    return VisionTransformer(cfg)


def dummy_inputs(cfg: ViTConfig) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` for ``init``/``eval_shape``: one (small) zero image at the config size."""
    shape = (1, cfg.image_size, cfg.image_size, cfg.num_channels)
    return (jnp.zeros(shape, jnp.float32),), {}


def _clip(
    width: int,
    layers_: int,
    heads: int,
    patch: int,
    image: int = 224,
    proj: int = 512,
    act: str = "quick_gelu",
) -> ViTConfig:
    return ViTConfig(
        variant="clip",
        image_size=image,
        patch_size=patch,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers_,
        num_attention_heads=heads,
        hidden_act=act,
        layer_norm_eps=1e-5,
        projection_dim=proj,
    )


def _dinov2(width: int, layers_: int, heads: int, swiglu: bool = False) -> ViTConfig:
    return ViTConfig(
        variant="dinov2",
        image_size=518,
        patch_size=14,
        hidden_size=width,
        mlp_ratio=4,
        num_hidden_layers=layers_,
        num_attention_heads=heads,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        use_mask_token=True,
        use_swiglu_ffn=swiglu,
    )


PRESETS: dict[str, ViTConfig] = {
    "clip-vit-b/16": _clip(768, 12, 12, 16),
    "clip-vit-l/14": _clip(1024, 24, 16, 14, proj=768),
    "clip-vit-l/14-336": _clip(1024, 24, 16, 14, image=336, proj=768),
    # OpenCLIP ViT-H/14 (laion/CLIP-ViT-H-14-laion2B-s32B-b79K in HF's CLIPModel layout):
    # 32 blocks of width 1280, 16 heads, exact GELU (OpenCLIP's, not OpenAI's quick GELU)
    "clip-vit-h/14": _clip(1280, 32, 16, 14, proj=1024, act="gelu"),
    "dinov2-s/14": _dinov2(384, 12, 6),
    "dinov2-b/14": _dinov2(768, 12, 12),
    "dinov2-l/14": _dinov2(1024, 24, 16),
    "dinov2-g/14": _dinov2(1536, 40, 24, swiglu=True),
    "eva-vit-g/14": ViTConfig(
        variant="eva",
        image_size=224,
        patch_size=14,
        hidden_size=1408,
        intermediate_size=6144,
        num_hidden_layers=39,
        num_attention_heads=16,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
    ),
    "tiny-clip-vit": ViTConfig(
        variant="clip",
        image_size=64,
        patch_size=8,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=32,
    ),
    "tiny-dinov2": ViTConfig(
        variant="dinov2",
        image_size=56,
        patch_size=14,
        hidden_size=64,
        mlp_ratio=4,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        use_mask_token=True,
    ),
    "tiny-eva-vit": ViTConfig(
        variant="eva",
        image_size=56,
        patch_size=14,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
    ),
}
