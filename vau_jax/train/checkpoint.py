"""Training checkpoints with orbax ``CheckpointManager`` (async, keep-latest-N, atomic).

One checkpoint = ``state`` (params, optimizer state, step, rng: a ``TrainState``) + ``meta``
(JSON: stage name, step within the stage, the grain iterator state, anything small). Orbax
writes each step into a temporary folder and renames it when complete, so a process killed
mid-save leaves the previous checkpoint intact.

Every saved ``meta`` carries a fingerprint of the state (:func:`fingerprint`: per leaf, a
position-weighted sum of its bits modulo 2**32, exact in any reduction order), checked on
restore, so a checkpoint whose bytes changed after the write is caught even where the file
format has no checksum. :meth:`Checkpointer.restore_good` walks back from the newest step: a
step that cannot be read (a truncated, missing or garbled file, a fingerprint that does not
match) is reported in one warning naming it, moved aside to ``<dir>.bad/<step>``, and the
previous step is tried; when no readable step remains, :class:`CheckpointCorruptError` says
so (nothing is moved then, so rerunning never silently starts from scratch).

Where a run starts from (:func:`resolve_start`): the workdir's own latest checkpoint >
``config.resume`` (another run's checkpoint folder) > ``config.init_from`` (a converted
model, loaded partially by regex) > scratch.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vau_jax.tree import CheckpointMismatchError, flatten, unflatten


class CheckpointCorruptError(ValueError):
    """No step of a checkpoint folder can be read; the message names the folder and why."""


#: The meta key holding :func:`fingerprint` of the saved state.
FINGERPRINT_KEY = "fingerprint"


def _leaf_print(x: jax.Array) -> jax.Array:
    """uint32 []: the sum of the leaf's bits (as uint32 words) times odd position weights."""
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = jnp.dtype(x.dtype).itemsize
    if size == 8:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
    elif size == 4:
        words = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        words = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * size}")).astype(jnp.uint32)
    words = words.reshape(-1)
    weights = jnp.arange(words.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + 1
    return jnp.sum(words * weights, dtype=jnp.uint32)


@jax.jit
def _prints(leaves: list[jax.Array]) -> jax.Array:
    return jnp.stack([_leaf_print(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def fingerprint(tree: Any) -> list[int]:
    """One uint32 per array leaf of ``tree`` (a device->host read of ``[num_leaves]``).

    Integer sums wrap modulo 2**32, so the value does not depend on the sharding or the
    reduction order; a changed bit changes the leaf's value.
    """
    leaves = jax.tree.leaves(tree)
    groups: dict[Any, list[int]] = {}  # one jitted call per set of devices the leaves live on
    for i, x in enumerate(leaves):
        key = frozenset(x.sharding.device_set) if isinstance(x, jax.Array) else None
        groups.setdefault(key, []).append(i)
    out = [0] * len(leaves)
    for idx in groups.values():
        values = _prints([leaves[i] for i in idx])
        if isinstance(values, jax.Array) and not values.is_fully_addressable:
            values = values.addressable_data(0)
        for i, v in zip(idx, np.asarray(values)):
            out[i] = int(v)
    return out


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

    def step_dirs(self) -> list[int]:
        """Integer-named step folders on disk, finished or not (orbax's unfinished writes
        are named ``<step>.orbax-checkpoint-tmp-*`` and are not listed)."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

    def save(self, step: int, state: Any, meta: Mapping[str, Any], *, force: bool = False) -> bool:
        """Starts an (async) save of ``state`` + JSON ``meta`` (plus the state's
        :func:`fingerprint`) at ``step``."""
        meta = {**dict(meta), FINGERPRINT_KEY: fingerprint(state)}
        return self._mngr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=force,
        )

    def restore_good(self, abstract_for: Callable[[dict], Any]) -> tuple[int, Any, dict]:
        """The newest readable step: ``(step, state, meta)``.

        Args:
          abstract_for: ``meta -> abstract state`` (the layout depends on the stage).
        Raises:
          CheckpointCorruptError: no step can be read (every reason listed; nothing moved).
          CheckpointMismatchError: from ``abstract_for`` (the run's config changed).
        """
        known = set(self.all_steps())
        steps = sorted(known | set(self.step_dirs()), reverse=True)
        if not steps:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
        bad: list[tuple[int, str]] = []
        for step in steps:
            try:
                if step not in known:
                    raise ValueError("unfinished (no orbax commit metadata)")
                state, meta = self.restore(abstract_for(self.read_meta(step)), step)
            except CheckpointMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - any read failure means this step is bad
                reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
                bad.append((step, reason))
                continue
            if bad:
                self._set_aside(bad, step)
            return step, state, meta
        listed = "; ".join(f"step {s}: {r}" for s, r in bad)
        raise CheckpointCorruptError(
            f"{self.directory}: no readable checkpoint ({listed}); move the folder away to "
            "start this run from scratch"
        )

    def _set_aside(self, bad: list[tuple[int, str]], good: int) -> None:
        """Moves unreadable steps to ``<dir>.bad/`` (one warning each) so that new saves at
        those step numbers can be written."""
        aside = self.directory + ".bad"
        for step, reason in bad:
            logging.warning(
                "checkpoint step %d in %s is unreadable (%s); it is moved to %s and the run "
                "resumes from step %d",
                step,
                self.directory,
                reason,
                aside,
                good,
            )
            if jax.process_index() == 0:
                os.makedirs(aside, exist_ok=True)
                target = os.path.join(aside, str(step))
                k = 1
                while os.path.exists(target):
                    target, k = os.path.join(aside, f"{step}.{k}"), k + 1
                os.replace(os.path.join(self.directory, str(step)), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("vau_jax checkpoint set-aside")
        self._mngr.reload()

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON ``meta`` of a checkpoint (latest by default) without reading the state."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to read")
        out = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = dict(out["meta"])
        meta.pop(FINGERPRINT_KEY, None)
        return meta

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores ``(state, meta)`` onto ``abstract_state``'s shapes, dtypes and shardings.

        Raises:
          CheckpointCorruptError: the state read differs from the fingerprint saved with it.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no checkpoint to restore")
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        meta = dict(out["meta"])
        saved = meta.pop(FINGERPRINT_KEY, None)
        if saved is not None and fingerprint(out["state"]) != list(saved):
            raise CheckpointCorruptError(
                f"{self.directory}/{step}: the state read does not match the fingerprint saved "
                "with it"
            )
        return out["state"], meta

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
    if os.path.isdir(ckpt_dir):
        ckpt = Checkpointer(ckpt_dir)
        # Step folders orbax does not list (unreadable) count too: restore_good reports them
        # rather than this run silently starting from scratch.
        if ckpt.latest_step() is not None or ckpt.step_dirs():
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
