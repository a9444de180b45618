"""Fields every method config shares (mesh, sharding rules, seed, dtype policy, data dir)."""

from __future__ import annotations

import os

import ml_collections


def data_dir() -> str:
    """Where datasets, tokenizers, cached features and pretrained tiny encoders live.

    ``$VAU_JAX_DATA_DIR`` or ``./data_cache`` (git-ignored).
    """
    return os.environ.get("VAU_JAX_DATA_DIR", "data_cache")


def base_config() -> ml_collections.ConfigDict:
    """The shared skeleton; method configs extend it."""
    c = ml_collections.ConfigDict()
    c.method = ""
    c.preset = "tiny"
    c.seed = 0
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.sharding_rules = ()  # empty = vau_jax.sharding.DEFAULT_RULES
    c.compute_dtype = "float32"
    c.param_dtype = "float32"
    c.resume = ""  # another run's checkpoint folder to continue from
    c.init_from = ""  # a converted checkpoint (python -m vau_jax.convert) to start from
    c.keep_checkpoints = 2
    c.async_checkpointing = True
    return c


def parse_preset(arg: str | None, allowed: tuple[str, ...] = ("tiny", "paper")) -> str:
    """``None``/``""`` -> ``"tiny"``; unknown presets raise listing the allowed ones."""
    preset = arg or "tiny"
    if preset not in allowed:
        raise ValueError(f"unknown preset {preset!r}; choose one of {allowed}")
    return preset
