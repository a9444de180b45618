"""What the server keeps between requests: explained videos (sessions) and running jobs.

A :class:`Session` is one explained video: its decoded frames (uint8 ``[T, H, W, 3]`` at
the run's frame rate and size), the prediction's timeline, the frozen-encoder features the
prediction computed (``context``: what a rebuilt follow-up reuses, so no frame is decoded
or encoded again), the LLM's KV cache of the conversation (``chat``: a follow-up continues
it, :mod:`vau_jax.eval.chat_cache`) and the conversation so far. :class:`SessionStore` keeps
the newest ``capacity`` sessions (least recently used dropped first) and the KV caches of the
newest ``max_chat_caches`` of them: an older session's cache is freed, and its next question
rebuilds the prompt from ``context`` and starts a new cache. So the caches take at most
``max_chat_caches`` times one cache's bytes (:func:`vau_jax.eval.chat_cache.cache_bytes`:
2.2 MB on the tiny VA-GPT, 2.1 GiB float32 on Vicuna-7B) on the run's device, beside
``capacity`` sessions of frames and features in host memory. A :class:`Job` is one explain
request running in a worker thread; the page polls its :meth:`Job.snapshot`.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np


def new_id() -> str:
    """An unguessable id (sessions and jobs are addressed by it)."""
    return secrets.token_urlsafe(12)


@dataclasses.dataclass
class Session:
    """One explained video (module docstring).

    Attributes:
      run: the run's name.
      frames: uint8 ``[T, H, W, 3]`` as decoded for the run.
      fps: their frame rate.
      timeline: the ``timeline.json`` record of the prediction.
      context: ``method.last_prediction`` of the prediction (frozen-encoder features).
      turns: the conversation so far (``[{"from": "human"|"gpt", "value"}, ...]``).
      sheet: the frames as one JPEG sprite sheet (the page's player), ``cols`` per row.
      chat: the :class:`~vau_jax.eval.chat_cache.ChatState` (``method.last_chat`` of the
        prediction; ``None`` for a run without a language model).
    """

    run: str
    frames: np.ndarray
    fps: float
    timeline: dict[str, Any]
    context: Any
    turns: list[dict[str, str]]
    sheet: bytes = b""
    cols: int = 1
    chat: Any = None
    id: str = dataclasses.field(default_factory=new_id)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class SessionStore:
    """The newest ``capacity`` sessions by id (thread-safe, least recently used dropped),
    the KV caches of the newest ``max_chat_caches`` of them (module docstring)."""

    def __init__(self, capacity: int = 16, max_chat_caches: int = 4):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if max_chat_caches < 0:
            raise ValueError(f"max_chat_caches must be >= 0, got {max_chat_caches}")
        self.capacity = int(capacity)
        self.max_chat_caches = int(max_chat_caches)
        self._items: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: Session) -> str:
        """Adds ``session``; returns its id."""
        with self._lock:
            self._items[session.id] = session
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            self._bound_caches()
        return session.id

    def get(self, sid: str) -> Session | None:
        """The session ``sid`` (now the most recently used), or ``None``."""
        with self._lock:
            s = self._items.get(sid)
            if s is not None:
                self._items.move_to_end(sid)
                self._bound_caches()
            return s

    def _bound_caches(self) -> None:
        """Frees the KV caches of all but the newest ``max_chat_caches`` sessions (the newest
        counts even without one: its next question may start one). A session answering a
        question now (its lock held) keeps its cache until the next call."""
        for k, s in enumerate(reversed(self._items.values())):
            if k < self.max_chat_caches or s.chat is None or s.chat.cache is None:
                continue
            if s.lock.acquire(blocking=False):
                try:
                    s.chat.drop()
                finally:
                    s.lock.release()

    def cached_chats(self) -> int:
        """How many sessions hold a KV cache now."""
        with self._lock:
            return sum(
                1 for s in self._items.values() if s.chat is not None and s.chat.cache is not None
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class JobFailed(Exception):
    """A request that cannot be served: an HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = int(status), str(message)


@dataclasses.dataclass
class Job:
    """One explain request in a worker thread.

    Attributes:
      run: the run's name.
      stage: what it does now (``queued``, ``waiting for the run``, ``loading the run``,
        ``decoding the video``, ``scoring``, ``done``, ``error``).
      progress: a rough fraction done, 0..1 (by stage).
      future: the worker's future (result: the response; exception: :class:`JobFailed`).
    """

    run: str
    stage: str = "queued"
    progress: float = 0.0
    started: float = dataclasses.field(default_factory=time.monotonic)
    future: Future | None = None
    id: str = dataclasses.field(default_factory=new_id)

    def advance(self, stage: str, progress: float) -> None:
        """Moves to ``stage`` at ``progress``."""
        self.stage, self.progress = stage, float(progress)

    def snapshot(self) -> dict[str, Any]:
        """``GET /api/jobs/<id>``: ``job``, ``state`` (running / done / error), ``stage``,
        ``progress``, ``elapsed_s``, then ``result`` (done) or ``status`` + ``error``."""
        out: dict[str, Any] = {
            "job": self.id,
            "run": self.run,
            "state": "running",
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }
        if self.future is not None and self.future.done():
            err = self.future.exception()
            if err is None:
                out.update(state="done", stage="done", progress=1.0, result=self.future.result())
            else:
                failed = err if isinstance(err, JobFailed) else JobFailed(500, f"{err!r}")
                out.update(state="error", stage="error", status=failed.status, error=failed.message)
        return out


class JobStore:
    """The newest ``capacity`` jobs by id (thread-safe)."""

    def __init__(self, capacity: int = 64):
        self.capacity = int(capacity)
        self._items: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, job: Job) -> str:
        """Adds ``job``; returns its id."""
        with self._lock:
            self._items[job.id] = job
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return job.id

    def get(self, jid: str) -> Job | None:
        """The job ``jid`` or ``None``."""
        with self._lock:
            return self._items.get(jid)
