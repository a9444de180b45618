"""Fault injection for the kill-anywhere tests: SIGKILL this process at a named point.

``VAU_JAX_KILL_AT=<point>:<n>`` makes the ``n``-th pass (1-based) through :func:`kill_point`
``point`` kill the process with SIGKILL, as a power cut or the OOM killer would: no Python
cleanup, no ``finally``, no flush. Unset (always, outside tests), a pass costs one dict
lookup. The points:

- ``render``: after each SynthVAD video is rendered, while the tfds split is being written;
- ``features``: after each video's features are written to the store's ``parts/``, and once
  between writing a shard and rewriting the index;
- ``step``: right after a train step is dispatched (the step is still computing);
- ``checkpoint``: right after an (async) checkpoint save is started (the write in flight);
- ``stage_boundary``: after a stage's last step and save, before the next stage starts.
"""

from __future__ import annotations

import os
import signal

POINTS = ("render", "features", "step", "checkpoint", "stage_boundary")
ENV = "VAU_JAX_KILL_AT"

_passes: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    point, _, n = spec.partition(":")
    if point not in POINTS or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{ENV}={spec!r}: expected <point>:<n> with point in {POINTS}, n >= 1")
    return point, int(n)


def kill_point(point: str) -> None:
    """Counts a pass through ``point``; SIGKILLs the process on the pass ``$VAU_JAX_KILL_AT``
    names."""
    target = _target()
    if target is None or target[0] != point:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
