"""vau_jax: video anomaly understanding (VA-GPT, VAD-LLaMA, T-VAU) in JAX/Flax.

``vau_jax.load_run(DIR)`` restores a finished run for prediction
(:mod:`vau_jax.inference`).
"""

from typing import Any

from vau_jax.host_memory import tune_allocator as _tune_allocator

__version__ = "0.1.0"

# Before XLA starts its threads, and only with VAU_JAX_MALLOC=reuse: glibc malloc settings
# that keep XLA:CPU's per-call buffers mapped instead of page-faulting them in on every call
# (vau_jax.host_memory).
_tune_allocator()


def load_run(workdir: str, config: Any = None) -> Any:
    """A finished run folder -> a :class:`vau_jax.inference.Run` with
    ``predict(frames [T, H, W, 3] uint8, fps, state=None) -> (timeline, state)``."""
    from vau_jax.inference import load_run as _load_run

    return _load_run(workdir, config)
