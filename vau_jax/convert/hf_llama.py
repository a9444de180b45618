"""HF ``LlamaForCausalLM`` (``model_type: llama``) <-> ``vau_jax.models.llama`` params.

The mapping is a name table plus one shape hook (a torch ``Linear.weight [out, in]`` is the
transpose of a Flax ``kernel [in, out]``). In the scan layout (``cfg.scan_layers``) the
per-layer tensors are stacked on a leading ``[L]`` axis under ``model/layers``. Tied
embeddings have no ``lm_head`` on our side; an HF file that still carries ``lm_head.weight``
(``save_pretrained`` drops it when tied) is accepted when it equals the embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from vau_jax.convert.common import (
    CheckpointMismatchError,
    Params,
    abstract_params,
    assemble,
    check_no_leftovers,
    flatten,
    take,
)
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM, dummy_inputs

MODEL_TYPES = ("llama",)

# Per-layer table: HF suffix after "model.layers.{i}." -> (Flax path inside the layer, is_linear).
_LAYER_TABLE: tuple[tuple[str, str, bool], ...] = (
    ("self_attn.q_proj.weight", "self_attn/q_proj/kernel", True),
    ("self_attn.k_proj.weight", "self_attn/k_proj/kernel", True),
    ("self_attn.v_proj.weight", "self_attn/v_proj/kernel", True),
    ("self_attn.o_proj.weight", "self_attn/o_proj/kernel", True),
    ("self_attn.q_proj.bias", "self_attn/q_proj/bias", False),
    ("self_attn.k_proj.bias", "self_attn/k_proj/bias", False),
    ("self_attn.v_proj.bias", "self_attn/v_proj/bias", False),
    ("self_attn.o_proj.bias", "self_attn/o_proj/bias", False),
    ("mlp.gate_proj.weight", "mlp/gate_proj/kernel", True),
    ("mlp.up_proj.weight", "mlp/up_proj/kernel", True),
    ("mlp.down_proj.weight", "mlp/down_proj/kernel", True),
    ("mlp.gate_proj.bias", "mlp/gate_proj/bias", False),
    ("mlp.up_proj.bias", "mlp/up_proj/bias", False),
    ("mlp.down_proj.bias", "mlp/down_proj/bias", False),
    ("input_layernorm.weight", "input_layernorm/scale", False),
    ("post_attention_layernorm.weight", "post_attention_layernorm/scale", False),
)


def _layer_entries(cfg: LlamaConfig) -> list[tuple[str, str, bool]]:
    out = []
    for hf, ours, linear in _LAYER_TABLE:
        if hf.endswith(".bias"):
            is_attn = hf.startswith("self_attn")
            if (is_attn and not cfg.attention_bias) or (not is_attn and not cfg.mlp_bias):
                continue
        out.append((hf, ours, linear))
    return out


def config_from_hf(hf: Mapping[str, Any]) -> LlamaConfig:
    """HF ``config.json`` dict (4.x ``rope_theta``/``rope_scaling`` or 5.x ``rope_parameters``)."""
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    heads = hf["num_attention_heads"]
    eos = hf.get("eos_token_id", 2)
    if isinstance(eos, list | tuple):
        eos = eos[0]
    kw: dict[str, Any] = {}
    if rope_type == "llama3":
        kw = dict(
            rope_factor=float(rope["factor"]),
            rope_low_freq_factor=float(rope["low_freq_factor"]),
            rope_high_freq_factor=float(rope["high_freq_factor"]),
            rope_original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
        )
    return LlamaConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_hidden_layers=hf["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(theta),
        rope_type=rope_type,
        max_position_embeddings=hf.get("max_position_embeddings", 4096),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        attention_bias=bool(hf.get("attention_bias", False)),
        mlp_bias=bool(hf.get("mlp_bias", False)),
        hidden_act=hf.get("hidden_act", "silu"),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=eos,
        pad_token_id=hf.get("pad_token_id"),
        **kw,
    )


def config_to_hf(cfg: LlamaConfig) -> dict[str, Any]:
    """The HF ``config.json`` dict for ``cfg`` (transformers 5.x ``rope_parameters`` form)."""
    rope: dict[str, Any] = {"rope_theta": cfg.rope_theta, "rope_type": cfg.rope_type}
    if cfg.rope_type == "llama3":
        rope.update(
            factor=cfg.rope_factor,
            low_freq_factor=cfg.rope_low_freq_factor,
            high_freq_factor=cfg.rope_high_freq_factor,
            original_max_position_embeddings=cfg.rope_original_max_position_embeddings,
        )
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": cfg.attention_bias,
        "mlp_bias": cfg.mlp_bias,
        "hidden_act": cfg.hidden_act,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    }


def module_from_config(cfg: LlamaConfig) -> LlamaForCausalLM:
    """The Flax module for ``cfg``."""
    return LlamaForCausalLM(cfg)


def handles(cfg: Any) -> bool:
    """True for :class:`LlamaConfig` (used by ``export_hf``)."""
    return isinstance(cfg, LlamaConfig)


def _ours(cfg: LlamaConfig, i: int | None, path: str) -> str:
    return f"model/layers/{path}" if i is None else f"model/layers_{i}/{path}"


def params_from_hf(
    state_dict: Mapping[str, np.ndarray], cfg: LlamaConfig, *, source: str = "checkpoint"
) -> Params:
    """HF state dict (numpy) -> nested Flax params, checked against the model's shapes."""
    dt = np.dtype(jnp.dtype(cfg.param_dtype))
    flat: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def get(key: str) -> np.ndarray:
        used.add(key)
        return take(state_dict, key, source=source)

    flat["model/embed_tokens/embedding"] = get("model.embed_tokens.weight")
    flat["model/norm/scale"] = get("model.norm.weight")
    if cfg.tie_word_embeddings:
        if "lm_head.weight" in state_dict:
            used.add("lm_head.weight")
            if not np.array_equal(
                state_dict["lm_head.weight"], flat["model/embed_tokens/embedding"]
            ):
                raise CheckpointMismatchError(
                    f"{source}: config ties word embeddings but lm_head.weight differs from "
                    "model.embed_tokens.weight"
                )
    else:
        flat["lm_head/kernel"] = get("lm_head.weight").T
    for hf, ours, linear in _layer_entries(cfg):
        per_layer = []
        for i in range(cfg.num_hidden_layers):
            w = get(f"model.layers.{i}.{hf}")
            per_layer.append(w.T if linear else w)
        if cfg.scan_layers:
            shapes = {w.shape for w in per_layer}
            if len(shapes) > 1:
                raise CheckpointMismatchError(
                    f"{source}: model.layers.*.{hf} have different shapes across layers: {shapes}"
                )
            flat[_ours(cfg, None, ours)] = np.stack(per_layer)
        else:
            for i, w in enumerate(per_layer):
                flat[_ours(cfg, i, ours)] = w
    check_no_leftovers(
        state_dict, used, source=source, ignore=lambda k: k.endswith("rotary_emb.inv_freq")
    )
    module = module_from_config(cfg)
    args, kwargs = dummy_inputs(cfg)
    template = abstract_params(module, *args, **kwargs)
    params = assemble(template, flat, source=source)
    return _cast(params, dt)


def _cast(tree: Any, dt: np.dtype) -> Any:
    if isinstance(tree, dict):
        return {k: _cast(v, dt) for k, v in tree.items()}
    return np.asarray(tree).astype(dt, copy=False)


def params_to_hf(params: Mapping[str, Any], cfg: LlamaConfig) -> dict[str, np.ndarray]:
    """Nested Flax params -> HF state dict ``{name: np.ndarray}`` (exact inverse)."""
    flat = {k: np.asarray(v) for k, v in flatten(params).items()}
    out = {
        "model.embed_tokens.weight": flat["model/embed_tokens/embedding"],
        "model.norm.weight": flat["model/norm/scale"],
    }
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = flat["lm_head/kernel"].T
    for hf, ours, linear in _layer_entries(cfg):
        for i in range(cfg.num_hidden_layers):
            if cfg.scan_layers:
                w = flat[_ours(cfg, None, ours)][i]
            else:
                w = flat[_ours(cfg, i, ours)]
            out[f"model.layers.{i}.{hf}"] = np.ascontiguousarray(w.T if linear else w)
    return out
