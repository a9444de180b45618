"""Evaluation metrics of the standalone VAU evaluation package (host-side numpy).

Frame-level detection (:mod:`.frame_level`): ``frame_auc`` -> AUC_O / AUC_A (protocols
``"ucf"`` and ``"umil"``), ``xd_ap`` -> AP_trapz / AP_step, ``ubnormal_auc`` -> micro / macro
AUC. Ranking primitives (:mod:`.auc`): ``roc_auc``, ``ap_trapz``, ``ap_step``. Spatial
localisation (:mod:`.rbdc_tbdc`): ``rbdc_tbdc``. Language (:mod:`.bleu`, :mod:`.qa`): BLEU,
Yes/No accuracy, multiple-choice Total / Temporal accuracy, temporal IoU and recall.
"""

from vau_jax.eval.metrics.auc import ap_step, ap_trapz, precision_recall_curve, roc_auc, roc_curve
from vau_jax.eval.metrics.bleu import bleu_scores, corpus_bleu, sentence_bleu, tokenize
from vau_jax.eval.metrics.frame_level import (
    METRIC_KEYS,
    PROTOCOLS,
    frame_auc,
    frame_metrics,
    ubnormal_auc,
    video_frames,
    xd_ap,
)
from vau_jax.eval.metrics.qa import (
    mcqa_accuracy,
    mcqa_by_truth,
    parse_choice,
    parse_yes_no,
    recall_at_iou,
    temporal_iou,
    yes_no_accuracy,
)
from vau_jax.eval.metrics.rbdc_tbdc import detection_curves, rbdc_tbdc, tracks_to_rows

__all__ = [
    "METRIC_KEYS",
    "PROTOCOLS",
    "ap_step",
    "ap_trapz",
    "bleu_scores",
    "corpus_bleu",
    "detection_curves",
    "frame_auc",
    "frame_metrics",
    "mcqa_accuracy",
    "mcqa_by_truth",
    "parse_choice",
    "parse_yes_no",
    "precision_recall_curve",
    "rbdc_tbdc",
    "recall_at_iou",
    "roc_auc",
    "roc_curve",
    "sentence_bleu",
    "temporal_iou",
    "tokenize",
    "tracks_to_rows",
    "ubnormal_auc",
    "video_frames",
    "xd_ap",
    "yes_no_accuracy",
]
