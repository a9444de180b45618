"""Training checkpoints with orbax ``CheckpointManager`` (async, keep-latest-N, atomic).

One checkpoint = ``state`` (params, optimizer state, step, rng: a ``TrainState``) + ``meta``
(JSON: stage name, step within the stage, the grain iterator state, anything small). Orbax
writes each step into a temporary folder and renames it when complete, so a process killed
mid-save leaves the previous checkpoint intact.

Where a run starts from (:func:`resolve_start`): the workdir's own latest checkpoint >
``config.resume`` (another run's checkpoint folder) > ``config.init_from`` (a converted
model, loaded partially by regex) > scratch.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vau_jax.tree import CheckpointMismatchError, flatten, unflatten


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for ``(TrainState, meta)`` pairs."""

    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
            ),
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, meta: Mapping[str, Any], *, force: bool = False) -> bool:
        """Starts an (async) save of ``state`` + JSON ``meta`` at ``step``."""
        return self._mngr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
            ),
            force=force,
        )

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON ``meta`` of a checkpoint (latest by default) without reading the state."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to read")
        out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores ``(state, meta)`` onto ``abstract_state``'s shapes, dtypes and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], dict(out["meta"])

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` (with sharding) for every array leaf of ``tree``."""

    def one(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)

    return jax.tree.map(one, tree)


@dataclasses.dataclass(frozen=True)
class StartPoint:
    """Where training starts: ``kind`` in {"workdir", "resume", "init_from", "scratch"}."""

    kind: str
    path: str | None = None


def resolve_start(workdir: str, config: Any) -> StartPoint:
    """Resume order: workdir checkpoint > ``config.resume`` > ``config.init_from`` > scratch."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.isdir(ckpt_dir) and Checkpointer(ckpt_dir).latest_step() is not None:
        return StartPoint("workdir", ckpt_dir)
    resume = config.get("resume", None) if hasattr(config, "get") else None
    if resume:
        if not os.path.isdir(resume):
            raise FileNotFoundError(f"config.resume={resume!r}: no such checkpoint folder")
        return StartPoint("resume", resume)
    init_from = config.get("init_from", None) if hasattr(config, "get") else None
    if init_from:
        return StartPoint("init_from", init_from)
    return StartPoint("scratch")


def load_partial(
    params: Any,
    source: Mapping[str, Any],
    rules: list[tuple[str, str]],
    *,
    source_name: str = "init_from",
) -> tuple[Any, list[str]]:
    """Overwrites parts of ``params`` with tensors from ``source`` selected by regex.

    Args:
      params: the freshly initialised param tree (nested dict).
      source: nested dict of arrays (e.g. a converted checkpoint's params).
      rules: ``[(target_regex, replacement)]``: a target path matching ``target_regex`` takes
        the source path ``re.sub(target_regex, replacement, path)`` — e.g.
        ``(r"^img/(.*)", r"vision_model/\\1")``. Target paths matching no rule keep their init.
    Returns:
      the new tree and the list of loaded target paths.
    Raises:
      CheckpointMismatchError: a rule names a missing source key or a tensor of another shape
        (both shapes given); a rule that loads nothing at all is an error too.
    """
    flat_p = flatten(params)
    flat_s = flatten(source)
    loaded: list[str] = []
    problems: list[str] = []
    compiled = [(re.compile(t), r) for t, r in rules]
    for path, value in flat_p.items():
        for pat, repl in compiled:
            if pat.search(path):
                src = pat.sub(repl, path)
                if src not in flat_s:
                    problems.append(f"{path}: source key {src!r} missing")
                elif tuple(np.shape(flat_s[src])) != tuple(np.shape(value)):
                    problems.append(
                        f"{path}: model expects {tuple(np.shape(value))}, {src!r} has {tuple(np.shape(flat_s[src]))}"
                    )
                else:
                    flat_p[path] = np.asarray(flat_s[src], dtype=np.asarray(value).dtype)
                    loaded.append(path)
                break
    for pat, _ in compiled:
        if not any(pat.search(p) for p in flat_p):
            problems.append(f"rule {pat.pattern!r} matches no model parameter")
    if problems:
        raise CheckpointMismatchError(f"{source_name}: " + "\n  ".join(problems[:20]))
    return unflatten(flat_p), loaded
