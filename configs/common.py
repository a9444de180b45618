"""Fields every method config shares (mesh, sharding rules, seed, dtype policy, data dir)."""

from __future__ import annotations

import os

import ml_collections


def data_dir() -> str:
    """Where datasets, tokenizers, cached features and pretrained tiny encoders live.

    ``$VAU_JAX_DATA_DIR`` or ``./data_cache`` (git-ignored).
    """
    return os.environ.get("VAU_JAX_DATA_DIR", "data_cache")


def share_data_dir(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Makes every nested ``data_dir`` (the pretraining configs a method builds on: tiny
    CLIP, text / video LLM) follow ``c.data_dir``: ``--config.data_dir=DIR`` then puts every
    cache under ``DIR`` instead of leaving the nested ones in the default folder."""
    ref = c.get_ref("data_dir")

    def walk(node: ml_collections.ConfigDict) -> None:
        for key in list(node.keys()):
            value = node[key]
            if isinstance(value, ml_collections.ConfigDict):
                if "data_dir" in value:
                    value.data_dir = ref
                walk(value)

    walk(c)
    return c


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
    c.remat_policy = "none"  # vau_jax/models/precision.py: none | full | dots | dots_no_batch
    c.scan_layers = False  # the LLM's blocks as one nn.scan (vau_jax/models/precision.py)
    c.resume = ""  # another run's checkpoint folder to continue from
    c.init_from = ""  # a converted checkpoint (python -m vau_jax.convert) to start from
    c.keep_checkpoints = 2
    c.async_checkpointing = True
    # Optimizer steps per jitted call (vau_jax/train/trainer.py, Stage.steps_per_call): S
    # batches stacked and run in one lax.scan, never across a log or checkpoint boundary. On
    # CPU one call allocates XLA's per-call buffers once instead of S times. Raised only where
    # measured faster and bit-identical (README, *Training stack*): the LLMs' text, caption and
    # instruction steps and TETG; the tiny CLIP, AHD and RAE ran slower with 5.
    c.steps_per_call = 1
    return c


def add_dataset_fields(c: ml_collections.ConfigDict, frame_size: int = 64) -> None:
    """The data fields every method config has (DESIGN §8; README "Train on your data").

    ``dataset``: synthvad | ucf_crime | xd_violence | tad | ubnormal | shanghaitech | folder;
    ``dataset_dir``: its root in the published layout (not used by synthvad);
    ``dataset_fps``: frame rate of frame-folder videos (ShanghaiTech test frames);
    ``fps``: frames per second the frozen encoders see (0 = SynthVAD's rate);
    ``frame_size``: encoder input side in pixels (shorter side resized, centre crop);
    ``feature_dtype``: storage dtype of cached features (float16 | float32).
    """
    c.dataset = "synthvad"
    c.dataset_dir = ""
    c.dataset_fps = 0.0
    c.fps = 0.0
    c.frame_size = frame_size
    c.feature_dtype = "float16"


def parse_preset(arg: str | None, allowed: tuple[str, ...] = ("tiny", "paper")) -> str:
    """``None``/``""`` -> ``"tiny"``; unknown presets raise listing the allowed ones."""
    preset = arg or "tiny"
    if preset not in allowed:
        raise ValueError(f"unknown preset {preset!r}; choose one of {allowed}")
    return preset


def text_lm_schedule(c: ml_collections.ConfigDict, steps: int = 1500) -> None:
    """The tiny text LLMs' shared schedule (``configs/llm_pretrain.py``,
    ``configs/text_pretrain.py``): batch 16, ``steps`` AdamW steps at 3e-3 (weight decay 0.01,
    none on biases / norms / embeddings), 100 warm-up steps, cosine to ``steps``."""
    ref = ml_collections.FieldReference(steps)
    c.batch_size = 16
    c.num_steps = ref
    c.checkpoint_every = 500
    c.log_every = 100
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": 3e-3,
            "weight_decay": 0.01,
            "warmup_steps": 100,
            "total_steps": ref,
            "grad_clip_norm": 1.0,
            "no_decay": [r"(bias|scale|embedding|norm)"],
        }
    )


def adamw_stage(
    steps: int,
    lr: float,
    warmup: int,
    freeze: list[str] | tuple = (),
    weight_decay: float = 0.0,
    grad_accum_steps: int = 1,
) -> ml_collections.ConfigDict:
    """One training stage: ``steps`` and an AdamW optimizer (cosine with warm-up, clip 1.0)
    whose ``total_steps`` shares ``steps``' FieldReference (override either);
    ``grad_accum_steps`` micro-batches make one step's batch."""
    ref = ml_collections.FieldReference(steps)
    opt = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup_steps": warmup,
            "total_steps": ref,
            "grad_clip_norm": 1.0,
            "freeze": list(freeze),
        }
    )
    return ml_collections.ConfigDict(
        {"steps": ref, "optimizer": opt, "grad_accum_steps": int(grad_accum_steps)}
    )


def apply_overrides(c: ml_collections.ConfigDict, items: list[str]) -> None:
    """``key.sub=value`` strings (scripts' ``--set``) applied to ``c``, each value converted
    to the type of the field it replaces (booleans: ``True`` / anything else; tuples: a comma
    list of the type of their first item, ``int`` when empty, e.g. ``taps=1,2,3,4``)."""
    for item in items:
        key, _, value = item.partition("=")
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        old = node[leaf]
        if isinstance(old, bool):
            node[leaf] = value == "True"
        elif isinstance(old, tuple):
            cast = type(old[0]) if old else int
            node[leaf] = tuple(cast(x) for x in value.split(",") if x)
        else:
            node[leaf] = type(old)(value)
