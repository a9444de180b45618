"""The train state and its layout on the mesh (DESIGN §1: never materialise then shard).

A :class:`TrainState` is everything a step changes: the step count, params, optimizer state,
the rng, and the *fault record*: the first non-finite step and leaf, kept on device so that
steps that do not log never wait for the host (:mod:`vau_jax.train.step` fills it in;
:func:`vau_jax.train.step.raise_if_nonfinite` reads it at log and checkpoint boundaries).

Every leaf has an explicit ``NamedSharding`` (:func:`state_shardings`):

- params: by their logical axis names (:func:`vau_jax.sharding.param_shardings`);
- an optimizer-state leaf that mirrors a parameter (its key path *ends* with the parameter's
  dict path and it has the parameter's shape: Adam ``mu``/``nu``, SGD momentum ``trace``)
  is sharded like that parameter, so the moments of an FSDP-sharded kernel are FSDP-sharded;
- every other leaf (the counts, ``step``, ``rng``, the fault record, factored moments whose
  shape differs from their parameter's) is replicated.

:func:`abstract_train_state` builds the whole state as ``ShapeDtypeStruct`` s with those
shardings from the *abstract* params (``jax.eval_shape`` of the optimizer init, no memory), so
a checkpoint is restored straight onto its layout without a random init first;
:func:`init_train_state` creates a fresh state's optimizer state with explicit ``out_shardings``.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vau_jax.train.optimizer import Optimizer

#: ``TrainState.fault_leaf`` codes: no fault yet / the loss itself; ``i >= 0`` is the i-th
#: trainable leaf (:func:`vau_jax.train.step.trainable_paths`); ``INPUT_FAULT - j`` is the
#: j-th floating-point input of the batch (:func:`vau_jax.train.step.input_paths`).
NO_FAULT = -2
LOSS_FAULT = -1
INPUT_FAULT = -3
#: ``TrainState.fault_step`` when no fault was recorded.
NO_FAULT_STEP = -1


@flax.struct.dataclass
class TrainState:
    """Everything a step changes. ``rng`` is raw key data (uint32) so orbax can store it."""

    step: jax.Array  # int32 [], optimizer steps taken (in the current stage)
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2] (threefry key data)
    fault_step: jax.Array  # int32 [], 1-based step (``step + 1``) of the first fault, or -1
    fault_leaf: jax.Array  # int32 [], NO_FAULT, LOSS_FAULT, INPUT_FAULT - j or a leaf index


def create_train_state(params: Any, optimizer: Optimizer, seed: int) -> TrainState:
    """Fresh state: step 0, optimizer moments for the trainable params, rng from ``seed``."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.tx.init(params),
        rng=jax.random.key_data(jax.random.key(seed)),
        fault_step=jnp.full((), NO_FAULT_STEP, jnp.int32),
        fault_leaf=jnp.full((), NO_FAULT, jnp.int32),
    )


def _dict_path(path: tuple[Any, ...]) -> tuple[str, ...]:
    """The trailing run of dict keys of a key path (a parameter's path inside a moment tree)."""
    out: list[str] = []
    for k in reversed(path):
        if not isinstance(k, jax.tree_util.DictKey):
            break
        out.append(str(k.key))
    return tuple(reversed(out))


def state_shardings(abstract_state: TrainState, param_sharding: Any, mesh: Mesh) -> TrainState:
    """A ``TrainState`` of ``NamedSharding``: params as given, moments like their params.

    Args:
      abstract_state: the state's shapes (``jax.eval_shape`` of :func:`create_train_state`).
      param_sharding: tree of ``NamedSharding`` matching ``abstract_state.params``.
      mesh: the mesh (for the replicated leaves).
    """
    repl = NamedSharding(mesh, P())
    flat_p = jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]
    flat_s = jax.tree.leaves(param_sharding)
    if len(flat_s) != len(flat_p):
        raise ValueError(f"{len(flat_s)} param shardings for {len(flat_p)} params")
    by_path = {
        _dict_path(path): (tuple(leaf.shape), sharding)
        for (path, leaf), sharding in zip(flat_p, flat_s)
    }

    def opt_leaf(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        hit = by_path.get(_dict_path(path))
        if hit is not None and hit[0] == tuple(leaf.shape):
            return hit[1]
        return repl

    return TrainState(
        step=repl,
        params=param_sharding,
        opt_state=jax.tree_util.tree_map_with_path(opt_leaf, abstract_state.opt_state),
        rng=repl,
        fault_step=repl,
        fault_leaf=repl,
    )


def abstract_train_state(
    abstract_params: Any, optimizer: Optimizer, seed: int, param_sharding: Any, mesh: Mesh
) -> TrainState:
    """The state as ``ShapeDtypeStruct`` s carrying their ``NamedSharding`` (no memory used).

    Args:
      abstract_params: unboxed tree of ``ShapeDtypeStruct`` (``nn.unbox`` of a method's
        ``abstract_params()``).
      optimizer: from :func:`vau_jax.train.optimizer.make_optimizer`.
      seed: only its dtype/shape matters here (the rng leaf).
      param_sharding: tree of ``NamedSharding`` for the params.
      mesh: the mesh.
    """
    shapes = jax.eval_shape(lambda p: create_train_state(p, optimizer, seed), abstract_params)
    shardings = state_shardings(shapes, param_sharding, mesh)
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )


def init_train_state(params: Any, optimizer: Optimizer, seed: int, sharding: TrainState) -> Any:
    """A fresh state around ``params``, laid out by ``sharding`` (``TrainState`` of shardings).

    The optimizer state and the scalars are created directly in their sharded layout
    (``out_shardings``); ``params`` are kept as they are (not copied, not donated) when they
    already have ``sharding.params`` (else moved there, e.g. after a stage's ``on_start``).
    """
    params = jax.device_put(params, sharding.params)

    def rest(p: Any) -> tuple[Any, ...]:
        st = create_train_state(p, optimizer, seed)
        return st.step, st.opt_state, st.rng, st.fault_step, st.fault_leaf

    s = sharding
    step, opt_state, rng, fault_step, fault_leaf = jax.jit(
        rest, out_shardings=(s.step, s.opt_state, s.rng, s.fault_step, s.fault_leaf)
    )(params)
    return TrainState(step, params, opt_state, rng, fault_step, fault_leaf)
