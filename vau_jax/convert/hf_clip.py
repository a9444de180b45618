"""HF CLIP checkpoints (``CLIPModel``, ``CLIPVisionModel[WithProjection]``,
``CLIPTextModel[WithProjection]``) <-> :mod:`vau_jax.models.vit` / :mod:`~vau_jax.models.clip_text`.

The conversion is a table of ``Rule(hf_key, flax_keys, to_flax, to_hf)`` entries; a rule maps
one HF tensor to one or more Flax leaves with a shape hook (a torch ``Linear.weight [out, in]``
is a Flax ``kernel [in, out]``; a conv weight ``[D, C, p, p]`` is ``[p, p, C, D]``). The same
table runs both ways, so export is the exact inverse of import. :func:`convert_table` and
:func:`export_table` are shared by the DINOv2 and BLIP-2 vision converters.

Bare tower checkpoints are accepted with or without the ``vision_model.``/``text_model.`` key
prefix (older HF versions wrote it for ``CLIPVisionModel``; 5.x writes it only for the
``...WithProjection`` classes). Export writes the layout HF 5.x ``save_pretrained`` writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from vau_jax.convert.common import (
    CheckpointMismatchError,
    abstract_params,
    assemble,
    flatten,
)
from vau_jax.models import clip_text, vit

MODEL_TYPES = ("clip", "clip_vision_model", "clip_text_model")

Array = np.ndarray


class Rule(NamedTuple):
    """One HF tensor <-> one or more Flax leaves (``/``-joined paths)."""

    hf_key: str
    flax_keys: tuple[str, ...]
    to_flax: Callable[[Array], tuple[Array, ...]]
    to_hf: Callable[..., Array]


def same(hf: str, fx: str) -> Rule:
    """Identity mapping (layer-norm scales, biases, embeddings)."""
    return Rule(hf, (fx,), lambda a: (a,), lambda a: a)


def linear(hf_prefix: str, fx_prefix: str, bias: bool = True) -> list[Rule]:
    """torch ``Linear`` ``weight [out, in]`` (+ ``bias``) <-> Flax ``kernel [in, out]`` (+ bias)."""
    rules = [Rule(f"{hf_prefix}.weight", (f"{fx_prefix}/kernel",), lambda a: (a.T,), lambda a: a.T)]
    if bias:
        rules.append(same(f"{hf_prefix}.bias", f"{fx_prefix}/bias"))
    return rules


def norm(hf_prefix: str, fx_prefix: str) -> list[Rule]:
    """torch ``LayerNorm`` ``weight``/``bias`` <-> Flax ``scale``/``bias``."""
    return [
        same(f"{hf_prefix}.weight", f"{fx_prefix}/scale"),
        same(f"{hf_prefix}.bias", f"{fx_prefix}/bias"),
    ]


def conv(hf_prefix: str, fx_prefix: str, bias: bool) -> list[Rule]:
    """torch ``Conv2d`` weight ``[D, C, p, p]`` <-> Flax ``[p, p, C, D]`` (+ bias)."""
    rules = [
        Rule(
            f"{hf_prefix}.weight",
            (f"{fx_prefix}/kernel",),
            lambda a: (a.transpose(2, 3, 1, 0),),
            lambda a: a.transpose(3, 2, 0, 1),
        )
    ]
    if bias:
        rules.append(same(f"{hf_prefix}.bias", f"{fx_prefix}/bias"))
    return rules


def prefixed(rules: Sequence[Rule], hf_prefix: str, fx_prefix: str) -> list[Rule]:
    """Adds ``hf_prefix`` (e.g. ``"vision_model."``) and ``fx_prefix`` (e.g. ``"vision_model/"``)."""
    return [
        r._replace(hf_key=hf_prefix + r.hf_key, flax_keys=tuple(fx_prefix + k for k in r.flax_keys))
        for r in rules
    ]


def convert_table(
    rules: Sequence[Rule],
    state_dict: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    source: str,
    ignore: Callable[[str], bool] = lambda k: False,
) -> dict[str, Any]:
    """Applies ``rules`` to an HF state dict and assembles params checked against ``template``.

    Raises:
      CheckpointMismatchError: listing every missing HF key (with the shape the model expects),
        every wrong shape (HF key, expected and found shapes) and every unused tensor.
    """
    flat_t = flatten(template)
    problems: list[str] = []
    values: dict[str, Any] = {}
    for rule in rules:
        expected = _expected_hf_shape(rule, flat_t)
        if rule.hf_key not in state_dict:
            problems.append(f"missing key {rule.hf_key!r} (model expects shape {expected})")
            continue
        arr = np.asarray(state_dict[rule.hf_key])
        if expected is not None and tuple(arr.shape) != expected:
            problems.append(
                f"shape mismatch for {rule.hf_key!r}: model expects {expected}, "
                f"checkpoint has {tuple(arr.shape)}"
            )
            continue
        try:
            outs = rule.to_flax(arr)
        except ValueError as e:
            problems.append(f"{rule.hf_key!r}: {e}")
            continue
        values.update(zip(rule.flax_keys, outs))
    used = {r.hf_key for r in rules}
    extra = sorted(k for k in state_dict if k not in used and not ignore(k))
    problems += [
        f"unexpected key {k!r} with shape {tuple(np.shape(state_dict[k]))} (not a parameter of this model)"
        for k in extra
    ]
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit the model:\n  {shown}{more}"
        )
    return assemble(template, values, source=source)


def export_table(rules: Sequence[Rule], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax params -> HF state dict by running ``rules`` backwards (numpy arrays)."""
    flat = flatten(params)
    return {
        r.hf_key: np.asarray(r.to_hf(*(np.asarray(flat[k]) for k in r.flax_keys))) for r in rules
    }


def _expected_hf_shape(rule: Rule, flat_template: Mapping[str, Any]) -> tuple[int, ...] | None:
    if not all(k in flat_template for k in rule.flax_keys):
        return None
    # Zero-stride views: no memory, and the shape hooks only transpose/concatenate.
    views = [np.broadcast_to(np.float32(0), tuple(flat_template[k].shape)) for k in rule.flax_keys]
    return tuple(np.shape(rule.to_hf(*views)))


# ----------------------------------------------------------------------------------------------
# CLIP tables


def clip_layer_rules(hf: str, fx: str) -> list[Rule]:
    """One CLIP encoder layer: ``{hf}.layer_norm1`` ... <-> ``{fx}/layer_norm1`` ..."""
    rules = norm(f"{hf}.layer_norm1", f"{fx}/layer_norm1") + norm(
        f"{hf}.layer_norm2", f"{fx}/layer_norm2"
    )
    for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
        rules += linear(f"{hf}.self_attn.{p}", f"{fx}/self_attn/{p}")
    rules += linear(f"{hf}.mlp.fc1", f"{fx}/mlp/fc1") + linear(f"{hf}.mlp.fc2", f"{fx}/mlp/fc2")
    return rules


def vision_rules(cfg: vit.ViTConfig) -> list[Rule]:
    """``CLIPVisionModel`` keys (no prefix) <-> :class:`~vau_jax.models.vit.VisionTransformer`."""
    rules = [
        same("embeddings.class_embedding", "embeddings/class_embedding"),
        same("embeddings.position_embedding.weight", "embeddings/position_embedding"),
        *conv("embeddings.patch_embedding", "embeddings/patch_embedding", bias=False),
        *norm("pre_layrnorm", "pre_layrnorm"),
        *norm("post_layernorm", "post_layernorm"),
    ]
    for i in range(cfg.num_hidden_layers):
        rules += clip_layer_rules(f"encoder.layers.{i}", f"encoder/layers_{i}")
    return rules


def text_rules(cfg: clip_text.CLIPTextConfig) -> list[Rule]:
    """``CLIPTextModel`` keys (no prefix) <-> :class:`~vau_jax.models.clip_text.CLIPTextTransformer`."""
    rules = [
        same("embeddings.token_embedding.weight", "embeddings/token_embedding/embedding"),
        same("embeddings.position_embedding.weight", "embeddings/position_embedding"),
        *norm("final_layer_norm", "final_layer_norm"),
    ]
    for i in range(cfg.num_hidden_layers):
        rules += clip_layer_rules(f"encoder.layers.{i}", f"encoder/layers_{i}")
    return rules


def _tower_rules(cfg: Any, *, bare_prefix: bool) -> list[Rule]:
    """Rules of a stand-alone tower; ``bare_prefix``: the checkpoint has no tower prefix."""
    if isinstance(cfg, vit.ViTConfig):
        rules, pre, head = vision_rules(cfg), "vision_model.", "visual_projection"
    else:
        rules, pre, head = text_rules(cfg), "text_model.", "text_projection"
    if not bare_prefix:
        rules = prefixed(rules, pre, "")
    if cfg.with_projection:
        rules += linear(head, head, bias=False)
    return rules


def rules_for(cfg: Any, state_dict: Mapping[str, Any] | None = None) -> list[Rule]:
    """The table for ``cfg``; for a tower, the key prefix is detected from ``state_dict``."""
    if isinstance(cfg, clip_text.CLIPConfig):
        return [
            *prefixed(text_rules(cfg.text_config), "text_model.", "text_model/"),
            *prefixed(vision_rules(cfg.vision_config), "vision_model.", "vision_model/"),
            *linear("visual_projection", "visual_projection", bias=False),
            *linear("text_projection", "text_projection", bias=False),
            same("logit_scale", "logit_scale"),
        ]
    pre = "vision_model." if isinstance(cfg, vit.ViTConfig) else "text_model."
    if state_dict is None:  # export: the layout HF 5.x writes
        bare = not cfg.with_projection
    else:
        bare = not any(k.startswith(pre) for k in state_dict)
    return _tower_rules(cfg, bare_prefix=bare)


# ----------------------------------------------------------------------------------------------
# Converter contract


def _vision_from_hf(c: Mapping[str, Any], with_projection: bool) -> vit.ViTConfig:
    return vit.ViTConfig(
        variant="clip",
        image_size=int(c.get("image_size", 224)),
        patch_size=int(c.get("patch_size", 32)),
        num_channels=int(c.get("num_channels", 3)),
        hidden_size=int(c.get("hidden_size", 768)),
        intermediate_size=int(c.get("intermediate_size", 3072)),
        num_hidden_layers=int(c.get("num_hidden_layers", 12)),
        num_attention_heads=int(c.get("num_attention_heads", 12)),
        hidden_act=c.get("hidden_act", "quick_gelu"),
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)),
        with_projection=with_projection,
        projection_dim=int(c.get("projection_dim", 512)),
    )


def _text_from_hf(c: Mapping[str, Any], with_projection: bool) -> clip_text.CLIPTextConfig:
    eos = c.get("eos_token_id", 49407)
    if isinstance(eos, list):
        eos = eos[0]
    return clip_text.CLIPTextConfig(
        vocab_size=int(c.get("vocab_size", 49408)),
        hidden_size=int(c.get("hidden_size", 512)),
        intermediate_size=int(c.get("intermediate_size", 2048)),
        num_hidden_layers=int(c.get("num_hidden_layers", 12)),
        num_attention_heads=int(c.get("num_attention_heads", 8)),
        max_position_embeddings=int(c.get("max_position_embeddings", 77)),
        hidden_act=c.get("hidden_act", "quick_gelu"),
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)),
        pad_token_id=int(c.get("pad_token_id", 1)),
        bos_token_id=int(c.get("bos_token_id", 49406)),
        eos_token_id=int(eos),
        with_projection=with_projection,
        projection_dim=int(c.get("projection_dim", 512)),
    )


def config_from_hf(hf_config: Mapping[str, Any]) -> Any:
    """HF ``config.json`` dict -> ``CLIPConfig`` / ``ViTConfig`` / ``CLIPTextConfig``."""
    mt = hf_config.get("model_type")
    archs = hf_config.get("architectures") or []
    if mt == "clip":
        return clip_text.CLIPConfig(
            text_config=_text_from_hf(hf_config.get("text_config") or {}, False),
            vision_config=_vision_from_hf(hf_config.get("vision_config") or {}, False),
            projection_dim=int(hf_config.get("projection_dim", 512)),
            logit_scale_init_value=float(hf_config.get("logit_scale_init_value", 2.6592)),
        )
    if mt == "clip_vision_model":
        return _vision_from_hf(hf_config, "CLIPVisionModelWithProjection" in archs)
    if mt == "clip_text_model":
        return _text_from_hf(hf_config, "CLIPTextModelWithProjection" in archs)
    raise ValueError(f"hf_clip: model_type {mt!r} is not one of {MODEL_TYPES}")


def _vision_to_hf(cfg: vit.ViTConfig) -> dict[str, Any]:
    return {
        "model_type": "clip_vision_model",
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.num_channels,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
        "projection_dim": cfg.projection_dim,
        "architectures": [
            "CLIPVisionModelWithProjection" if cfg.with_projection else "CLIPVisionModel"
        ],
    }


def _text_to_hf(cfg: clip_text.CLIPTextConfig) -> dict[str, Any]:
    out = {"model_type": "clip_text_model"}
    out.update(
        {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("with_projection", "dtype")}
    )
    out["architectures"] = [
        "CLIPTextModelWithProjection" if cfg.with_projection else "CLIPTextModel"
    ]
    return out


def config_to_hf(cfg: Any) -> dict[str, Any]:
    """Inverse of :func:`config_from_hf`."""
    if isinstance(cfg, clip_text.CLIPConfig):
        return {
            "model_type": "clip",
            "architectures": ["CLIPModel"],
            "text_config": _text_to_hf(cfg.text_config),
            "vision_config": _vision_to_hf(cfg.vision_config),
            "projection_dim": cfg.projection_dim,
            "logit_scale_init_value": cfg.logit_scale_init_value,
        }
    if isinstance(cfg, vit.ViTConfig):
        return _vision_to_hf(cfg)
    return _text_to_hf(cfg)


def handles(cfg: Any) -> bool:
    """True for CLIP configs (``CLIPConfig``, ``CLIPTextConfig``, ``ViTConfig(variant="clip")``)."""
    if isinstance(cfg, clip_text.CLIPConfig | clip_text.CLIPTextConfig):
        return True
    return isinstance(cfg, vit.ViTConfig) and cfg.variant == "clip"


def module_from_config(cfg: Any) -> Any:
    """The Linen module for a CLIP config."""
    if isinstance(cfg, vit.ViTConfig):
        return vit.module_from_config(cfg)
    return clip_text.module_from_config(cfg)


def template(cfg: Any) -> dict[str, Any]:
    """Abstract (shape-only) params of the model of ``cfg``."""
    fam = vit if isinstance(cfg, vit.ViTConfig) else clip_text
    args, kwargs = fam.dummy_inputs(cfg)
    return abstract_params(module_from_config(cfg), *args, **kwargs)


def _ignored(key: str) -> bool:
    return key.endswith("position_ids")  # a non-persistent buffer in older checkpoints


def params_from_hf(
    state_dict: Mapping[str, Any], cfg: Any, *, source: str = "checkpoint"
) -> dict[str, Any]:
    """HF state dict (numpy) -> Flax params for ``cfg`` (checked: key names and shapes)."""
    return convert_table(
        rules_for(cfg, state_dict), state_dict, template(cfg), source=source, ignore=_ignored
    )


def params_to_hf(params: Mapping[str, Any], cfg: Any) -> dict[str, np.ndarray]:
    """Flax params -> HF state dict in the layout HF 5.x ``save_pretrained`` writes."""
    return export_table(rules_for(cfg), params)
