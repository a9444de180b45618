"""The generic multi-stage trainer: a method declares stages, the trainer runs them.

A *method* (``vau_jax.methods.*``) supplies

- ``abstract_params() -> tree`` of boxed ``ShapeDtypeStruct`` (logical axis names) and
  ``init_params(rng) -> params`` (unboxed), used to initialise straight into the sharded
  layout;
- ``stages() -> list[Stage]``: each with its loss, optimizer config (freezing by regex),
  number of steps and a data factory;
- ``evaluate(params, workdir) -> {"name": number}``;
- optionally ``init_from_rules``: ``[(target_regex, source_replacement)]`` for
  ``config.init_from`` (a checkpoint loaded partially). The trainer knows no checkpoint
  format for it: the caller passes ``load_init(path) -> nested dict of host arrays``
  (``vau_jax.methods.runner`` passes ``vau_jax.convert``'s ``load_converted``).

Checkpoints are numbered by the *global* step (steps of all earlier stages + the step within
the current stage) and carry ``{"stage_index", "stage", "stage_step", "done", "data"}``; a
stage's last step is always saved (the stage boundary), so rerunning the same command after
an interruption continues at the right stage, step and batch. Numbers are reproducible: the
step rng is ``fold_in(seed, step)`` and the data iterator state is restored. Restoring never
builds a random init: the state is restored onto :func:`vau_jax.train.state.abstract_train_state`
(``method.abstract_params()`` + ``jax.eval_shape`` of the optimizer init, with shardings).

Every step is traced and run inside :meth:`Trainer.context` (the mesh + logical-axis rules,
:func:`vau_jax.train.context.activation_context`), so the models' activation constraints
shard. A step that neither logs nor checkpoints makes no device->host transfer: it runs under
:func:`vau_jax.train.context.no_host_sync` (except the first step of a (re)started stage, which
traces and compiles). Non-finite inputs, losses and gradients are recorded in the state on
device and read only at log and checkpoint boundaries, *before* anything is saved: the run
stops with a ``FloatingPointError`` naming the global step and the input or parameter leaf,
and no state after the fault is ever checkpointed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from absl import logging
from flax import linen as nn

from vau_jax import sharding as shd
from vau_jax.faults import kill_point
from vau_jax.train.checkpoint import Checkpointer, load_partial, resolve_start
from vau_jax.train.context import activation_context, no_host_sync
from vau_jax.train.optimizer import Optimizer, make_optimizer
from vau_jax.train.state import TrainState, abstract_train_state, init_train_state
from vau_jax.train.step import (
    LossFn,
    host_scalar,
    input_paths,
    make_train_step,
    raise_if_nonfinite,
    trainable_paths,
)
from vau_jax.train.writers import MetricWriter, Progress

#: ``load_init(path) -> nested dict of host arrays``: reads ``config.init_from``.
LoadInit = Callable[[str], Any]


@dataclasses.dataclass
class Stage:
    """One training stage.

    Attributes:
      name: e.g. ``"phase1"``; recorded in checkpoints.
      num_steps: optimizer steps in this stage.
      optimizer: config for :func:`vau_jax.train.optimizer.make_optimizer` (``freeze`` etc.).
      loss_fn: ``(params, batch, rng) -> (loss, aux)``.
      make_data: ``() -> iterator`` of host batches (dicts of numpy arrays) with
        ``get_state()``/``set_state()``; it must not run out before ``num_steps``.
      grad_accum_steps: micro-batches per step.
      accum_dtype: dtype of their gradient sum (``None``: the parameters').
      checkpoint_every: also save every this many steps (0: only at the stage end).
      log_every: metric-writing period in steps.
      on_start: optional ``params -> params`` applied when the stage starts fresh.
      before_data: optional ``params -> None`` called with the stage's starting params (after
        ``on_start`` when fresh, the restored ones when resumed) before ``make_data``: e.g.
        to compute once the outputs of parts the stage keeps frozen, which its batches then
        carry instead of recomputing them every step.
      steps_per_call: optimizer steps per jitted call (``0``: the trainer's
        ``config.steps_per_call``, default 1). Calls never cross a log or checkpoint
        boundary, so logs, checkpoints and resumption are those of one step per call, and so
        is the arithmetic; XLA compiles the scanned step on its own, so floats may round
        differently (README, *Training stack*: bit-identical for the LLM stages measured, not
        for the tiny CLIP). Fewer dispatches and XLA:CPU buffer allocations.
    """

    name: str
    num_steps: int
    optimizer: Mapping[str, Any]
    loss_fn: LossFn
    make_data: Callable[[], Any]
    grad_accum_steps: int = 1
    accum_dtype: str | None = None
    checkpoint_every: int = 0
    log_every: int = 10
    on_start: Callable[[Any], Any] | None = None
    steps_per_call: int = 0
    before_data: Callable[[Any], None] | None = None


class Method(Protocol):
    name: str

    def abstract_params(self) -> Any: ...

    def init_params(self, rng: jax.Array) -> Any: ...

    def stages(self) -> Sequence[Stage]: ...

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]: ...


class Trainer:
    """Runs a method's stages on a mesh with checkpointing, logging and resumption.

    Args:
      method: see the module docstring.
      config: ``seed``, ``mesh``, ``sharding_rules``, ``resume``, ``init_from``,
        ``keep_checkpoints``, ``async_checkpointing``.
      workdir: checkpoints, metrics and TensorBoard events go here.
      mesh: overrides ``config.mesh``.
      load_init: reads ``config.init_from`` (required when a run starts from it).
    """

    def __init__(
        self,
        method: Method,
        config: Any,
        workdir: str,
        *,
        mesh: jax.sharding.Mesh | None = None,
        load_init: LoadInit | None = None,
    ):
        self.method, self.config, self.workdir = method, config, workdir
        self.load_init = load_init
        self.mesh = mesh or shd.mesh_from_config(config)
        self.rules = shd.rules_from_config(config)
        self.seed = int(config.get("seed", 0))
        self.steps_per_call = int(config.get("steps_per_call", 1))
        self.ckpt = Checkpointer(
            os.path.join(workdir, "checkpoints"),
            max_to_keep=int(config.get("keep_checkpoints", 3)),
            async_save=bool(config.get("async_checkpointing", True)),
        )
        self.writer = MetricWriter(workdir)
        self.batch_sharding = shd.data_sharding(self.mesh)
        # [steps, batch, ...]: steps_per_call batches stacked, the batch axis split as above
        self.stacked_sharding = jax.sharding.NamedSharding(
            self.mesh, jax.sharding.PartitionSpec(None, *self.batch_sharding.spec)
        )
        boxed = method.abstract_params()
        self.param_sharding = shd.param_shardings(boxed, self.mesh, self.rules)
        self.abstract_params = nn.unbox(boxed)  # ShapeDtypeStructs, no memory

    def context(self) -> contextlib.AbstractContextManager:
        """The mesh + logical-axis rules the steps run in; reuse it for jitted evaluation."""
        return activation_context(self.mesh, self.rules)

    # -- state ---------------------------------------------------------------------------

    def _init_params(self) -> Any:
        rng = jax.random.key(self.seed)
        return jax.jit(self.method.init_params, out_shardings=self.param_sharding)(rng)

    def _layout(self, stage: Stage) -> tuple[Optimizer, TrainState]:
        """The stage's optimizer and its state as sharded ``ShapeDtypeStruct`` s (no memory)."""
        optimizer = make_optimizer(stage.optimizer, self.abstract_params)
        abstract = abstract_train_state(
            self.abstract_params, optimizer, self.seed, self.param_sharding, self.mesh
        )
        return optimizer, abstract

    def _restore(self, ckpt: Checkpointer, stages: Sequence[Stage]) -> tuple[int, Any, dict]:
        """-> (stage index, TrainState, meta) of ``ckpt``'s newest readable checkpoint
        (:meth:`Checkpointer.restore_good`: unreadable newer steps are reported and set aside)."""

        def layout(meta: dict) -> Any:
            k = int(meta["stage_index"])
            if k >= len(stages):
                raise ValueError(
                    f"{ckpt.directory}: checkpoint stage {k} but the method has {len(stages)} "
                    "stages"
                )
            return self._layout(stages[k])[1]

        _, state, meta = ckpt.restore_good(layout)
        return int(meta["stage_index"]), state, meta

    def _start(self, stages: Sequence[Stage]) -> tuple[int, int, Any, tuple[Any, Any]]:
        """-> (stage index, step within it, params, (restored TrainState, data state) or Nones)."""
        start = resolve_start(self.workdir, self.config)
        if start.kind == "scratch":
            return 0, 0, self._init_params(), (None, None)
        if start.kind == "init_from":
            rules = getattr(self.method, "init_from_rules", None)
            if not rules:
                raise ValueError(
                    f"config.init_from={start.path!r} but {self.method.name} defines no init_from_rules"
                )
            if self.load_init is None:
                raise ValueError(
                    f"config.init_from={start.path!r} but this Trainer has no load_init: build it "
                    "with Trainer(..., load_init=lambda path: <nested dict of arrays>) "
                    "(vau_jax.methods.runner passes vau_jax.convert's load_converted)"
                )
            source = self.load_init(start.path)
            host = jax.tree.map(np.asarray, self._init_params())
            new, loaded = load_partial(host, source, list(rules), source_name=start.path)
            logging.info("init_from %s: loaded %d tensors", start.path, len(loaded))
            return 0, 0, jax.device_put(new, self.param_sharding), (None, None)
        ckpt = self.ckpt if start.kind == "workdir" else Checkpointer(start.path)
        k, state, meta = self._restore(ckpt, stages)
        logging.info(
            "resuming from %s: stage %s step %s", start.path, meta["stage"], meta["stage_step"]
        )
        if meta.get("done"):
            return k + 1, 0, state.params, (None, None)
        return k, int(meta["stage_step"]), state.params, (state, meta.get("data"))

    def restore_params(self) -> Any:
        """The params of the workdir's newest readable checkpoint (any stage), sharded."""
        return self.restore_latest()[1]

    def restore_latest(self) -> tuple[int, Any, dict]:
        """``(global step, params, meta)`` of the workdir's newest readable checkpoint."""
        _, state, meta = self._restore(self.ckpt, list(self.method.stages()))
        return int(self.ckpt.latest_step() or 0), state.params, meta

    def _check_fault(
        self, state: TrainState, offset: int, paths: list[str], inputs: list[str] | None
    ) -> None:
        """Raises on a recorded fault, after the pending (pre-fault) saves have finished."""
        try:
            raise_if_nonfinite(state, paths, step_offset=offset, inputs=inputs)
        except FloatingPointError:
            self.ckpt.wait()
            self.writer.flush()
            raise

    # -- loop ----------------------------------------------------------------------------

    def train(self) -> Any:
        """Runs every remaining stage; returns the final params."""
        stages = list(self.method.stages())
        k0, s0, params, (restored, data_state) = self._start(stages)
        offset = sum(st.num_steps for st in stages[:k0])
        for k in range(k0, len(stages)):
            stage = stages[k]
            fresh = restored is None
            if fresh and stage.on_start is not None:
                params = stage.on_start(params)
            optimizer, abstract = self._layout(stage)
            state_sharding = jax.tree.map(lambda a: a.sharding, abstract)
            if fresh:
                state = init_train_state(params, optimizer, self.seed, state_sharding)
            else:
                state = restored
            per_call = int(stage.steps_per_call or self.steps_per_call)
            step_kw = dict(
                grad_accum_steps=stage.grad_accum_steps,
                accum_dtype=stage.accum_dtype,
                state_sharding=state_sharding,
            )
            step_fn = make_train_step(stage.loss_fn, optimizer, **step_kw)
            # traced on its first call; make_train_step refuses steps_per_call < 1
            multi_fn = None
            if per_call != 1:
                multi_fn = make_train_step(
                    stage.loss_fn, optimizer, steps_per_call=per_call, **step_kw
                )
            paths = trainable_paths(state.params, optimizer)
            inputs: list[str] | None = None  # input_paths of the first batch
            if stage.before_data is not None:
                stage.before_data(state.params)
            data = stage.make_data()
            if data_state is not None:
                data.set_state(_decode_data_state(data_state))
            start_step = s0 if not fresh else 0
            progress = Progress(
                stage.num_steps, desc=stage.name, initial=start_step, log_every=stage.log_every
            )
            s = start_step
            while s < stage.num_steps:
                # One call runs the steps up to the next log or checkpoint boundary (at most
                # per_call of them); a shorter run than per_call goes one step per call.
                end = min(
                    stage.num_steps, s + per_call, (s // stage.log_every + 1) * stage.log_every
                )
                if stage.checkpoint_every:
                    end = min(end, (s // stage.checkpoint_every + 1) * stage.checkpoint_every)
                n = end  # steps done in this stage after this call
                last = n == stage.num_steps
                log = last or n % stage.log_every == 0
                save = last or bool(stage.checkpoint_every and n % stage.checkpoint_every == 0)
                # A quiet call (no log, no save) must not read the device; the first call of
                # a (re)started stage traces and compiles, so it may.
                quiet = not (log or save) and s != start_step
                with no_host_sync() if quiet else contextlib.nullcontext():
                    host_batches = [next(data) for _ in range(end - s)]
                    if inputs is None:
                        inputs = input_paths(host_batches[0])
                    stacked = (
                        _stack(host_batches) if multi_fn and len(host_batches) == per_call else None
                    )
                    with self.context():
                        if stacked is not None:
                            state, metrics = multi_fn(
                                state, _to_device(stacked, self.stacked_sharding, axis=1)
                            )
                        else:
                            for host_batch in host_batches:
                                batch = _to_device(host_batch, self.batch_sharding)
                                state, metrics = step_fn(state, batch)
                s = end
                kill_point("step")  # (tests) the step is dispatched, maybe still computing
                if not (log or save):
                    continue
                self._check_fault(state, offset, paths, inputs)  # before any write or save
                if log:
                    host = {k_: host_scalar(v) for k_, v in metrics.items()}
                    self.writer.write(offset + n, host)
                    progress.update(n, host["loss"])
                if save:
                    meta = {
                        "stage_index": k,
                        "stage": stage.name,
                        "stage_step": n,
                        "done": last,
                        "data": _encode_data_state(data.get_state()),
                    }
                    self.ckpt.save(offset + n, state, meta, force=last)
                    kill_point("checkpoint")  # (tests) an async write may be in flight
            progress.close()
            kill_point("stage_boundary")
            params, restored, data_state, s0 = state.params, None, None, 0
            offset += stage.num_steps
        self.ckpt.wait()
        self.writer.flush()
        return params

    def close(self) -> None:
        self.ckpt.close()
        self.writer.close()


def _stack(batches: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Host batches stacked on a new leading axis, or None when a leaf is not a numeric
    array (such a batch cannot enter a jitted step stacked: the steps then go one per call)."""
    leaves = [jax.tree_util.tree_flatten(b) for b in batches]
    treedef = leaves[0][1]
    if any(t != treedef for _, t in leaves):
        return None
    columns = list(zip(*(lv for lv, _ in leaves)))
    if not all(isinstance(x, np.ndarray) and x.dtype.kind in "biufc" for x in columns[0]):
        return None
    return jax.tree_util.tree_unflatten(treedef, [np.stack(c) for c in columns])


def _to_device(
    batch: Mapping[str, Any], sharding: jax.sharding.NamedSharding, axis: int = 0
) -> dict[str, Any]:
    """A host batch -> global arrays; ``axis`` is the batch axis (1 for stacked batches)."""
    from vau_jax.data.pipeline import to_global

    shards = sharding.mesh.shape["data"] * sharding.mesh.shape["fsdp"] // jax.process_count()
    for key, value in batch.items():
        if isinstance(value, np.ndarray) and value.ndim > axis and value.shape[axis] % shards:
            raise ValueError(
                f"batch {key!r} has {value.shape[axis]} examples per process, not divisible by the "
                f"{shards} local data x fsdp devices of mesh {dict(sharding.mesh.shape)}; change "
                "the batch size or --config.mesh"
            )

    return to_global(dict(batch), sharding)


def _encode_data_state(state: Any) -> Any:
    """grain iterator states are JSON-able dicts or bytes; bytes are stored as latin-1 text."""
    if isinstance(state, bytes):
        return {"__bytes__": state.decode("latin-1")}
    return state


def _decode_data_state(state: Any) -> Any:
    if isinstance(state, dict) and set(state) == {"__bytes__"}:
        return state["__bytes__"].encode("latin-1")
    return state
