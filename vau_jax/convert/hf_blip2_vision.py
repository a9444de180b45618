"""HF ``Blip2VisionModel`` (EVA-ViT-g as used by BLIP-2) <-> ``VisionTransformer(variant="eva")``.

HF keeps one fused ``qkv`` Linear whose bias is ``cat(q_bias, 0, v_bias)`` (the key has no
bias, as in EVA); the Flax module stores ``qkv/kernel`` plus ``q_bias`` and ``v_bias``. A
checkpoint whose key-bias slice is not zero is refused (it would not round-trip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vau_jax.convert.hf_clip import Rule, conv, convert_table, export_table, linear, norm, same
from vau_jax.convert.hf_clip import template as _template
from vau_jax.models import vit

MODEL_TYPES = ("blip_2_vision_model",)


def _split_qkv_bias(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q, k, v = np.split(a, 3)
    if np.any(k != 0):
        raise ValueError("the key slice of the fused qkv bias is not zero (EVA has no key bias)")
    return q, v


def _join_qkv_bias(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([q, np.zeros_like(q), v])


def rules_for(cfg: vit.ViTConfig) -> list[Rule]:
    """Mapping table between ``Blip2VisionModel`` keys and the Flax parameter paths."""
    rules = [
        same("embeddings.class_embedding", "embeddings/class_embedding"),
        same("embeddings.position_embedding", "embeddings/position_embedding"),
        *conv("embeddings.patch_embedding", "embeddings/patch_embedding", bias=True),
        *norm("post_layernorm", "post_layernorm"),
    ]
    for i in range(cfg.num_hidden_layers):
        hf, fx = f"encoder.layers.{i}", f"encoder/layers_{i}"
        rules += norm(f"{hf}.layer_norm1", f"{fx}/layer_norm1") + norm(
            f"{hf}.layer_norm2", f"{fx}/layer_norm2"
        )
        rules += linear(f"{hf}.self_attn.qkv", f"{fx}/self_attn/qkv", bias=False)
        if cfg.qkv_bias:
            rules.append(
                Rule(
                    f"{hf}.self_attn.qkv.bias",
                    (f"{fx}/self_attn/q_bias", f"{fx}/self_attn/v_bias"),
                    _split_qkv_bias,
                    _join_qkv_bias,
                )
            )
        rules += linear(f"{hf}.self_attn.projection", f"{fx}/self_attn/projection")
        rules += linear(f"{hf}.mlp.fc1", f"{fx}/mlp/fc1") + linear(f"{hf}.mlp.fc2", f"{fx}/mlp/fc2")
    return rules


def config_from_hf(hf_config: Mapping[str, Any]) -> vit.ViTConfig:
    """HF ``config.json`` dict -> ``ViTConfig(variant="eva")``."""
    c = hf_config
    if c.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"hf_blip2_vision: model_type {c.get('model_type')!r} is not one of {MODEL_TYPES}"
        )
    return vit.ViTConfig(
        variant="eva",
        image_size=int(c.get("image_size", 224)),
        patch_size=int(c.get("patch_size", 14)),
        hidden_size=int(c.get("hidden_size", 1408)),
        intermediate_size=int(c.get("intermediate_size", 6144)),
        num_hidden_layers=int(c.get("num_hidden_layers", 39)),
        num_attention_heads=int(c.get("num_attention_heads", 16)),
        hidden_act=c.get("hidden_act", "gelu"),
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-6)),
        qkv_bias=bool(c.get("qkv_bias", True)),
    )


def config_to_hf(cfg: vit.ViTConfig) -> dict[str, Any]:
    """Inverse of :func:`config_from_hf`."""
    return {
        "model_type": "blip_2_vision_model",
        "architectures": ["Blip2VisionModel"],
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
        "qkv_bias": cfg.qkv_bias,
    }


def handles(cfg: Any) -> bool:
    """True for ``ViTConfig(variant="eva")``."""
    return isinstance(cfg, vit.ViTConfig) and cfg.variant == "eva"


def module_from_config(cfg: vit.ViTConfig) -> vit.VisionTransformer:
    """The Linen module for an EVA-ViT config."""
    return vit.module_from_config(cfg)


def params_from_hf(
    state_dict: Mapping[str, Any], cfg: vit.ViTConfig, *, source: str = "checkpoint"
) -> dict:
    """HF state dict -> Flax params, checked against the model's shapes."""
    return convert_table(rules_for(cfg), state_dict, _template(cfg), source=source)


def params_to_hf(params: Mapping[str, Any], cfg: vit.ViTConfig) -> dict[str, np.ndarray]:
    """Flax params -> HF ``Blip2VisionModel`` state dict."""
    return export_table(rules_for(cfg), params)


def load_full_model(path: str) -> tuple[vit.VisionTransformer, dict]:
    """The EVA-ViT-g tower out of a full BLIP-2 / InstructBLIP ``save_pretrained`` folder:
    only its ``vision_model.*`` tensors are read (not the Q-Former nor the LLM), with the
    ``vision_config`` of its ``config.json``."""
    from vau_jax.convert.common import read_hf_config
    from vau_jax.convert.hf_qformer import FULL_MODEL_TYPES, _read_selected

    hf_config = read_hf_config(path)
    if hf_config.get("model_type") not in FULL_MODEL_TYPES:
        raise ValueError(
            f"{path}/config.json: model_type {hf_config.get('model_type')!r} is not a full "
            f"BLIP-2/InstructBLIP model ({FULL_MODEL_TYPES}); use vau_jax.convert.load_hf for a "
            "bare Blip2VisionModel"
        )
    vision = {**dict(hf_config.get("vision_config") or {}), "model_type": MODEL_TYPES[0]}
    cfg = config_from_hf(vision)
    prefix = "vision_model."
    sd = _read_selected(path, lambda k: k.startswith(prefix))
    params = params_from_hf({k[len(prefix) :]: v for k, v in sd.items()}, cfg, source=path)
    return module_from_config(cfg), params
