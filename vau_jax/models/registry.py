"""Named model variants: full-size (``clip-vit-l/14``, ``vicuna-7b``...) and ``tiny-*``.

Each model-family file defines ``PRESETS: dict[str, Config]`` and ``module_from_config``;
this registry aggregates them. Names are public API (configs refer to them).

    cfg = get_config("dinov2-b/14")
    module = build("dinov2-b/14")
    shapes = abstract_params("vicuna-7b")      # jax.eval_shape: no memory
"""

from __future__ import annotations

import importlib
from typing import Any

import jax
import numpy as np

# Family modules, each exporting PRESETS, module_from_config(cfg) and dummy_inputs(cfg).
_FAMILIES = (
    "vau_jax.models.vit",
    "vau_jax.models.clip_text",
    "vau_jax.models.qformer",
    "vau_jax.models.llama",
)


def _family_modules() -> list[Any]:
    return [importlib.import_module(name) for name in _FAMILIES]


def list_models() -> list[str]:
    """All registered variant names, sorted."""
    names: list[str] = []
    for fam in _family_modules():
        names.extend(fam.PRESETS)
    return sorted(names)


def _find(name: str) -> tuple[Any, Any]:
    for fam in _family_modules():
        if name in fam.PRESETS:
            return fam, fam.PRESETS[name]
    raise KeyError(f"unknown model {name!r}; registered: {list_models()}")


def get_config(name: str, **overrides: Any) -> Any:
    """The config dataclass of a named variant, with ``dataclasses.replace`` overrides."""
    import dataclasses

    _, cfg = _find(name)
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def build(name: str, **overrides: Any) -> Any:
    """The Flax module of a named variant (no parameters are created)."""
    fam, _ = _find(name)
    return fam.module_from_config(get_config(name, **overrides))


def abstract_params(name: str, **overrides: Any) -> Any:
    """``jax.eval_shape`` of the variant's init: a tree of boxed ``ShapeDtypeStruct``.

    Leaves keep their ``nn.LogicallyPartitioned`` boxes so callers can derive shardings.
    """
    fam, _ = _find(name)
    cfg = get_config(name, **overrides)
    module = fam.module_from_config(cfg)
    args, kwargs = fam.dummy_inputs(cfg)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]


def param_count(name: str, **overrides: Any) -> int:
    """Number of parameters of a named variant, computed without allocating them."""
    import flax.linen as nn

    tree = nn.unbox(abstract_params(name, **overrides))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
