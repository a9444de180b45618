"""Where a stream's bytes come from, and how they become windows of frames.

A stream is a file still being written (a recorder appending MPEG-TS or Matroska), or
standard input (``--video=-``, e.g. ``ffmpeg ... -f mpegts - | python -m vau_jax.explain
--stream ...``). A plain ``.mp4`` cannot be followed: its index is written when it is
closed. :class:`GrowingFile` reads a file the way ``tail -f`` does: at its current end it
waits for more bytes and calls the stream finished once the file has not grown for
``idle_seconds``. :func:`iter_windows` decodes either source with PyAV
(:func:`vau_jax.data.video.iter_frames` on a file object) at the run's frame rate and size
and hands out one window of frames at a time, as soon as the window is complete.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np

from vau_jax.data.video import VideoDecodeError, iter_frames

#: Containers a growing file may use (by extension); an mp4 is refused with a reason.
FOLLOWABLE = (".ts", ".m2ts", ".mts", ".mkv", ".webm")


class GrowingFile(io.RawIOBase):
    """A read-only view of a file another process is appending to (``tail -f``).

    ``read`` returns what is there; at the end of the file it polls every ``poll_seconds``
    until more bytes arrive, and once the file has not grown for ``idle_seconds`` it
    reports the end of the stream (and keeps reporting it).

    Attributes:
      waited_seconds: total time spent waiting for the writer (wall clock).
    """

    def __init__(
        self,
        path: str,
        idle_seconds: float = 10.0,
        poll_seconds: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__()
        if not os.path.isfile(path):
            raise VideoDecodeError(f"{path}: no such file")
        self.name = path
        self._f = open(path, "rb")  # noqa: SIM115 (closed with the stream)
        self.idle_seconds = float(idle_seconds)
        self.poll_seconds = float(poll_seconds)
        self._clock, self._sleep = clock, sleep
        self._ended = False
        self.waited_seconds = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._ended:
            return 0
        start = self._clock()
        while True:
            n = self._f.readinto(buffer)
            if n:
                self.waited_seconds += self._clock() - start
                return n
            if self._clock() - start >= self.idle_seconds:
                self._ended = True
                self.waited_seconds += self._clock() - start
                return 0
            self._sleep(self.poll_seconds)

    def close(self) -> None:
        self._f.close()
        super().close()


class PipeReader(io.RawIOBase):
    """A read-only, non-seekable view of a binary pipe (standard input)."""

    def __init__(self, pipe: BinaryIO, name: str = "<stdin>"):
        super().__init__()
        self._pipe, self.name = pipe, name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._pipe.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_source(video: str, idle_seconds: float = 10.0) -> tuple[str, io.RawIOBase]:
    """``(name, file object)`` of a stream: ``"-"`` is standard input, anything else a
    file that may still be growing (:data:`FOLLOWABLE` containers only)."""
    if video == "-":
        return "<stdin>", PipeReader(sys.stdin.buffer)
    ext = os.path.splitext(video)[1].lower()
    if ext not in FOLLOWABLE:
        raise VideoDecodeError(
            f"{video}: a stream must be MPEG-TS or Matroska ({', '.join(FOLLOWABLE)}); an mp4 "
            "cannot be read before it is closed (use explain without --stream for a "
            "finished file)"
        )
    return video, GrowingFile(video, idle_seconds=idle_seconds)


@dataclasses.dataclass(frozen=True)
class Window:
    """Consecutive frames of a stream.

    Attributes:
      index: 0-based window number.
      frames: uint8 ``[n, size, size, 3]`` at ``fps`` (``n`` = the window's frame count;
        only the last window may be shorter).
      start_s: stream time of the first frame (seconds since the stream's first frame).
      fps: frame rate of ``frames``.
    """

    index: int
    frames: np.ndarray
    start_s: float
    fps: float

    @property
    def end_s(self) -> float:
        """Stream time just after the last frame: when the window is complete."""
        return self.start_s + len(self.frames) / self.fps


def iter_windows(
    name: str, fileobj: BinaryIO, fps: float, size: int, window_seconds: float
) -> Iterator[Window]:
    """Decodes a stream into :class:`Window` s of ``round(window_seconds * fps)`` frames
    (at least one), resampled to ``fps`` (sample-and-hold) and centre-cropped to ``size``.

    Raises :class:`~vau_jax.data.video.VideoDecodeError` naming ``name`` when the bytes are
    not a video or decoding fails.
    """
    per = max(1, int(round(float(window_seconds) * float(fps))))
    chunks = iter_frames(
        name, fps=fps, size=size, resize="crop", chunk_size=per, check_length=False, fileobj=fileobj
    )
    for k, chunk in enumerate(chunks):
        yield Window(k, chunk.frames, float(chunk.timestamps[0]), float(fps))
