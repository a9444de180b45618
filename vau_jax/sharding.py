"""Meshes, logical-axis rules and abstract -> ``NamedSharding`` (DESIGN §1, §3).

Modules name *logical* axes (``embed``, ``mlp``, ``heads``, ``vocab`` ... see
``vau_jax.models.layers``); only the config maps them to the mesh axes ``data``, ``fsdp`` and
``tensor``. Parameters are never materialised then sharded::

    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    params = init_sharded(module, rng, *dummy_args, mesh=mesh, rules=DEFAULT_RULES)

A dimension whose size is not divisible by the mesh axes its logical name maps to is left
replicated (e.g. 2 kv heads on a 4-way tensor axis); :func:`param_shardings` reports it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

#: Logical name -> mesh axis (or axes). Activations: batch over data+fsdp; params: FSDP over the
#: model width, tensor parallelism over heads / mlp / vocab.
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("pos", None),
    ("conv", None),
    ("layers", None),
)


def make_mesh(
    shape: Mapping[str, int] | Sequence[int], devices: Sequence[Any] | None = None
) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh with ``AxisType.Auto`` axes.

    Args:
      shape: sizes per axis, as a mapping (missing axes = 1) or a 3-sequence. One size may be
        ``-1``: it takes all remaining devices.
      devices: defaults to ``jax.devices()``.
    """
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(shape, Mapping):
        unknown = set(shape) - set(MESH_AXES)
        if unknown:
            raise ValueError(f"unknown mesh axes {sorted(unknown)}; axes are {MESH_AXES}")
        sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    else:
        sizes = [int(s) for s in shape]
        if len(sizes) != len(MESH_AXES):
            raise ValueError(f"mesh shape {sizes} must have {len(MESH_AXES)} entries {MESH_AXES}")
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {sizes}")
    if -1 in sizes:
        rest = int(np.prod([s for s in sizes if s != -1]))
        if len(devices) % rest:
            raise ValueError(f"{len(devices)} devices do not divide into mesh {sizes}")
        sizes[sizes.index(-1)] = len(devices) // rest
    total = int(np.prod(sizes))
    if total > len(devices):
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {total} devices, have {len(devices)}"
        )
    return jax.make_mesh(
        tuple(sizes),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices[:total],
    )


def mesh_from_config(config: Any) -> Mesh:
    """Mesh from ``config.mesh`` (a mapping of axis -> size; ``-1`` = the rest)."""
    return make_mesh(dict(config.mesh))


def rules_from_config(config: Any) -> Rules:
    """Logical rules from ``config.sharding_rules`` (list of pairs) or the defaults."""
    rules = config.get("sharding_rules", None) if hasattr(config, "get") else None
    if not rules:
        return DEFAULT_RULES
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in rules)


def _mesh_axes_for(name: str | None, rules: Rules) -> tuple[str, ...]:
    if name is None:
        return ()
    for logical, mesh_axes in rules:
        if logical == name:
            if mesh_axes is None:
                return ()
            return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
    raise KeyError(
        f"logical axis {name!r} has no sharding rule; rules cover {[r[0] for r in rules]}"
    )


def spec_for(
    shape: Sequence[int], names: Sequence[str | None], mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> tuple[P, list[str]]:
    """PartitionSpec for one array of logical axes ``names``.

    Mesh axes of size 1 are dropped, a mesh axis is used at most once per array, and a dim not
    divisible by its mesh axes is replicated. Returns the spec and notes about replicated dims.
    """
    if len(names) != len(shape):
        raise ValueError(f"logical names {tuple(names)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    entries: list[Any] = []
    notes: list[str] = []
    for dim, name in zip(shape, names):
        axes = tuple(a for a in _mesh_axes_for(name, rules) if mesh.shape[a] > 1 and a not in used)
        size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if axes and dim % size:
            notes.append(f"dim {name}={dim} not divisible by {axes} (size {size}): replicated")
            axes = ()
        used.update(axes)
        entries.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*entries), notes


def param_shardings(abstract_tree: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """Boxed abstract params (``nn.LogicallyPartitioned`` leaves) -> tree of ``NamedSharding``.

    Every leaf must carry logical names; an unboxed leaf raises naming its path.
    """
    notes: list[str] = []

    def one(path: Any, leaf: Any) -> NamedSharding:
        if not isinstance(leaf, nn.LogicallyPartitioned):
            raise ValueError(f"parameter {jax.tree_util.keystr(path)} has no logical axis names")
        value = leaf.value
        spec, n = spec_for(value.shape, leaf.names, mesh, rules)
        notes.extend(f"{jax.tree_util.keystr(path)}: {m}" for m in n)
        return NamedSharding(mesh, spec)

    out = jax.tree_util.tree_map_with_path(
        one, abstract_tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )
    for note in notes[:10]:
        logging.info("sharding: %s", note)
    return out


def init_sharded(
    module: nn.Module,
    rng: jax.Array,
    *args: Any,
    mesh: Mesh,
    rules: Rules = DEFAULT_RULES,
    **kwargs: Any,
) -> Any:
    """Initialises ``module`` directly into its sharded layout (never materialised whole).

    Returns the unboxed ``params`` tree of sharded ``jax.Array``.
    """

    def init() -> Any:
        return module.init(rng, *args, **kwargs)["params"]

    abstract = jax.eval_shape(init)
    shardings = param_shardings(abstract, mesh, rules)
    return jax.jit(lambda: nn.unbox(init()), out_shardings=shardings)()


def shard_params(params: Any, abstract_tree: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """Places an existing (unboxed) params tree according to the logical names of ``abstract_tree``."""
    shardings = param_shardings(abstract_tree, mesh, rules)
    return jax.tree.map(jax.device_put, params, shardings)


def data_sharding(mesh: Mesh, ndim: int = 1) -> NamedSharding:
    """Sharding of a batch: leading axis over ``data`` x ``fsdp``, the rest replicated."""
    return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding on ``mesh``."""
    return NamedSharding(mesh, P())
