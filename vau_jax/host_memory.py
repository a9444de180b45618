"""glibc ``malloc`` settings for XLA:CPU's large per-call buffers: huge pages, and reuse.

Two independent settings:

* **Transparent huge pages** (on by default for our programs): :func:`exec_with_hugepages`.
* **Buffer reuse** (opt-in, ``VAU_JAX_MALLOC=reuse``): :func:`tune_allocator`, below.

Huge pages. XLA:CPU's buffers of a training step are one block per call (161 MB for a
tiny-CLIP step at batch 64), which glibc maps afresh with 4 KB pages: a pool thread's arena
cannot hold a block over 64 MB, so it is mapped whatever ``M_MMAP_MAX`` says, and faulted in
page by page on every call. On kernels whose transparent-huge-page mode is ``madvise`` (a
common default), glibc's tunable ``glibc.malloc.hugetlb=1`` (glibc 2.35+) asks for 2 MB pages
on its mappings, so each block takes a few dozen faults instead of ~40,000. Measured (AMD
EPYC, AVX-512, 2 CPUs): tiny-CLIP pretraining 7.15 -> 8.80 steps/s (kernel time 41 -> 12 s
over 500 steps), the text LLM's 1.85 -> 1.93 steps/s, small steps (TETG, stages) unchanged.
Glibc reads tunables only when a process starts, so :func:`exec_with_hugepages`, called first
by each ``python -m vau_jax.<program>``, restarts the program once (the same command line,
in place) with the tunable added to ``GLIBC_TUNABLES``. Only where the pages come from
changes, not the numbers (checked: both pretrainings' parameters bit for bit, every metric
of a VA-GPT main job). ``VAU_JAX_HUGEPAGES=0`` turns it off; it does
nothing when the tunable is already set, off Linux / glibc, below glibc 2.35, or when the
kernel's mode is ``always`` (huge already) or ``never``.

Buffer reuse:

XLA:CPU allocates each executable's temporary and output buffers afresh on every call and
frees them afterwards. With glibc's defaults, blocks over the mmap threshold (at most 32 MB)
are ``mmap``-ed and unmapped again, free memory at the top of a heap is handed back to the
kernel, and every thread of XLA's pool allocates from an arena of its own. So the same
buffers are faulted in page by page on every call: one tiny-CLIP training step (batch 64)
took 40,600 minor page faults, about 160 MB of freshly zeroed pages, and a step of 150 ms
spent a large part of it in the kernel.

:func:`tune_allocator` sets, through ``mallopt``:

* ``M_ARENA_MAX = 1``: one arena, so freed buffers are reused by whichever thread asks next;
* ``M_MMAP_MAX = 0``: large blocks come from the heap, not from fresh mappings;
* ``M_TRIM_THRESHOLD = 2 GiB - 1``: up to 2 GiB of free heap stays mapped between calls.

Measured on the 2-core AMD EPYC (AVX2), the two settings alternated: the tiny-CLIP training
step (batch 64) 208 / 227 -> 169 / 147 ms, with 40,600 -> 400-2,000 faults per step; one tiny
ViT block's gradient 36.8 -> 20.5 ms. But VAD-LLaMA's phases 1-2 (the main job on cached
features) took 48.7 / 49.5 s with glibc's defaults and 66.5 / 51.4 s with these settings,
and a whole VAD-LLaMA main job from an empty data dir 430 s against 415 s: one arena makes
the input pipeline's threads wait on each other. So it is **opt-in**: ``VAU_JAX_MALLOC=reuse``
in the environment of a process whose time goes to large jitted steps. The process then
keeps up to 2 GiB of freed heap instead of returning it. Those measurements predate the huge
pages above; with them on, reuse slowed the large steps as well (tiny-CLIP pretraining 8.80
-> 8.08 steps/s, the text LLM's 1.87 -> 1.68), so leave it unset unless huge pages are off.

It must run before XLA starts its threads (arenas are per thread and made on first use), so
``vau_jax/__init__.py`` calls it when the package is imported: import ``vau_jax`` before the
first JAX computation. Only glibc has ``mallopt``; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

#: Huge pages for glibc's large blocks (added to ``GLIBC_TUNABLES``).
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
#: ``0`` / ``off`` / ``no`` / ``false`` here: do not restart with huge pages.
HUGEPAGE_ENV = "VAU_JAX_HUGEPAGES"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"

#: Free heap kept mapped between calls (``mallopt`` takes a C int).
TRIM_THRESHOLD = 2**31 - 1

ENV = "VAU_JAX_MALLOC"

_applied: dict[str, int] | None = None


def tune_allocator() -> dict[str, int]:
    """Applies the settings of the module docstring once per process.

    Returns the settings applied, ``{}`` when skipped: ``VAU_JAX_MALLOC`` is not ``reuse``,
    not Linux, or a C library without ``mallopt`` (musl). Settings the C library refuses are
    left out of the result.
    """
    global _applied
    if _applied is not None:
        return dict(_applied)
    _applied = {}
    if os.environ.get(ENV, "").strip().lower() != "reuse" or not sys.platform.startswith("linux"):
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    for name, param, value in (
        ("M_ARENA_MAX", M_ARENA_MAX, 1),
        ("M_MMAP_MAX", M_MMAP_MAX, 0),
        ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    ):
        if mallopt(param, value) == 1:  # mallopt returns 1 on success
            _applied[name] = value
    return dict(_applied)


def thp_mode(path: str = THP_MODE_FILE) -> str:
    """The kernel's transparent-huge-page mode (``always`` / ``madvise`` / ``never``), ``""``
    when unknown (no such file: not Linux, or a kernel without THP)."""
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else ""


def glibc_version() -> tuple[int, int] | None:
    """``(major, minor)`` of the running glibc, None for another C library or platform."""
    try:
        name = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):
        return None
    parts = name.split()
    if len(parts) != 2 or parts[0] != "glibc":
        return None
    try:
        major, minor = (int(x) for x in parts[1].split(".")[:2])
    except ValueError:
        return None
    return major, minor


def hugepage_environ(
    environ: Mapping[str, str], libc: tuple[int, int] | None, thp: str
) -> dict[str, str] | None:
    """The environment to restart with for huge pages, or None when there is nothing to do
    (the conditions of the module docstring). Pure: ``environ`` is not modified."""
    if environ.get(HUGEPAGE_ENV, "").strip().lower() in ("0", "off", "no", "false"):
        return None
    if libc is None or libc < (2, 35) or thp != "madvise":
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:  # set already (by us or the user): keep it
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{HUGEPAGE_TUNABLE}" if tunables else HUGEPAGE_TUNABLE
    return env


def started_as(program: str, orig_argv: list[str]) -> bool:
    """Whether the command line ``orig_argv`` ran ``program``: ``python -m <program>`` for a
    module name, ``python <program>`` for a script path (the same file). Only then is
    restarting the command line the same program, not e.g. pytest running it with ``runpy``."""
    i = 1
    while i < len(orig_argv):
        arg = orig_argv[i]
        if arg == "-m":
            return i + 1 < len(orig_argv) and orig_argv[i + 1] == program
        if arg == f"-m{program}":
            return True
        if arg == "--" or arg.startswith("-c"):
            return False  # a command string, or the end of the interpreter's options
        if not arg.startswith("-"):  # the script
            return program.endswith(".py") and os.path.realpath(arg) == os.path.realpath(program)
        i += 2 if arg in ("-X", "-W") else 1  # the options that take a separate value
    return False


def exec_with_hugepages(program: str) -> None:
    """Restarts this program (``sys.orig_argv``: the same command line and process id) with
    glibc's huge-page tunable when :func:`hugepage_environ` says so; otherwise returns.

    ``program``: the module name of a ``python -m`` program, or the path of a script
    (``__file__``). Call it first thing in that program's ``__main__`` block; when the
    command line did not start ``program`` (:func:`started_as`: e.g. ``runpy`` inside
    pytest), nothing happens."""
    if not sys.executable or not started_as(program, sys.orig_argv):
        return
    env = hugepage_environ(os.environ, glibc_version(), thp_mode())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:  # could not restart: run on without huge pages
        return
