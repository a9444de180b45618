"""vau_jax: video anomaly understanding (VA-GPT, VAD-LLaMA, T-VAU) in JAX/Flax.

``vau_jax.load_run(DIR)`` restores a finished run for prediction
(:mod:`vau_jax.inference`).
"""

from typing import Any

__version__ = "0.1.0"


def load_run(workdir: str, config: Any = None) -> Any:
    """A finished run folder -> a :class:`vau_jax.inference.Run` with
    ``predict(frames [T, H, W, 3] uint8, fps, state=None) -> (timeline, state)``."""
    from vau_jax.inference import load_run as _load_run

    return _load_run(workdir, config)
