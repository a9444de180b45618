"""Render SynthVAD videos in worker processes, in order: the tfds builder, the dataset layouts
and the caption corpus all map a function over a split's videos with :func:`map_videos`.

Kept apart from :mod:`vau_jax.data.synthvad.builder` (which imports tensorflow-datasets) so
that the layout writer and its ``spawn``-ed workers import only the renderer.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from vau_jax import timing
from vau_jax.data.synthvad.types import SynthConfig

__all__ = ["map_in_order", "map_videos", "render_workers"]

T = TypeVar("T")


def render_workers(num_videos: int) -> int:
    """Processes that render a split: ``VAU_JAX_RENDER_WORKERS`` when set, else one per CPU
    (at most 8); 1 (no pool) for fewer than 16 videos, where starting workers costs more."""
    env = os.environ.get("VAU_JAX_RENDER_WORKERS", "")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"VAU_JAX_RENDER_WORKERS={env!r}: expected a positive integer")
        return int(env)
    return 1 if num_videos < 16 else max(1, min(os.cpu_count() or 1, 8))


def map_in_order(
    fn: Callable[..., T],
    calls: Iterable[tuple[Any, ...]],
    workers: int,
    phase: str | None = "render",
) -> Iterator[T]:
    """``fn(*args)`` for each ``args`` of ``calls``, yielded in order.

    With ``workers`` > 1 the calls run in that many ``spawn``-ed processes (never ``fork``:
    the parent may already run JAX's threads), at most ``2 * workers`` ahead of the consumer,
    whose waits count as the timing phase ``phase`` (``None``: the phase open around it);
    ``fn`` and the arguments must then pickle (a module-level function, or a method of a
    picklable object). ``fn`` must be a pure function of its arguments for the results to
    be the same either way.
    """
    if workers <= 1:
        for args in calls:
            yield fn(*args)
        return
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        ahead: collections.deque = collections.deque()

        def oldest() -> T:
            if phase is None:
                return ahead.popleft().result()
            with timing.phase(phase):  # the consumer waits on the workers
                return ahead.popleft().result()

        for args in calls:
            ahead.append(pool.submit(fn, *args))
            if len(ahead) >= 2 * workers:
                yield oldest()
        while ahead:
            yield oldest()


def map_videos(
    fn: Callable[[str, int, SynthConfig], T],
    split: str,
    num_videos: int,
    config: SynthConfig,
    workers: int | None = None,
) -> Iterator[T]:
    """``fn(split, i, config)`` for videos ``i = 0 .. num_videos-1`` of ``split``, in order.

    ``fn`` renders video ``i`` (pure Python + numpy: no GIL release worth threading) and
    returns what the caller keeps of it: a tfds example, a corpus' sentences. With ``workers``
    > 1 (default :func:`render_workers`) the calls run in that many processes
    (:func:`map_in_order`); ``fn`` must then be a module-level function. The results are
    identical either way: each video depends on its seed only.
    """
    workers = render_workers(num_videos) if workers is None else int(workers)
    return map_in_order(fn, ((split, i, config) for i in range(num_videos)), workers)
