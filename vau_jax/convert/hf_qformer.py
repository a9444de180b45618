"""HF ``Blip2QFormerModel`` / ``InstructBlipQFormerModel`` <-> Flax :class:`QFormer` params.

The mapping is a name table with one shape hook (a Flax ``kernel`` is the transpose of a torch
``Linear.weight``)::

    encoder.layer.{i}.<path>.weight  <->  encoder/layer_{i}/<path>/kernel (transposed)
    <path>.LayerNorm.weight          <->  <path>/LayerNorm/scale
    embeddings.word_embeddings.weight <-> embeddings/word_embeddings/embedding
    layernorm.weight (BLIP-2) or embeddings.layernorm.weight (InstructBLIP) <-> layernorm/scale
    query_tokens                     <->  query_tokens

Where the query tokens come from. HF keeps them outside the Q-Former (``Blip2Model.
query_tokens`` / ``InstructBlipForConditionalGeneration.query_tokens``), so a bare Q-Former
folder has none. :func:`params_from_hf` takes them, in this order, from the ``query_tokens``
argument, from a ``query_tokens`` tensor in the state dict, or else initialises them
deterministically (normal, std ``initializer_range``, ``jax.random.key(0)``) so training can
start from them; the bare export (:func:`params_to_hf` with no prefix) leaves them out, so the
HF -> Flax -> HF round trip of a bare folder is exact.

Full models. :func:`load_full_model` reads a ``Blip2Model`` / ``Blip2ForConditionalGeneration``
/ ``InstructBlip*`` folder (model_type ``blip-2`` / ``instructblip``): only the
``qformer.*`` tensors and ``query_tokens`` are read (``prefix="qformer."``). A BLIP-2
Q-Former with ``use_qformer_text_input`` takes its text embeddings from the model-level
``embeddings.*`` tensors (as ``Blip2ForImageTextRetrieval`` stores them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from vau_jax.convert.common import (
    CheckpointMismatchError,
    Params,
    abstract_params,
    assemble,
    flatten,
    read_hf_config,
    read_safetensors_file,
)
from vau_jax.models.qformer import QFormer, QFormerConfig, dummy_inputs

MODEL_TYPES = ("blip_2_qformer", "instructblip_qformer")
FULL_MODEL_TYPES = ("blip-2", "instructblip")

_CONFIG_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "cross_attention_frequency",
    "encoder_hidden_size",
    "vocab_size",
    "max_position_embeddings",
    "pad_token_id",
    "initializer_range",
)


def config_from_hf(hf_config: Mapping[str, Any], *, num_query_tokens: int = 32) -> QFormerConfig:
    """HF Q-Former ``config.json`` dict -> :class:`QFormerConfig`.

    ``num_query_tokens`` is a field of the enclosing BLIP-2 config, not of the Q-Former's;
    it is read from ``hf_config`` when present (our own exports write it), else the argument.
    """
    model_type = hf_config.get("model_type", "blip_2_qformer")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"not a Q-Former config: model_type {model_type!r} (expected {MODEL_TYPES})"
        )
    defaults = QFormerConfig()
    kwargs = {f: hf_config.get(f, getattr(defaults, f)) for f in _CONFIG_FIELDS}
    if kwargs["pad_token_id"] is None:
        kwargs["pad_token_id"] = 0
    text = model_type == "instructblip_qformer" or bool(hf_config.get("use_qformer_text_input"))
    return QFormerConfig(
        **kwargs,
        num_query_tokens=int(hf_config.get("num_query_tokens", num_query_tokens)),
        text_input=text,
        hf_model_type=model_type,
    )


def config_to_hf(cfg: QFormerConfig) -> dict[str, Any]:
    """:class:`QFormerConfig` -> HF ``config.json`` dict (plus ``num_query_tokens``)."""
    out: dict[str, Any] = {f: getattr(cfg, f) for f in _CONFIG_FIELDS}
    out["model_type"] = cfg.hf_model_type
    out["num_query_tokens"] = cfg.num_query_tokens
    out["attention_probs_dropout_prob"] = cfg.hidden_dropout_prob
    if cfg.hf_model_type == "blip_2_qformer":
        out["use_qformer_text_input"] = cfg.text_input
    return out


def module_from_config(cfg: QFormerConfig) -> QFormer:
    """The Flax module for ``cfg``."""
    return QFormer(config=cfg)


def handles(cfg: Any) -> bool:
    """True for the configs this converter exports."""
    return isinstance(cfg, QFormerConfig)


def _template(cfg: QFormerConfig) -> Params:
    args, kwargs = dummy_inputs(cfg)
    return abstract_params(module_from_config(cfg), *args, **kwargs)


def _hf_name(flax_key: str, cfg: QFormerConfig, prefix: str) -> tuple[str, bool]:
    """Flax key -> (HF key, transpose?)."""
    if flax_key == "query_tokens":
        return "query_tokens", False
    parts = flax_key.split("/")
    leaf = parts[-1]
    path = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in parts[:-1]]
    if parts[0] == "layernorm" and cfg.hf_model_type == "instructblip_qformer":
        path = ["embeddings", "layernorm"]
    name = (
        ".".join(path)
        + "."
        + {"kernel": "weight", "scale": "weight", "embedding": "weight"}.get(leaf, leaf)
    )
    if parts[0] == "embeddings" and cfg.hf_model_type == "blip_2_qformer":
        return name, False  # BLIP-2 text embeddings live at model level, outside `qformer.`
    return prefix + name, leaf == "kernel"


def params_from_hf(
    state_dict: Mapping[str, np.ndarray],
    cfg: QFormerConfig,
    *,
    source: str = "checkpoint",
    prefix: str = "",
    query_tokens: np.ndarray | None = None,
) -> Params:
    """HF state dict (numpy) -> nested Flax params, checked against the model's shapes.

    Args:
      state_dict: a bare Q-Former state dict, or (with ``prefix="qformer."``) a full BLIP-2 /
        InstructBLIP one, whose other tensors are ignored.
      cfg: the Q-Former config.
      source: file or folder named in errors.
      prefix: key prefix of the Q-Former tensors.
      query_tokens: optional ``[1, Nq, D]`` overriding the checkpoint (see module docstring).
    Raises:
      CheckpointMismatchError: naming each missing HF key, each unexpected one, and every
        shape mismatch with both shapes (in the HF layout).
    """
    nested = _template(cfg)
    template = flatten(nested)
    values: dict[str, np.ndarray] = {}
    problems: list[str] = []
    used: set[str] = set()
    for fkey, leaf in template.items():
        hkey, transpose = _hf_name(fkey, cfg, prefix)
        want = tuple(leaf.shape)[::-1] if transpose else tuple(leaf.shape)
        if fkey == "query_tokens" and query_tokens is not None:
            arr = np.asarray(query_tokens)
        elif hkey in state_dict:
            arr = np.asarray(state_dict[hkey])
            used.add(hkey)
        elif fkey == "query_tokens":
            key = jax.random.key(0)
            arr = np.asarray(jax.random.normal(key, want) * cfg.initializer_range, np.float32)
        else:
            problems.append(f"missing key {hkey!r} (expected shape {want})")
            continue
        if tuple(arr.shape) != want:
            problems.append(
                f"shape mismatch for {hkey!r}: model expects {want}, checkpoint has {tuple(arr.shape)}"
            )
            continue
        values[fkey] = arr.T if transpose else arr
    for key in sorted(state_dict):
        if key in used or (prefix and not key.startswith(prefix)):
            continue
        if key == "query_tokens":
            continue
        problems.append(
            f"unexpected key {key!r} with shape {tuple(np.shape(state_dict[key]))} "
            "(not a parameter of this Q-Former)"
        )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit the Q-Former:\n  {shown}{more}"
        )
    return assemble(nested, values, source=source)


def params_to_hf(
    params: Params,
    cfg: QFormerConfig,
    *,
    prefix: str = "",
    include_query_tokens: bool | None = None,
) -> dict[str, np.ndarray]:
    """Flax params -> HF state dict ``{name: np.ndarray}`` (exact inverse of ``params_from_hf``).

    ``include_query_tokens`` defaults to ``bool(prefix)``: a bare ``Blip2QFormerModel`` has no
    ``query_tokens``; a full model (``prefix="qformer."``) keeps them at top level.
    """
    if include_query_tokens is None:
        include_query_tokens = bool(prefix)
    out: dict[str, np.ndarray] = {}
    for fkey, value in flatten(dict(params)).items():
        if fkey == "query_tokens" and not include_query_tokens:
            continue
        hkey, transpose = _hf_name(fkey, cfg, prefix)
        arr = np.asarray(value)
        out[hkey] = arr.T if transpose else arr
    return out


def _read_selected(path: str, wanted: Callable[[str], bool]) -> dict[str, np.ndarray]:
    """Reads only the tensors whose key satisfies ``wanted`` from a folder's safetensors files
    (as float32; ``CheckpointMismatchError`` naming a file that cannot be read)."""
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors files")
    out: dict[str, np.ndarray] = {}
    for fname in files:
        tensors = read_safetensors_file(os.path.join(path, fname), wanted)
        out.update({k: np.asarray(v, np.float32) for k, v in tensors.items()})
    return out


def load_full_model(path: str) -> tuple[QFormer, Params]:
    """Q-Former + query tokens out of a full BLIP-2 / InstructBLIP ``save_pretrained`` folder.

    Reads only the ``qformer.*`` tensors, ``query_tokens`` and (BLIP-2 with text input) the
    model-level ``embeddings.*``; the vision tower and LLM are not loaded.
    """
    hf_config = read_hf_config(path)
    model_type = hf_config.get("model_type")
    if model_type not in FULL_MODEL_TYPES:
        raise ValueError(
            f"{path}/config.json: model_type {model_type!r} is not a full BLIP-2/InstructBLIP "
            f"model ({FULL_MODEL_TYPES}); use vau_jax.convert.load_hf for a bare Q-Former"
        )
    q_config = dict(hf_config.get("qformer_config") or {})
    q_config.setdefault(
        "model_type", "blip_2_qformer" if model_type == "blip-2" else "instructblip_qformer"
    )
    cfg = config_from_hf(q_config, num_query_tokens=int(hf_config.get("num_query_tokens", 32)))
    state_dict = _read_selected(
        path, lambda k: k.startswith(("qformer.", "embeddings.")) or k == "query_tokens"
    )
    params = params_from_hf(state_dict, cfg, source=path, prefix="qformer.")
    return module_from_config(cfg), params
