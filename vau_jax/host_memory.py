"""glibc ``malloc`` settings that stop XLA:CPU from page-faulting its buffers on every call.

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
keeps up to 2 GiB of freed heap instead of returning it.

It must run before XLA starts its threads (arenas are per thread and made on first use), so
``vau_jax/__init__.py`` calls it when the package is imported: import ``vau_jax`` before the
first JAX computation. Only glibc has ``mallopt``; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

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
