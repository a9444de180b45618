"""A config's precision and memory policy, applied to the model configs it builds.

Config fields (``configs/common.py``; every preset has them):

* ``compute_dtype``: the dtype matmuls and activations run in (``float32`` | ``bfloat16``);
* ``param_dtype``: the dtype parameters (the optimizer's master copy) are stored in; the
  optimizer state follows the parameters (AdamW moments in the same dtype);
* ``remat_policy``: ``none`` or one of :data:`vau_jax.models.llama.REMAT_POLICIES`
  (``full`` recomputes each decoder block in the backward pass; ``dots`` /
  ``dots_no_batch`` keep the matmul outputs);
* ``scan_layers``: the LLM's blocks as one ``nn.scan`` (weights stacked ``[L, ...]``): one
  block to compile instead of 32, and each block's FSDP all-gather stays inside the loop
  (unrolled, XLA hoists the gathers of every block out of a gradient-accumulation or decode
  loop: the whole LLM gathered on each chip). Converted checkpoints load into either layout
  (:func:`vau_jax.models.llama_layout.match_layer_layout`).

The paper presets with an LLM run bf16 compute on f32 master weights and f32 AdamW state with
full remat of the LLM's scanned blocks (MaxText's and LLaMA-VID's bf16 mixed precision); the tiny presets
keep f32 everywhere (the parity tests' setting).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vau_jax.models.llama import LlamaConfig
from vau_jax.models.qformer import QFormerConfig


def _field(config: Any, name: str, default: str) -> str:
    return str(config.get(name, default) or default)


def llm_policy(config: Any, cfg: LlamaConfig) -> LlamaConfig:
    """``cfg`` with the config's compute / parameter dtypes and remat policy."""
    return dataclasses.replace(
        cfg,
        dtype=_field(config, "compute_dtype", "float32"),
        param_dtype=_field(config, "param_dtype", "float32"),
        remat_policy=_field(config, "remat_policy", "none"),
        scan_layers=bool(config.get("scan_layers", False)),
    )


def qformer_policy(config: Any, cfg: QFormerConfig) -> QFormerConfig:
    """``cfg`` with the config's compute / parameter dtypes; any ``remat_policy`` but
    ``none`` recomputes each of its layers in the backward pass."""
    return dataclasses.replace(
        cfg,
        dtype=_field(config, "compute_dtype", "float32"),
        param_dtype=_field(config, "param_dtype", "float32"),
        remat=_field(config, "remat_policy", "none") != "none",
    )


def vlm_policy(config: Any, vcfg: Any) -> Any:
    """A :class:`~vau_jax.models.vlm.VLMConfig` with the policy on its LLM and Q-Former."""
    return dataclasses.replace(
        vcfg, llm=llm_policy(config, vcfg.llm), qformer=qformer_policy(config, vcfg.qformer)
    )
