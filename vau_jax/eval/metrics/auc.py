"""Ranking metrics on frame scores: ROC AUC and the two average-precision definitions.

Everything here is host-side numpy, vectorised (one sort per call), and written to agree
with scikit-learn's definitions to floating-point precision:

* :func:`roc_auc` = ``sklearn.metrics.roc_auc_score`` (trapezoid under the ROC curve built
  at every distinct score; tied scores form one threshold).
* :func:`ap_trapz` (``AP_trapz``) = ``auc(recall, precision)`` on the curve of
  ``sklearn.metrics.precision_recall_curve`` - the XD-Violence public evaluation.
* :func:`ap_step` (``AP_step``) = ``sklearn.metrics.average_precision_score``, the step sum
  ``sum_k (R_k - R_{k-1}) P_k``.

A single-class input raises :class:`ValueError` instead of returning NaN.
"""

from __future__ import annotations

import numpy as np


def check_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``labels`` (bool ``[N]``) and ``scores`` (float64 ``[N]``).

    Raises:
      ValueError: shapes differ, inputs are not 1-D or empty, labels are not 0/1, scores are
        not finite, or only one class is present.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got {labels.shape} and {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.shape[0]} labels but {scores.shape[0]} scores")
    if labels.size == 0:
        raise ValueError("empty input: no labels and scores")
    if labels.dtype != np.bool_:
        if not np.all((labels == 0) | (labels == 1)):
            raise ValueError("labels must be 0/1 (or bool)")
        labels = labels == 1
    if not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"score {bad} is not finite ({scores[bad]})")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "positive (1)" if n_pos else "negative (0)"
        raise ValueError(f"only {only} labels among {labels.size}: AUC/AP need both classes")
    return labels, scores


def binary_counts(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative counts at each distinct threshold, highest score first.

    Args:
      labels: bool ``[N]`` (already validated).
      scores: float64 ``[N]``.

    Returns:
      ``(fps, tps, thresholds)``, each ``[K]`` for the K distinct scores in decreasing
      order: false/true positives among samples with ``score >= threshold``.
    """
    order = np.argsort(scores, kind="mergesort")[::-1]
    s = scores[order]  # [N] descending
    y = labels[order]
    # index of the last sample of each run of equal scores (ties form one threshold)
    last = np.flatnonzero(np.diff(s)) if s.size > 1 else np.zeros([0], np.int64)
    last = np.concatenate([last, [s.size - 1]])
    tps = np.cumsum(y, dtype=np.int64)[last]
    fps = last + 1 - tps
    return fps, tps, s[last]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` starting at (0, 0), one point per distinct score."""
    labels, scores = check_binary(labels, scores)
    fps, tps, thr = binary_counts(labels, scores)
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    return fpr, tpr, np.concatenate([[np.inf], thr])


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid rule; equals the Mann-Whitney statistic)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve as scikit-learn builds it.

    Returns:
      ``(precision, recall, thresholds)``; ``precision``/``recall`` are ``[K + 1]`` in order
      of increasing threshold (recall decreasing) with the final point ``(P=1, R=0)``.
    """
    labels, scores = check_binary(labels, scores)
    fps, tps, thr = binary_counts(labels, scores)
    precision = tps / (tps + fps)  # tps + fps >= 1 at every threshold
    recall = tps / tps[-1]
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        thr[::-1],
    )


def ap_trapz(labels: np.ndarray, scores: np.ndarray) -> float:
    """``AP_trapz``: trapezoid area under the PR curve, ``auc(recall, precision)``.

    This is what the XD-Violence public code reports as "AP" (``sklearn.metrics.auc`` on
    ``precision_recall_curve``). It linearly interpolates precision, which is optimistic.
    """
    precision, recall, _ = precision_recall_curve(labels, scores)
    # recall is decreasing: integrate along the reversed (increasing) axis
    return float(np.trapezoid(precision[::-1], recall[::-1]))


def ap_step(labels: np.ndarray, scores: np.ndarray) -> float:
    """``AP_step``: step-sum average precision ``sum_k (R_k - R_{k-1}) P_k``.

    Identical to ``sklearn.metrics.average_precision_score`` (no interpolation).
    """
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))
