"""The train step: one pure function, jitted once with explicit shardings and donation.

``loss_fn(params, batch, rng) -> (loss, aux)`` is supplied by the method. The step

- differentiates only the trainable leaves (frozen ones get no gradient and stay the very
  same arrays, so they are bit-identical after any number of steps);
- accumulates gradients over ``grad_accum_steps`` micro-batches (``lax.scan``; the leading
  batch axis is split ``[B] -> [A, B/A]``), averaging loss and gradients;
- applies the optax chain (zero-for-frozen -> clip -> per-group optimizer);
- refuses non-finite updates *on device*: if a floating-point input, the loss or any
  trainable gradient is not finite, the state is kept as it was and the first cause (inputs,
  then loss, then gradients) is recorded in the state (``fault_step`` = the 1-based step
  within the stage, ``fault_leaf`` = the trainable-leaf index, ``LOSS_FAULT`` for the loss
  itself or ``INPUT_FAULT - j`` for input ``j``; see :mod:`vau_jax.train.state`). Once a fault
  is recorded every later step leaves the whole state unchanged, so the caller may read the
  record only now and then (no device->host sync per step) and still stop at the first
  fault with :func:`raise_if_nonfinite`, which names the step and the leaf;
- returns ``loss``, ``grad_norm`` (trainable grads, before clipping), ``param_norm``, ``lr``
  and the method's ``aux`` metrics (device scalars; reading them is the caller's choice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from vau_jax.train.optimizer import Optimizer
from vau_jax.train.state import (
    INPUT_FAULT,
    LOSS_FAULT,
    NO_FAULT,
    TrainState,
    create_train_state,
)
from vau_jax.tree import path_str

__all__ = [
    "LossFn",
    "TrainState",
    "create_train_state",
    "host_scalar",
    "input_paths",
    "make_train_step",
    "nonfinite_message",
    "raise_if_nonfinite",
    "trainable_paths",
]

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def _split(tree: Any, mask: Any) -> tuple[list, list, Any, list[bool]]:
    leaves, treedef = jax.tree.flatten(tree)
    flags = jax.tree.leaves(mask)
    if len(flags) != len(leaves):
        raise ValueError(f"trainable mask has {len(flags)} leaves, params have {len(leaves)}")
    train = [x for x, m in zip(leaves, flags) if m]
    frozen = [x for x, m in zip(leaves, flags) if not m]
    return train, frozen, treedef, flags


def _merge(train: list, frozen: list, treedef: Any, flags: list[bool]) -> Any:
    it_t, it_f = iter(train), iter(frozen)
    return jax.tree.unflatten(treedef, [next(it_t) if m else next(it_f) for m in flags])


def trainable_paths(params: Any, optimizer: Optimizer) -> list[str]:
    """Paths of the trainable leaves, in the order ``TrainState.fault_leaf`` indexes them."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    flags = jax.tree.leaves(optimizer.trainable)
    return [path_str(p) for (p, _), m in zip(flat, flags) if m]


def _is_float(x: Any) -> bool:
    return np.issubdtype(np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype, np.floating)


def input_paths(batch: Any) -> list[str]:
    """Paths of the batch's floating-point leaves, in the order ``INPUT_FAULT - j`` indexes
    them (host batches and device batches of the same structure agree)."""
    flat = jax.tree_util.tree_flatten_with_path(batch)[0]
    return [path_str(p) for p, x in flat if _is_float(x)]


def make_train_step(
    loss_fn: LossFn,
    optimizer: Optimizer,
    *,
    grad_accum_steps: int = 1,
    accum_dtype: str | None = None,
    state_sharding: Any = None,
    batch_sharding: Any = None,
    donate: bool = True,
    steps_per_call: int = 1,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Returns ``step(state, batch) -> (state, metrics)``, jitted with the given shardings.

    Args:
      loss_fn: ``(params, batch, rng) -> (scalar loss, dict of scalar aux metrics)``.
      optimizer: from :func:`vau_jax.train.optimizer.make_optimizer`.
      grad_accum_steps: micro-batches per optimizer step; the batch's leading axis must divide.
      accum_dtype: dtype of the gradient sum over micro-batches (``None``: the parameters').
      state_sharding / batch_sharding: pytrees of ``NamedSharding`` (or ``None`` = let jit decide).
        With ``steps_per_call > 1``, ``batch_sharding`` lays out the stacked ``[S, ...]`` batch.
      donate: donate the input state buffers (the caller must not reuse ``state``).
      steps_per_call: ``S`` optimizer steps per call: the batch leaves carry a leading ``[S]``
        axis (``S`` ordinary batches stacked) and the steps run in one ``lax.scan``, each the
        one-step function's computation (the same rng, fault record and update rule; XLA
        compiles the scanned body on its own, so floats may round differently); ``metrics``
        are the last step's. One call instead of ``S`` allocates XLA:CPU's per-call buffers
        once (README, *Training stack*) and dispatches once.
    """
    accum = int(grad_accum_steps)
    if accum < 1:
        raise ValueError(f"grad_accum_steps must be >= 1, got {accum}")
    per_call = int(steps_per_call)
    if per_call < 1:
        raise ValueError(f"steps_per_call must be >= 1, got {per_call}")

    def step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        train, frozen, treedef, flags = _split(state.params, optimizer.trainable)

        def loss_of_train(train_leaves: list, micro: Any, key: jax.Array):
            params = _merge(train_leaves, frozen, treedef, flags)
            return loss_fn(params, micro, key)

        grad_fn = jax.value_and_grad(loss_of_train, has_aux=True)
        if accum == 1:
            (loss, aux), grads = grad_fn(train, batch, rng)
        else:

            def split_micro(x: jax.Array) -> jax.Array:
                if x.shape[0] % accum:
                    raise ValueError(
                        f"batch axis {x.shape[0]} not divisible by grad_accum_steps {accum}"
                    )
                # Micro-batch i takes rows i, i + accum, i + 2*accum, ...: a batch split
                # over devices on its leading axis stays split the same way in every
                # micro-batch (a contiguous split would put each on a few devices).
                x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:])
                return jnp.swapaxes(x, 0, 1)

            micro = jax.tree.map(split_micro, batch)

            def body(carry, xs):
                g_sum, l_sum, a_sum = carry
                i, mb = xs
                # Keep each micro-batch split over the batch axes (scan's slicing drops the
                # layout: replicated, every device would run the whole micro-batch). A no-op
                # outside activation_context.
                mb = jax.tree.map(
                    lambda x: nn.with_logical_constraint(x, ("batch",) + (None,) * (x.ndim - 1)),
                    mb,
                )
                (mb_loss, a), g = grad_fn(train, mb, jax.random.fold_in(rng, i))
                g_sum = jax.tree.map(lambda s, x: s + x.astype(s.dtype), g_sum, g)
                a_sum = jax.tree.map(jnp.add, a_sum, a)
                return (g_sum, l_sum + mb_loss, a_sum), None

            first = jax.tree.map(lambda x: x[0], micro)
            aux_shape = jax.eval_shape(lambda: grad_fn(train, first, rng)[0][1])
            init = (
                jax.tree.map(lambda x: jnp.zeros(x.shape, accum_dtype or x.dtype), train),
                jnp.zeros((), jnp.float32),
                jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape),
            )
            (g_sum, l_sum, a_sum), _ = jax.lax.scan(body, init, (jnp.arange(accum), micro))
            grads = [(g / accum).astype(x.dtype) for g, x in zip(g_sum, train)]
            loss = l_sum / accum
            aux = jax.tree.map(lambda a: a / accum, a_sum)

        def all_finite(xs: list) -> jax.Array:  # bool [len(xs)]
            return jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]) if xs else jnp.ones(0, bool)

        leaf_finite = all_finite(grads)
        input_finite = all_finite([x for x in jax.tree.leaves(batch) if _is_float(x)])
        finite = jnp.isfinite(loss) & jnp.all(leaf_finite) & jnp.all(input_finite)
        first_bad = lambda ok: jnp.argmin(ok) if ok.size else 0  # noqa: E731 - [] -> 0
        code = jnp.where(
            jnp.all(input_finite),
            jnp.where(
                jnp.isfinite(loss),
                jnp.where(jnp.all(leaf_finite), NO_FAULT, first_bad(leaf_finite)),
                LOSS_FAULT,
            ),
            INPUT_FAULT - first_bad(input_finite),
        ).astype(jnp.int32)
        clean = state.fault_leaf == NO_FAULT  # no earlier fault: this step may change the state
        # XLA copies cheap scalar producers into every consumer fusion: the and-chain over
        # each leaf's finiteness (algsimp splits the stacked reduce into it) would be copied
        # into each of the per-leaf ``where(apply, new, old)`` fusions below (33,534 `and`
        # ops in the tiny VA-GPT step, about half of its compile time). One op that XLA
        # counts as expensive (sqrt) makes the flag a single materialised scalar; exact for 0/1.
        apply = jnp.sqrt((clean & finite).astype(jnp.float32)) > 0.5

        full_grads = _merge(grads, [jnp.zeros_like(x) for x in frozen], treedef, flags)
        updates, new_opt = optimizer.tx.update(full_grads, state.opt_state, state.params)
        new_all = optax.apply_updates(state.params, updates)
        new_train = [x for x, m in zip(jax.tree.leaves(new_all), flags) if m]
        new_params = _merge(new_train, frozen, treedef, flags)  # frozen: the same arrays

        keep = lambda new, old: jnp.where(apply, new, old)  # noqa: E731
        new_state = TrainState(
            step=state.step + apply.astype(jnp.int32),
            params=jax.tree.map(keep, new_params, state.params),
            opt_state=jax.tree.map(keep, new_opt, state.opt_state),
            rng=state.rng,
            fault_step=jnp.where(clean & ~finite, state.step + 1, state.fault_step),
            fault_leaf=jnp.where(clean, code, state.fault_leaf),
        )
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(state.params),
            "lr": optimizer.schedule(state.step),
            **aux,
        }
        return new_state, metrics

    fn = step
    if per_call > 1:

        def fn(state: TrainState, batches: Any) -> tuple[TrainState, dict[str, jax.Array]]:
            for x in jax.tree.leaves(batches):
                if x.shape[:1] != (per_call,):
                    raise ValueError(
                        f"steps_per_call={per_call}: every batch leaf needs a leading axis of "
                        f"{per_call} stacked batches, got shape {tuple(x.shape)}"
                    )

            def body(state: TrainState, batch: Any):
                # scan's slices lose the batch layout (see the micro-batches above)
                batch = jax.tree.map(
                    lambda x: nn.with_logical_constraint(x, ("batch",) + (None,) * (x.ndim - 1)),
                    batch,
                )
                return step(state, batch)

            state, metrics = jax.lax.scan(body, state, batches)
            return state, jax.tree.map(lambda m: m[-1], metrics)

    return jax.jit(
        fn,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, None),
        donate_argnums=(0,) if donate else (),
    )


def host_scalar(x: Any) -> float:
    """A replicated (possibly multi-process) scalar -> Python float (a device->host read)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return float(np.asarray(x))


def nonfinite_message(
    step: int, leaf: int, paths: list[str], inputs: list[str] | None = None
) -> str:
    """The message for a fault at global ``step`` in ``leaf`` (a ``fault_leaf`` code)."""
    if leaf <= INPUT_FAULT:
        j = INPUT_FAULT - leaf
        name = inputs[j] if inputs and j < len(inputs) else f"#{j}"
        what = f"the input {name!r}"
    elif leaf == LOSS_FAULT:
        what = "the loss"
    else:
        what = f"the gradient of {paths[leaf]!r}"
    return (
        f"step {step}: {what} is not finite; the update was not applied and no later state "
        "is saved, so the last checkpoint is intact"
    )


def raise_if_nonfinite(
    state: TrainState,
    paths: list[str],
    *,
    step_offset: int = 0,
    inputs: list[str] | None = None,
) -> None:
    """Reads the state's fault record (a device->host read) and raises if there is one.

    Args:
      state: a ``TrainState`` after any number of steps.
      paths: :func:`trainable_paths` of the state's params and optimizer.
      step_offset: added to the stage-local step in the message (the trainer's global step).
      inputs: :func:`input_paths` of the batches (names an input fault's input).
    Raises:
      FloatingPointError: ``"step N: the gradient of 'enc/kernel' is not finite; ..."`` (or
        ``the loss`` / ``the input 'x'``).
    """
    leaf = int(host_scalar(state.fault_leaf))
    if leaf == NO_FAULT:
        return
    step = int(host_scalar(state.fault_step))
    raise FloatingPointError(nonfinite_message(step_offset + step, leaf, paths, inputs))
