"""The method registry: ``config.method`` -> the class ``main``, ``explain`` and ``serve`` build.

Each method is a package ``vau_jax/methods/<name>/`` (or a module for the single-stage
pretraining runs) implementing :class:`vau_jax.methods.base.Method`. The registry is
explicit: a name maps to ``"module:Class"``, imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

REGISTRY: dict[str, str] = {
    "vagpt": "vau_jax.methods.vagpt.method:VAGPT",
    "vadllama": "vau_jax.methods.vadllama.method:VADLLaMA",
    "tvau": "vau_jax.methods.tvau.method:TVAU",
    "clip_pretrain": "vau_jax.methods.pretrain.clip:ClipPretrain",
    "llm_pretrain": "vau_jax.methods.pretrain.llm:LLMPretrain",
    "text_pretrain": "vau_jax.methods.pretrain.text_llm:TextPretrain",
    "video_pretrain": "vau_jax.methods.pretrain.video_llm:VideoPretrain",
}

#: Methods whose runs ``explain`` / ``serve`` / ``load_run`` can predict with.
PREDICTORS = ("vagpt", "vadllama", "tvau")


def names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(REGISTRY)


def get(name: str) -> type:
    """The method class registered as ``name`` (``ValueError`` listing the known names)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; known: {names()}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(config: Any, workdir: str) -> Any:
    """``get(config.method)(config, workdir)``: cheap, reads the config only."""
    return get(str(config.method))(config, workdir)
