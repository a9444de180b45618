"""Decoder-layer layouts of a :class:`vau_jax.models.llama.LlamaForCausalLM` parameter tree:
one ``model/layers_<i>`` subtree per block, or the scan layout's stacked ``model/layers``
(``cfg.scan_layers``). Converted checkpoints and cached artefacts keep the layout they were
written in and load into either with :func:`match_layer_layout`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["match_layer_layout"]


def match_layer_layout(params: Any, like: Any) -> Any:
    """``params`` (a :class:`LlamaForCausalLM` tree of host arrays) in the decoder-layer
    layout of ``like`` (a tree of the same model, any leaf type): one ``model/layers_<i>``
    subtree per block, or the scan layout's ``model/layers`` with every leaf stacked
    ``[L, ...]`` (``cfg.scan_layers``). A converted checkpoint keeps one layout and loads
    into either."""
    model, want = dict(params["model"]), like["model"]
    scanned, want_scanned = "layers" in model, "layers" in want
    if scanned == want_scanned:
        return params
    if want_scanned:
        n = sum(1 for k in model if k.startswith("layers_"))
        blocks = [model.pop(f"layers_{i}") for i in range(n)]
        model["layers"] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *blocks)
    else:
        stacked = model.pop("layers")
        n = len(jax.tree.leaves(stacked)[0])
        for i in range(n):
            model[f"layers_{i}"] = jax.tree.map(lambda x, i=i: np.asarray(x)[i], stacked)
    return {**params, "model": model}
