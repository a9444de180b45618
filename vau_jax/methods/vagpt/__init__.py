"""VA-GPT: SETS (spatial token selection) and TETG (temporal prior sentence) on a
LLaMA-VID-style video LLM.

Files: ``method.py`` (prepare, stages, losses), ``tetg.py`` (TETG's own run), ``data.py``
(features, questions, rows), ``evaluation.py`` (multiple-choice accuracy), ``predict.py``
(one video -> timeline, options, explanation), ``report.py``, ``paper.py`` (paper preset).
"""

from vau_jax.methods.vagpt.method import VAGPT

__all__ = ["VAGPT"]
