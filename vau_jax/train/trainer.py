"""The generic multi-stage trainer: a method declares stages, the trainer runs them.

A *method* (``vau_jax.methods.*``) supplies

- ``abstract_params() -> tree`` of boxed ``ShapeDtypeStruct`` (logical axis names) and
  ``init_params(rng) -> params`` (unboxed), used to initialise straight into the sharded
  layout;
- ``stages() -> list[Stage]``: each with its loss, optimizer config (freezing by regex),
  number of steps and a data factory;
- ``evaluate(params, workdir) -> {"name": number}``;
- optionally ``init_from_rules``: ``[(target_regex, source_replacement)]`` for
  ``config.init_from`` (a converted checkpoint loaded partially).

Checkpoints are numbered by the *global* step (steps of all earlier stages + the step within
the current stage) and carry ``{"stage_index", "stage", "stage_step", "done", "data"}``; a
stage's last step is always saved (the stage boundary), so rerunning the same command after
an interruption continues at the right stage, step and batch. Numbers are reproducible: the
step rng is ``fold_in(seed, step)`` and the data iterator state is restored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from absl import logging

from vau_jax import sharding as shd
from vau_jax.train.checkpoint import Checkpointer, abstract_like, load_partial, resolve_start
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.step import (
    LossFn,
    create_train_state,
    make_train_step,
    raise_if_nonfinite,
    trainable_paths,
)
from vau_jax.train.writers import MetricWriter, Progress


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
      checkpoint_every: also save every this many steps (0: only at the stage end).
      log_every: metric-writing period in steps.
      on_start: optional ``params -> params`` applied when the stage starts fresh.
    """

    name: str
    num_steps: int
    optimizer: Mapping[str, Any]
    loss_fn: LossFn
    make_data: Callable[[], Any]
    grad_accum_steps: int = 1
    checkpoint_every: int = 0
    log_every: int = 10
    on_start: Callable[[Any], Any] | None = None


class Method(Protocol):
    name: str

    def abstract_params(self) -> Any: ...

    def init_params(self, rng: jax.Array) -> Any: ...

    def stages(self) -> Sequence[Stage]: ...

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]: ...


def host_scalar(x: Any) -> float:
    """A replicated (possibly multi-process) scalar -> Python float."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return float(np.asarray(x))


class Trainer:
    """Runs a method's stages on a mesh with checkpointing, logging and resumption."""

    def __init__(
        self, method: Method, config: Any, workdir: str, *, mesh: jax.sharding.Mesh | None = None
    ):
        self.method, self.config, self.workdir = method, config, workdir
        self.mesh = mesh or shd.mesh_from_config(config)
        self.rules = shd.rules_from_config(config)
        self.seed = int(config.get("seed", 0))
        self.ckpt = Checkpointer(
            os.path.join(workdir, "checkpoints"),
            max_to_keep=int(config.get("keep_checkpoints", 3)),
            async_save=bool(config.get("async_checkpointing", True)),
        )
        self.writer = MetricWriter(workdir)
        self.batch_sharding = shd.data_sharding(self.mesh)
        abstract = method.abstract_params()
        self.param_sharding = shd.param_shardings(abstract, self.mesh, self.rules)

    # -- state ---------------------------------------------------------------------------

    def _init_params(self) -> Any:
        rng = jax.random.key(self.seed)
        return jax.jit(self.method.init_params, out_shardings=self.param_sharding)(rng)

    def _state(self, params: Any, stage: Stage):
        optimizer = make_optimizer(stage.optimizer, params)
        state = jax.jit(lambda p: create_train_state(p, optimizer, self.seed))(params)
        state = state.replace(params=params)
        return optimizer, state

    def _start(self, stages: Sequence[Stage]) -> tuple[int, int, Any, tuple[Any, Any]]:
        """-> (stage index, step within it, params, (restored TrainState, data state) or Nones)."""
        start = resolve_start(self.workdir, self.config)
        params = self._init_params()
        if start.kind == "scratch":
            return 0, 0, params, (None, None)
        if start.kind == "init_from":
            from vau_jax.convert.checkpoint import load_converted

            _, source = load_converted(start.path)
            rules = getattr(self.method, "init_from_rules", None)
            if not rules:
                raise ValueError(
                    f"config.init_from={start.path!r} but {self.method.name} defines no init_from_rules"
                )
            host = jax.tree.map(np.asarray, params)
            new, loaded = load_partial(host, source, list(rules), source_name=start.path)
            logging.info("init_from %s: loaded %d tensors", start.path, len(loaded))
            return 0, 0, jax.device_put(new, self.param_sharding), (None, None)
        ckpt = self.ckpt if start.kind == "workdir" else Checkpointer(start.path)
        meta = ckpt.read_meta()
        k = int(meta["stage_index"])
        if k >= len(stages):
            raise ValueError(
                f"{start.path}: checkpoint stage {k} but the method has {len(stages)} stages"
            )
        _, abstract_state = self._state(params, stages[k])
        state, meta = ckpt.restore(abstract_like(abstract_state))
        logging.info(
            "resuming from %s: stage %s step %s", start.path, meta["stage"], meta["stage_step"]
        )
        if meta.get("done"):
            return k + 1, 0, state.params, (None, None)
        return k, int(meta["stage_step"]), state.params, (state, meta.get("data"))

    def restore_params(self) -> Any:
        """The params of the workdir's latest checkpoint (any stage), sharded."""
        stages = list(self.method.stages())
        meta = self.ckpt.read_meta()
        _, abstract_state = self._state(self._init_params(), stages[int(meta["stage_index"])])
        state, _ = self.ckpt.restore(abstract_like(abstract_state))
        return state.params

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
            optimizer, state = self._state(params, stage)
            if not fresh:
                state = restored
            state_sharding = jax.tree.map(lambda x: x.sharding, state)
            step_fn = make_train_step(
                stage.loss_fn,
                optimizer,
                grad_accum_steps=stage.grad_accum_steps,
                state_sharding=state_sharding,
            )
            paths = trainable_paths(state.params, optimizer)
            data = stage.make_data()
            if data_state is not None:
                data.set_state(_decode_data_state(data_state))
            start_step = s0 if not fresh else 0
            progress = Progress(
                stage.num_steps, desc=stage.name, initial=start_step, log_every=stage.log_every
            )
            for s in range(start_step, stage.num_steps):
                batch = _to_device(next(data), self.batch_sharding)
                state, metrics = step_fn(state, batch)
                if (
                    s + 1 == stage.num_steps
                    or (s + 1) % stage.log_every == 0
                    or not np.isfinite(host_scalar(metrics["loss"]))
                ):
                    host = {k_: host_scalar(v) for k_, v in metrics.items()}
                    raise_if_nonfinite(host, offset + s + 1, paths)
                    self.writer.write(
                        offset + s + 1, {k_: v for k_, v in host.items() if k_ != "nonfinite_leaf"}
                    )
                    progress.update(s + 1, host["loss"])
                last = s + 1 == stage.num_steps
                if last or (stage.checkpoint_every and (s + 1) % stage.checkpoint_every == 0):
                    meta = {
                        "stage_index": k,
                        "stage": stage.name,
                        "stage_step": s + 1,
                        "done": last,
                        "data": _encode_data_state(data.get_state()),
                    }
                    self.ckpt.save(offset + s + 1, state, meta, force=last)
            progress.close()
            params, restored, data_state, s0 = state.params, None, None, 0
            offset += stage.num_steps
        self.ckpt.wait()
        self.writer.flush()
        return params

    def close(self) -> None:
        self.ckpt.close()
        self.writer.close()


def _to_device(batch: Mapping[str, Any], sharding: jax.sharding.NamedSharding) -> dict[str, Any]:
    from vau_jax.data.pipeline import to_global

    shards = sharding.mesh.shape["data"] * sharding.mesh.shape["fsdp"] // jax.process_count()
    for key, value in batch.items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] % shards:
            raise ValueError(
                f"batch {key!r} has {value.shape[0]} examples per process, not divisible by the "
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
