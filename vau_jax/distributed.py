"""The one place that calls ``jax.distributed.initialize`` (multi-host / multi-process jobs).

Single-process runs (a laptop, one GPU, the tests) skip initialisation. Multi-process runs
are detected from the environment (TPU pods and SLURM are auto-detected by JAX) or given
explicitly through ``VAU_JAX_COORDINATOR``, ``VAU_JAX_NUM_PROCESSES``, ``VAU_JAX_PROCESS_ID``
(used by the local two-process tests on 127.0.0.1 with gloo CPU collectives).
"""

from __future__ import annotations

import os

import jax
from absl import logging

_initialized = False


def initialize() -> None:
    """Initialises the JAX distributed runtime once, when the environment asks for it."""
    global _initialized
    if _initialized:
        return
    coordinator = os.environ.get("VAU_JAX_COORDINATOR")
    if coordinator:
        # CPU cross-process collectives (only used by the CPU backend; harmless elsewhere).
        # Must not touch the backend before initialize(): no jax.devices() etc. here.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(os.environ["VAU_JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["VAU_JAX_PROCESS_ID"]),
        )
    elif any(
        k in os.environ
        for k in ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")
    ):
        jax.distributed.initialize()
    _initialized = True
    logging.info(
        "process %d/%d, %d local / %d global devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.default_backend(),
    )
