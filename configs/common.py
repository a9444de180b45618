"""Fields every method config shares (mesh, sharding rules, seed, dtype policy)."""

from __future__ import annotations

import ml_collections


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
    return c


def parse_preset(arg: str | None, allowed: tuple[str, ...] = ("tiny", "paper")) -> str:
    """``None``/``""`` -> ``"tiny"``; unknown presets raise listing the allowed ones."""
    preset = arg or "tiny"
    if preset not in allowed:
        raise ValueError(f"unknown preset {preset!r}; choose one of {allowed}")
    return preset
