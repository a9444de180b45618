"""Optimizers: optax AdamW / SGD, warm-up + cosine, param groups and freezing by regex.

Parameters are addressed by their ``/``-joined path (``llm/model/layers_3/mlp/up_proj/kernel``);
top-level submodule names (``img``, ``llm``, ``projector``, ``vador`` ...) are API. A config::

    opt = ConfigDict(dict(
        name="adamw", lr=1e-5, weight_decay=1e-3, b1=0.9, b2=0.999, eps=1e-8,
        warmup_steps=100, total_steps=3000, end_lr_ratio=0.0, grad_clip_norm=1.0,
        freeze=[r"^img/", r"^llm/"],                 # zero updates, no optimizer state
        groups=[{"pattern": r"^projector/", "lr_mult": 10.0, "weight_decay": 0.0}],
        no_decay=[r"(bias|scale|embedding)$"],       # decoupled weight decay masked off
    ))

Frozen parameters receive exactly zero updates (``optax.set_to_zero``), so they stay
bit-identical through training, and no moments are allocated for them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax

from vau_jax.tree import path_str

FROZEN = "frozen"


def param_paths(params: Any) -> list[str]:
    """All ``/``-joined parameter paths of a tree, in tree order."""
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def make_schedule(cfg: Mapping[str, Any]) -> optax.Schedule:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, cosine to ``lr*end_lr_ratio``.

    ``total_steps`` counts optimizer steps (after gradient accumulation). A config without
    ``total_steps`` (or 0) gives warm-up then a constant rate.
    """
    lr = float(cfg["lr"])
    warmup = int(cfg.get("warmup_steps", 0))
    total = int(cfg.get("total_steps", 0))
    end = lr * float(cfg.get("end_lr_ratio", 0.0))
    if total <= 0:
        if warmup <= 0:
            return optax.constant_schedule(lr)
        return optax.linear_schedule(0.0, lr, warmup)
    if warmup >= total:
        raise ValueError(f"warmup_steps ({warmup}) must be < total_steps ({total})")
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=end)


def _base(name: str, schedule: optax.Schedule, cfg: Mapping[str, Any], wd: float, decay_mask: Any):
    if name == "adamw":
        return optax.adamw(
            schedule,
            b1=float(cfg.get("b1", 0.9)),
            b2=float(cfg.get("b2", 0.999)),
            eps=float(cfg.get("eps", 1e-8)),
            weight_decay=wd,
            mask=decay_mask,
            mu_dtype=cfg.get("mu_dtype", None) or None,  # None: the parameters' dtype
        )
    if name == "sgd":
        tx = optax.sgd(schedule, momentum=cfg.get("momentum", None) or None)
        if wd:
            tx = optax.chain(optax.add_decayed_weights(wd, mask=decay_mask), tx)
        return tx
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'sgd'")


def param_labels(params: Any, cfg: Mapping[str, Any]) -> Any:
    """Tree of labels: ``"frozen"``, ``"group<i>"`` (first matching group) or ``"default"``.

    Raises when a ``freeze``/group pattern matches no parameter (a typo would otherwise
    silently train everything).
    """
    freeze = [re.compile(p) for p in cfg.get("freeze", ()) or ()]
    groups = [re.compile(g["pattern"]) for g in cfg.get("groups", ()) or ()]
    paths = param_paths(params)
    for pat in freeze + groups:
        if not any(pat.search(p) for p in paths):
            raise ValueError(
                f"optimizer pattern {pat.pattern!r} matches no parameter; e.g. paths: {paths[:5]}"
            )

    def label(path: Sequence[Any], _: Any) -> str:
        p = path_str(path)
        if any(f.search(p) for f in freeze):
            return FROZEN
        for i, g in enumerate(groups):
            if g.search(p):
                return f"group{i}"
        return "default"

    return jax.tree_util.tree_map_with_path(label, params)


def _decay_mask(params: Any, cfg: Mapping[str, Any]) -> Any:
    no_decay = [re.compile(p) for p in cfg.get("no_decay", ()) or ()]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(r.search(path_str(path)) for r in no_decay), params
    )


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """What the train step needs: the transformation, the schedule and the trainable mask."""

    tx: optax.GradientTransformation
    schedule: optax.Schedule  # optimizer step -> base learning rate
    trainable: Any  # tree of bools, False for frozen params


def make_optimizer(cfg: Mapping[str, Any], params: Any) -> Optimizer:
    """Builds zero-for-frozen -> global-norm clip (trainable grads only) -> per-group optimizer.

    Args:
      cfg: optimizer config (see the module docstring).
      params: the param tree (arrays or ``ShapeDtypeStruct``): only its paths are used.
    """
    name = str(cfg.get("name", "adamw")).lower()
    schedule = make_schedule(cfg)
    wd = float(cfg.get("weight_decay", 0.0))
    labels = param_labels(params, cfg)
    decay_mask = _decay_mask(params, cfg)
    transforms: dict[str, optax.GradientTransformation] = {
        "default": _base(name, schedule, cfg, wd, decay_mask),
        FROZEN: optax.set_to_zero(),
    }
    for i, g in enumerate(cfg.get("groups", ()) or ()):
        mult = float(g.get("lr_mult", 1.0))
        group_sched = (lambda m: lambda step: schedule(step) * m)(mult)
        transforms[f"group{i}"] = _base(
            str(g.get("name", name)),
            group_sched,
            {**dict(cfg), **dict(g)},
            float(g.get("weight_decay", wd)),
            decay_mask,
        )
    # Frozen gradients are zeroed first so they never enter the clipping norm.
    zero_frozen = optax.multi_transform(
        {k: optax.set_to_zero() if k == FROZEN else optax.identity() for k in transforms}, labels
    )
    chain = [zero_frozen]
    clip = cfg.get("grad_clip_norm", None)
    if clip:
        chain.append(optax.clip_by_global_norm(float(clip)))
    chain.append(optax.multi_transform(transforms, labels))
    trainable = jax.tree.map(lambda lab: lab != FROZEN, labels)
    return Optimizer(optax.chain(*chain), schedule, trainable)
