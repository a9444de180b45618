"""Checkpoint converters: HF ``save_pretrained`` folders and llama GGUF files <-> Flax params.

Public API (DESIGN §4)::

    module, params = load_hf("path/to/hf_folder")
    state_dict = export_hf(module, params)         # back to HF names/layouts (numpy)
    module, params, tokenizer = load_gguf("model.gguf")
    trees = load_export("shared/vagpt")           # a run shared with convert --export

PyTorch releases that are not HF folders have their own loaders (``path -> (module,
params)``, saved with ``checkpoint.save_converted``): ``llamavid.load_llamavid`` (a LLaMA-VID
release -> ``VideoLLM``), ``video_llama.load_video_qformer`` (a Video-LLaMA ``.pth`` -> its
video Q-Former), ``hf_blip2_vision.load_full_model`` / ``hf_qformer.load_full_model`` (the
EVA tower / Q-Former out of a full BLIP-2 folder). Pickles are read only by
``torch_checkpoint`` (``torch.load(weights_only=True)``, the ``convert`` extra).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from vau_jax.convert.common import (
    CheckpointMismatchError,
    check_config_sizes,
    read_hf_config,
    read_safetensors_dir,
)

# HF model_type -> converter module (imported lazily: each pulls in its model family).
_CONVERTERS: dict[str, str] = {
    "clip": "vau_jax.convert.hf_clip",
    "clip_vision_model": "vau_jax.convert.hf_clip",
    "clip_text_model": "vau_jax.convert.hf_clip",
    "dinov2": "vau_jax.convert.hf_dinov2",
    "dinov2_with_registers": "vau_jax.convert.hf_dinov2",
    "blip_2_qformer": "vau_jax.convert.hf_qformer",
    "blip_2_vision_model": "vau_jax.convert.hf_blip2_vision",
    "instructblip_qformer": "vau_jax.convert.hf_qformer",
    "llama": "vau_jax.convert.hf_llama",
}

__all__ = [
    "CheckpointMismatchError",
    "converter_for",
    "export_hf",
    "load_export",
    "load_gguf",
    "load_hf",
    "load_hf_state_dict",
]


def converter_for(model_type: str) -> ModuleType:
    """The converter module for an HF ``model_type``; unknown types list the supported ones."""
    try:
        return importlib.import_module(_CONVERTERS[model_type])
    except KeyError:
        raise ValueError(
            f"unsupported HF model_type {model_type!r}; supported: {sorted(_CONVERTERS)}"
        ) from None


def load_hf_state_dict(
    state_dict: dict, hf_config: dict, *, source: str = "state_dict"
) -> tuple[Any, Any]:
    """Converts an in-memory HF state dict (numpy arrays) + config dict -> ``(module, params)``.

    Raises:
      CheckpointMismatchError: naming ``source`` when the config values do not build a model
        (wrong types, sizes larger than the state dict holds) or the tensors do not fit it.
    """
    model_type = hf_config.get("model_type", "")
    conv = converter_for(model_type)
    try:
        cfg = conv.config_from_hf(hf_config)
        check_config_sizes(cfg, sum(int(np.size(v)) for v in state_dict.values()), source=source)
        params = conv.params_from_hf(state_dict, cfg, source=source)
        module = conv.module_from_config(cfg)
    except CheckpointMismatchError:
        raise
    except Exception as e:  # config values of the wrong type or range for the converter
        raise CheckpointMismatchError(
            f"{source}: the config does not describe a usable {model_type!r} model: "
            f"{type(e).__name__}: {e}"
        ) from None
    return module, params


def load_hf(path: str) -> tuple[Any, Any]:
    """Loads an HF ``save_pretrained`` folder (config.json + *.safetensors).

    Returns ``(module, params)`` where ``module.apply({"params": params}, ...)`` returns a dict
    keyed by HF output names. Raises :class:`CheckpointMismatchError` naming the key and both
    shapes when the weights do not fit the config.
    """
    hf_config = read_hf_config(path)
    if "model_type" not in hf_config:
        raise CheckpointMismatchError(f"{path}/config.json has no 'model_type'")
    model_type = hf_config["model_type"]
    if not isinstance(model_type, str) or model_type not in _CONVERTERS:
        raise CheckpointMismatchError(
            f"{path}/config.json: unsupported HF model_type {model_type!r}; supported: "
            f"{sorted(_CONVERTERS)}"
        )
    state_dict = read_safetensors_dir(path)
    return load_hf_state_dict(state_dict, hf_config, source=path)


def export_hf(module: Any, params: Any) -> dict:
    """Flax ``(module, params)`` -> HF state dict ``{name: np.ndarray}`` (exact inverse of load)."""
    cfg = module.config
    for name in sorted(set(_CONVERTERS.values())):
        conv = importlib.import_module(name)
        if conv.handles(cfg):
            return conv.params_to_hf(params, cfg)
    raise ValueError(f"no HF converter handles config {type(cfg).__name__}")


def export_hf_config(module: Any) -> dict:
    """The HF ``config.json`` dict matching ``module.config``."""
    cfg = module.config
    for name in sorted(set(_CONVERTERS.values())):
        conv = importlib.import_module(name)
        if conv.handles(cfg):
            return conv.config_to_hf(cfg)
    raise ValueError(f"no HF converter handles config {type(cfg).__name__}")


def load_gguf(path: str, **kwargs: Any) -> tuple[Any, Any, Any]:
    """Loads a llama-architecture GGUF file -> ``(module, params, tokenizer)``.

    Dequantises every tensor with the ``gguf`` package, undoes llama.cpp's per-head Q/K row
    permutation and builds the tokenizer embedded in the file. ``kwargs`` go to
    :func:`vau_jax.convert.gguf_llama.load_gguf` (e.g. ``scan_layers=True``).
    """
    from vau_jax.convert import gguf_llama

    return gguf_llama.load_gguf(path, **kwargs)


def load_export(path: str, **kwargs: Any) -> dict[str, Any]:
    """The trees of a ``convert --export`` folder (:func:`vau_jax.convert.export.load_export`):
    ``{"params": ..., <other trees>}``, bit-identical to the exported run's."""
    from vau_jax.convert import export

    return export.load_export(path, **kwargs)
