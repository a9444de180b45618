"""HF ``Dinov2Model`` / ``Dinov2WithRegistersModel`` checkpoints <-> ``VisionTransformer``.

HF 5.x names the attention ``attention.{q,k,v,o}_proj`` and the SwiGLU FFN
``mlp.{gate,up,down}_proj`` in memory, but ``save_pretrained`` writes (and the published
checkpoints hold) the original layout: ``attention.attention.{query,key,value}``,
``attention.output.dense``, ``mlp.weights_in`` (gate and up stacked on the output axis) and
``mlp.weights_out``. Both layouts are read; export writes the saved layout. The Flax module uses
the in-memory names (``attention/q_proj`` ... ``mlp/gate_proj``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vau_jax.convert.hf_clip import Rule, conv, convert_table, export_table, linear, norm, same
from vau_jax.convert.hf_clip import template as _template
from vau_jax.models import vit

MODEL_TYPES = ("dinov2", "dinov2_with_registers")

_ATTN_SAVED = {
    "q_proj": "attention.query",
    "k_proj": "attention.key",
    "v_proj": "attention.value",
    "o_proj": "output.dense",
}


def _stacked_linear(hf: str, fx_a: str, fx_b: str) -> list[Rule]:
    """One torch Linear whose outputs are two Flax Dense layers stacked (``weights_in``)."""

    def w_in(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, u = np.split(a, 2, axis=0)
        return g.T, u.T

    def b_in(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, u = np.split(a, 2, axis=0)
        return g, u

    return [
        Rule(
            f"{hf}.weight",
            (f"{fx_a}/kernel", f"{fx_b}/kernel"),
            w_in,
            lambda g, u: np.concatenate([g.T, u.T], 0),
        ),
        Rule(
            f"{hf}.bias",
            (f"{fx_a}/bias", f"{fx_b}/bias"),
            b_in,
            lambda g, u: np.concatenate([g, u], 0),
        ),
    ]


def rules_for(cfg: vit.ViTConfig, saved_layout: bool = True) -> list[Rule]:
    """Mapping table; ``saved_layout``: original/saved key names, else HF 5.x in-memory names."""
    rules = [
        same("embeddings.cls_token", "embeddings/cls_token"),
        same("embeddings.position_embeddings", "embeddings/position_embeddings"),
        *conv(
            "embeddings.patch_embeddings.projection",
            "embeddings/patch_embeddings/projection",
            bias=True,
        ),
        *norm("layernorm", "layernorm"),
    ]
    if cfg.use_mask_token:
        rules.append(same("embeddings.mask_token", "embeddings/mask_token"))
    if cfg.num_register_tokens:
        rules.append(same("embeddings.register_tokens", "embeddings/register_tokens"))
    for i in range(cfg.num_hidden_layers):
        hf, fx = f"encoder.layer.{i}", f"encoder/layer_{i}"
        rules += norm(f"{hf}.norm1", f"{fx}/norm1") + norm(f"{hf}.norm2", f"{fx}/norm2")
        rules += [
            same(f"{hf}.layer_scale{j}.lambda1", f"{fx}/layer_scale{j}/lambda1") for j in (1, 2)
        ]
        for p, saved in _ATTN_SAVED.items():
            name = saved if saved_layout else p
            rules += linear(
                f"{hf}.attention.{name}", f"{fx}/attention/{p}", bias=cfg.qkv_bias or p == "o_proj"
            )
        if not cfg.use_swiglu_ffn:
            rules += linear(f"{hf}.mlp.fc1", f"{fx}/mlp/fc1") + linear(
                f"{hf}.mlp.fc2", f"{fx}/mlp/fc2"
            )
        elif saved_layout:
            rules += _stacked_linear(
                f"{hf}.mlp.weights_in", f"{fx}/mlp/gate_proj", f"{fx}/mlp/up_proj"
            )
            rules += linear(f"{hf}.mlp.weights_out", f"{fx}/mlp/down_proj")
        else:
            for p in ("gate_proj", "up_proj", "down_proj"):
                rules += linear(f"{hf}.mlp.{p}", f"{fx}/mlp/{p}")
    return rules


def config_from_hf(hf_config: Mapping[str, Any]) -> vit.ViTConfig:
    """HF ``config.json`` dict -> ``ViTConfig(variant="dinov2")``."""
    c = hf_config
    mt = c.get("model_type")
    if mt not in MODEL_TYPES:
        raise ValueError(f"hf_dinov2: model_type {mt!r} is not one of {MODEL_TYPES}")
    registers = mt == "dinov2_with_registers"
    image, patch = c.get("image_size", 224), c.get("patch_size", 14 if not registers else 16)
    if isinstance(image, list | tuple) or isinstance(patch, list | tuple):
        raise ValueError(
            f"hf_dinov2: non-square image_size/patch_size {image}/{patch} are not supported"
        )
    return vit.ViTConfig(
        variant="dinov2",
        image_size=int(image),
        patch_size=int(patch),
        num_channels=int(c.get("num_channels", 3)),
        hidden_size=int(c.get("hidden_size", 768)),
        mlp_ratio=c.get("mlp_ratio", 4),
        num_hidden_layers=int(c.get("num_hidden_layers", 12)),
        num_attention_heads=int(c.get("num_attention_heads", 12)),
        hidden_act=c.get("hidden_act", "gelu"),
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-6)),
        qkv_bias=bool(c.get("qkv_bias", True)),
        layerscale_value=float(c.get("layerscale_value", 1.0)),
        num_register_tokens=int(c.get("num_register_tokens", 0)) if registers else 0,
        use_mask_token=True if registers else bool(c.get("use_mask_token", True)),
        use_swiglu_ffn=bool(c.get("use_swiglu_ffn", False)),
        interpolate_antialias=registers,
    )


def config_to_hf(cfg: vit.ViTConfig) -> dict[str, Any]:
    """Inverse of :func:`config_from_hf` (the registers class is the antialiased one)."""
    registers = cfg.interpolate_antialias
    out: dict[str, Any] = {
        "model_type": "dinov2_with_registers" if registers else "dinov2",
        "architectures": ["Dinov2WithRegistersModel" if registers else "Dinov2Model"],
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.num_channels,
        "hidden_size": cfg.hidden_size,
        "mlp_ratio": int(cfg.mlp_ratio) if float(cfg.mlp_ratio).is_integer() else cfg.mlp_ratio,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
        "qkv_bias": cfg.qkv_bias,
        "layerscale_value": cfg.layerscale_value,
        "use_swiglu_ffn": cfg.use_swiglu_ffn,
    }
    if registers:
        out["num_register_tokens"] = cfg.num_register_tokens
    else:
        out["use_mask_token"] = cfg.use_mask_token
    return out


def handles(cfg: Any) -> bool:
    """True for ``ViTConfig(variant="dinov2")``."""
    return isinstance(cfg, vit.ViTConfig) and cfg.variant == "dinov2"


def module_from_config(cfg: vit.ViTConfig) -> vit.VisionTransformer:
    """The Linen module for a DINOv2 config."""
    return vit.module_from_config(cfg)


def params_from_hf(
    state_dict: Mapping[str, Any], cfg: vit.ViTConfig, *, source: str = "checkpoint"
) -> dict:
    """HF state dict (either key layout) -> Flax params, checked against the model's shapes."""
    in_memory = any(".attention.q_proj." in k or ".mlp.gate_proj." in k for k in state_dict)
    rules = rules_for(cfg, saved_layout=not in_memory)
    return convert_table(rules, state_dict, _template(cfg), source=source)


def params_to_hf(params: Mapping[str, Any], cfg: vit.ViTConfig) -> dict[str, np.ndarray]:
    """Flax params -> HF state dict in the saved (published checkpoint) layout."""
    return export_table(rules_for(cfg), params)
