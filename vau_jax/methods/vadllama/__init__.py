"""VAD-LLaMA: the VADor (video Q-Former + anomaly predictor + Long-Term Context), trained
weakly (video-level labels), and phase 3's adaptor into a frozen LLM.

Files: ``method.py`` (phases 1–2, losses, evaluation), ``data.py`` (clip tokens),
``predict.py`` (one video / a stream -> timeline), ``report.py``, ``paper.py`` (paper preset),
``phase3.py`` + ``text.py`` (phase 3).
"""

from vau_jax.methods.vadllama.method import VADLLaMA

__all__ = ["VADLLaMA"]
