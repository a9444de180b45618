"""The finished runs a server offers: checked at start-up (cheap), restored on first use.

:func:`check_run` reads only a run's ``config.json`` and lists its checkpoint folder, so a
folder that is not a finished run of a predicting method is a one-line error before the
server listens. :class:`RunPool` names the runs (the folder's name; the parent is added
when two share one) and restores each with :func:`vau_jax.load_run` the first time it is
used, under the run's lock: one request at a time uses a restored run (its jitted functions
and ``method.last_prediction`` are shared), requests to different runs run side by side.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import Any

from vau_jax.inference import CHAT_METHODS, Run, RunError, load_config


def check_run(workdir: str) -> Any:
    """The config of the finished run in ``workdir``.

    Raises:
      RunError: no such folder, no ``config.json``, a method without prediction, no
        checkpoint, or the run's ``data_dir`` (frozen encoders, tokenizer) is not reachable
        from the current folder. The message starts with the path.
    """
    from vau_jax import methods

    config = load_config(workdir)
    name = str(config.get("method", ""))
    if name not in methods.PREDICTORS:
        raise RunError(
            f"{workdir}: a {name!r} run; the web app serves {list(methods.PREDICTORS)} runs"
        )
    ckpts = os.path.join(workdir, "checkpoints")
    steps = [n for n in os.listdir(ckpts) if n.isdigit()] if os.path.isdir(ckpts) else []
    if not steps:
        raise RunError(f"{ckpts}: no checkpoint; not a finished run (train it first)")
    data_dir = str(config.get("data_dir", "") or "")
    if data_dir and not os.path.isdir(data_dir):
        raise RunError(
            f"{workdir}: its data_dir {data_dir!r} is not here; start the server from the "
            "folder the run was started in"
        )
    return config


def run_names(workdirs: Sequence[str]) -> list[str]:
    """One name per run folder: its base name, ``parent/name`` where two share it."""
    bases = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
    names = []
    for w, b in zip(workdirs, bases):
        if bases.count(b) > 1:
            parent = os.path.basename(os.path.dirname(os.path.abspath(w)))
            b = f"{parent}/{b}"
        names.append(b)
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RunError(f"{dup}: the same run folder is given twice")
    return names


@dataclasses.dataclass
class RunEntry:
    """One offered run.

    Attributes:
      name: its name in the API (``run`` field).
      workdir: the run folder (absolute).
      method: the method's registry name.
      config: its config (as read at start-up).
      lock: held while the run is restored or used.
    """

    name: str
    workdir: str
    method: str
    config: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    _run: Run | None = None

    @property
    def can_chat(self) -> bool:
        """Whether follow-up questions can be answered (a language model predicts)."""
        return self.method in CHAT_METHODS

    def chat_note(self) -> str:
        """Why follow-up questions cannot be asked (``""`` when they can)."""
        if self.can_chat:
            return ""
        phase3 = self.config.get("phase3", None)
        why = (
            "its phase-3 LLM is not part of prediction"
            if phase3 is not None and phase3.get("enabled", False)
            else "phases 1-2 only"
        )
        return (
            f"run {self.name}: a {self.method} run predicts with its anomaly scorer only, "
            f"no language model to ask ({why})"
        )

    def restored(self) -> Run:
        """The restored run (loaded on the first call; call it holding :attr:`lock`)."""
        if self._run is None:
            import vau_jax

            self._run = vau_jax.load_run(self.workdir)
        return self._run

    def describe(self) -> dict[str, str]:
        """``{"name", "method", "workdir"}`` of ``GET /api/runs``."""
        return {"name": self.name, "method": self.method, "workdir": self.workdir}


class RunPool:
    """The offered runs by name (see the module docstring)."""

    def __init__(self, workdirs: Sequence[str]):
        if not workdirs:
            raise RunError("no run folder given; pass --workdir=DIR (one or more)")
        configs = [check_run(w) for w in workdirs]
        self.entries = {
            n: RunEntry(n, os.path.abspath(w), str(c.method), c)
            for n, w, c in zip(run_names(workdirs), workdirs, configs)
        }

    def get(self, name: str) -> RunEntry:
        """The run called ``name``; ``KeyError`` with a message listing the runs."""
        if name not in self.entries:
            raise KeyError(f"unknown run {name!r}; runs: {sorted(self.entries)}")
        return self.entries[name]

    def listing(self) -> list[dict[str, str]]:
        """Every run's :meth:`RunEntry.describe`, in the order given."""
        return [e.describe() for e in self.entries.values()]
