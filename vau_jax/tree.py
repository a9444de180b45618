"""Generic parameter-tree handling shared by ``vau_jax.convert`` and ``vau_jax.train``.

A neutral module (DESIGN §2): it imports nothing from the package, so the training layer
and the converters can both use it without the training layer knowing the converters.

Parameter trees are nested dicts (Flax Linen ``params``); a leaf is addressed by its
``/``-joined path (``llm/model/layers_3/mlp/up_proj/kernel``):

- :func:`flatten` / :func:`unflatten`: nested dict <-> ``{"a/b/c": leaf}``;
- :func:`path_str`: a ``jax.tree_util`` key path -> ``"a/b/c"`` (works for any pytree);
- :func:`to_numpy_tree`: device arrays -> host numpy arrays, structure kept;
- :class:`CheckpointMismatchError`: a stored tree does not fit the model (missing or
  unexpected key, wrong shape; the message names the key and both shapes), or a checkpoint
  file cannot be read at all (truncated, garbage, a lying header; the message names the file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

Params = dict[str, Any]


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (missing/unexpected key or wrong shape) or cannot
    be read (truncated, garbage or lying safetensors / GGUF / pickle / orbax / config files).
    The message starts with, or names, the file or folder."""


def flatten(tree: Mapping[str, Any], sep: str = "/") -> dict[str, Any]:
    """Nested dict -> ``{"a/b/c": leaf}``."""
    out: dict[str, Any] = {}

    def rec(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                rec(f"{prefix}{sep}{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    rec("", tree)
    return out


def unflatten(flat: Mapping[str, Any], sep: str = "/") -> Params:
    """``{"a/b/c": leaf}`` -> nested dict."""
    out: Params = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(sep)
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def path_str(path: Sequence[Any]) -> str:
    """A pytree key path (``DictKey``/``GetAttrKey``/``SequenceKey`` ...) -> ``"a/b/c"``."""
    parts = []
    for k in path:
        parts.append(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))))
    return "/".join(parts)


def to_numpy_tree(tree: Any) -> Any:
    """Device arrays -> numpy arrays (host copy), structure kept."""
    return jax.tree.map(np.asarray, tree)
