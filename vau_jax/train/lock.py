"""One run per folder: an advisory ``flock`` on ``<workdir>/.lock``.

A second job started on a folder another job is using would interleave checkpoints and
metrics; :func:`workdir_lock` makes it refuse (:class:`WorkdirBusyError`, naming the holder)
or, for shared caches (``wait=True``: a pretraining another job is already running), wait
for the first to finish. The lock belongs to the open file, so a killed process (SIGKILL
included) releases it at once and a stale ``.lock`` file never blocks a rerun. Locks are
re-entrant within a process (a run that trains nested runs in the same folder), and only
process 0 of a multi-process job takes them (its peers share the folder by design).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
from collections.abc import Iterator

import jax
from absl import logging

LOCK_NAME = ".lock"

#: realpath of a locked folder -> [file descriptor, depth] (this process's locks).
_HELD: dict[str, list[int]] = {}


class WorkdirBusyError(ValueError):
    """Another process holds the folder's lock; the message names the folder and holder."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    return text or "an unknown process"


def check_free(workdir: str) -> None:
    """Raises :class:`WorkdirBusyError` now if another process holds ``workdir``'s lock
    (creates nothing: for a refusal before expensive preparation)."""
    path = os.path.join(workdir, LOCK_NAME)
    if jax.process_index() != 0 or os.path.realpath(workdir) in _HELD or not os.path.isfile(path):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusyError(
                f"{workdir}: another run is using this folder ({_holder(fd)}); wait for it to "
                "finish or choose another --workdir"
            ) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def workdir_lock(workdir: str, *, wait: bool = False) -> Iterator[None]:
    """Holds ``<workdir>/.lock`` (creating the folder) for the ``with`` block.

    Args:
      workdir: the run folder.
      wait: block until the holder finishes instead of raising.
    Raises:
      WorkdirBusyError: the folder is locked by another process and ``wait`` is false.
    """
    if jax.process_index() != 0:
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    key = os.path.realpath(workdir)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(os.path.join(workdir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise WorkdirBusyError(
                    f"{workdir}: another run is using this folder ({holder}); wait for it to "
                    "finish or choose another --workdir"
                ) from None
            logging.info("%s: waiting for %s to finish", workdir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}\n".encode())
        _HELD[key] = [fd, 1]
        try:
            yield
        finally:
            del _HELD[key]
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
