"""Where a run's wall time goes: exclusive per-phase clocks and the table a run ends with.

    with timing.phase("features"):
        ...                       # time here counts as "features"
        with timing.phase("render"):
            ...                   # ...except this, which counts as "render" only

Phases nest; each second of wall time counts once, for the innermost open phase (time with
no phase open counts as ``other``). Only the main thread's phases count: work a helper
thread does overlaps the main thread's, whose clock already runs. :func:`seconds` gives
``{"seconds_<phase>": s, ..., "seconds_total": s}`` for ``metrics.json`` (DESIGN §4 keeps
its values numbers) and :func:`table` the printed form.

The phase names of a main job are :data:`PHASES`; any other name is allowed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

PHASES = ("render", "tokenizer", "pretrain", "features", "train", "eval", "report")

_lock = threading.Lock()
_stack: list[list] = []  # [name, since] of the open phases, innermost last
_totals: dict[str, float] = {}
_t0 = time.perf_counter()


def reset() -> None:
    """Starts a new run's clocks (the total counts from here)."""
    global _t0
    with _lock:
        _stack.clear()
        _totals.clear()
        _fold.clear()
        _t0 = time.perf_counter()


_fold: list[tuple[str, tuple[str, ...]]] = []  # open within() blocks, innermost last


@contextlib.contextmanager
def within(name: str, keep: tuple[str, ...] = ("render",)) -> Iterator[None]:
    """Inside the block, phases other than ``keep`` count as ``name``: a pretraining run's
    own train / eval / features are all "pretrain", while its rendering stays "render"."""
    _fold.append((name, tuple(keep)))
    try:
        yield
    finally:
        _fold.pop()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Counts the wall time inside the block as ``name`` (minus nested phases)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _fold and name not in _fold[-1][1]:
        name = _fold[-1][0]
    with _lock:
        now = time.perf_counter()
        if _stack:
            outer = _stack[-1]
            _totals[outer[0]] = _totals.get(outer[0], 0.0) + now - outer[1]
        _stack.append([name, now])
    try:
        yield
    finally:
        with _lock:
            now = time.perf_counter()
            inner = _stack.pop()
            _totals[name] = _totals.get(name, 0.0) + now - inner[1]
            if _stack:
                _stack[-1][1] = now


def seconds() -> dict[str, float]:
    """``{"seconds_<phase>": s}`` for every phase that ran, ``seconds_other`` (no phase open)
    and ``seconds_total`` (since :func:`reset`), rounded to 0.1 s. Open phases count up to now."""
    with _lock:
        now = time.perf_counter()
        totals = dict(_totals)
        if _stack:
            top = _stack[-1]
            totals[top[0]] = totals.get(top[0], 0.0) + now - top[1]
        total = now - _t0
    out = {f"seconds_{k}": round(v, 1) for k, v in totals.items()}
    out["seconds_other"] = round(max(0.0, total - sum(totals.values())), 1)
    out["seconds_total"] = round(total, 1)
    return out


def table(secs: dict[str, float]) -> str:
    """The per-phase table a run prints at its end, from :func:`seconds`'s dict."""
    total = secs.get("seconds_total", 0.0) or 1e-9
    names = [k[len("seconds_") :] for k in secs if k != "seconds_total"]
    order = [p for p in PHASES if p in names] + sorted(set(names) - set(PHASES))
    lines = [f"{'phase':10s} {'seconds':>8s} {'share':>6s}"]
    for name in order:
        s = secs[f"seconds_{name}"]
        lines.append(f"{name:10s} {s:8.1f} {s / total:6.1%}")
    lines.append(f"{'total':10s} {total:8.1f} {1:6.0%}")
    return "\n".join(lines)
