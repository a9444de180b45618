"""Counting XLA compilations in a test (a jitted function rebuilt per call compiles again).

The test session keeps a persistent compilation cache (tests/conftest.py). JAX times a load
from it under the same event as a compilation, so a load is counted too: either way the
in-memory jit cache missed (tests/test_compiles.py checks this)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def xla_compiles() -> Iterator[list[float]]:
    """Yields a list that receives the duration (seconds) of every XLA compilation in the
    block: ``with xla_compiles() as c: f(x)`` then ``assert c == []``."""
    from jax import monitoring

    seen: list[float] = []

    def listen(event: str, secs: float, **kw: object) -> None:
        if event == _EVENT:
            seen.append(secs)

    monitoring.register_event_duration_secs_listener(listen)
    try:
        yield seen
    finally:
        monitoring.unregister_event_duration_listener(listen)
