"""vau_jax: video anomaly understanding (VA-GPT, VAD-LLaMA, T-VAU) in JAX/Flax."""

__version__ = "0.1.0"
