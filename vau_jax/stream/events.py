"""Alerts from window probabilities: threshold crossings, calibration and latency.

A window's probability ``p`` is the maximum over its frames. An alert starts at the first
window with ``p >= threshold`` and ends at the first window after it with ``p < threshold``
(:class:`EventTracker`). :func:`calibrate_threshold` picks the lowest threshold whose false
alerts on normal footage stay within a target rate; :func:`alert_latencies` measures how
long after an anomaly's true start its alert comes, in stream seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass
class EventTracker:
    """Turns window probabilities into ``"start"`` / ``"end"`` events.

    Attributes:
      threshold: an alert is on while ``p >= threshold``.
      active: whether an alert is on after the last window.
    """

    threshold: float
    active: bool = False

    def update(self, p: float) -> str | None:
        """The event of a window with probability ``p``: ``"start"``, ``"end"`` or None."""
        on = float(p) >= self.threshold
        if on and not self.active:
            self.active = True
            return "start"
        if not on and self.active:
            self.active = False
            return "end"
        return None


def starts(probs: Sequence[float], threshold: float) -> np.ndarray:
    """Indices of the windows where an alert starts (``probs`` of one stream, in order)."""
    on = np.asarray(probs, np.float64) >= threshold
    return np.flatnonzero(on & ~np.r_[False, on[:-1]])


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A threshold chosen for a false-alert rate.

    Attributes:
      threshold: the lowest threshold meeting the target (every higher one meets it too).
      false_alarms_per_hour: the rate it gives on the calibration streams.
      normal_hours: hours of normal windows the rate is measured over.
      target: the requested rate.
      streams: number of calibration streams.
    """

    threshold: float
    false_alarms_per_hour: float
    normal_hours: float
    target: float
    streams: int


def false_alarm_rate(
    probs: Sequence[np.ndarray],
    anomalous: Sequence[np.ndarray],
    window_seconds: float,
    threshold: float,
) -> tuple[float, float]:
    """``(false alerts per hour, normal hours)``: alerts starting in a normal window
    (``anomalous[i][k]`` False), per hour of normal windows, over all streams."""
    hours = sum(float((~np.asarray(a, bool)).sum()) for a in anomalous) * window_seconds / 3600
    false = sum(
        int((~np.asarray(a, bool)[starts(p, threshold)]).sum())
        for p, a in zip(probs, anomalous, strict=True)
    )
    return (false / hours if hours > 0 else 0.0), hours


def calibrate_threshold(
    probs: Sequence[np.ndarray],
    anomalous: Sequence[np.ndarray],
    window_seconds: float,
    false_alarms_per_hour: float,
) -> Calibration:
    """The lowest threshold at which every threshold at or above it keeps the false-alert
    rate (:func:`false_alarm_rate`) at most ``false_alarms_per_hour``.

    Args:
      probs: per calibration stream, its window probabilities ``[K_i]``.
      anomalous: per stream, bool ``[K_i]``: the window overlaps a true anomaly.
      window_seconds: the window length.
      false_alarms_per_hour: the target rate (>= 0).
    Raises:
      ValueError: no normal window to measure on, or a negative target.
    """
    if false_alarms_per_hour < 0:
        raise ValueError(f"false_alarms_per_hour must be >= 0, got {false_alarms_per_hour}")
    allp = np.concatenate([np.asarray(p, np.float64) for p in probs]) if probs else np.zeros(0)
    _, hours = false_alarm_rate(probs, anomalous, window_seconds, 1.0)
    if hours <= 0:
        raise ValueError("calibration needs normal footage; the calibration streams have none")
    # Candidates: every distinct probability (p >= t fires), and just above the largest.
    cands = np.unique(allp)
    top = np.nextafter(cands[-1], np.inf) if len(cands) else 1.0
    best = (float(top), 0.0)
    for t in cands[::-1]:  # from high to low: stop at the first that breaks the target
        rate, _ = false_alarm_rate(probs, anomalous, window_seconds, float(t))
        if rate > false_alarms_per_hour:
            break
        best = (float(t), rate)
    return Calibration(best[0], best[1], hours, float(false_alarms_per_hour), len(probs))


def alert_latencies(
    alerts_s: Sequence[tuple[float, float]], truth_s: Sequence[tuple[float, float]]
) -> tuple[np.ndarray, int]:
    """Delays from each true anomaly's start to its alert, in stream seconds.

    Args:
      alerts_s: the alerts ``[(start, end), ...]`` in stream seconds: ``start`` is when the
        alert was raised (the end of its first window, when that window is known), ``end``
        when it was cleared (``inf`` if never).
      truth_s: the true anomalous intervals ``[(start, end), ...]`` (seconds, half-open).
    Returns:
      ``(delays [n_detected], n_missed)``. An anomaly is detected with delay 0 when an alert
      is on at its start; otherwise by the first alert raised at or after its start and
      before ``min(end + (end - start), next anomaly's start)`` (late, but before anything
      else happens), with the delay from its start; otherwise it is missed.
    """
    alerts = sorted((float(a), float(b)) for a, b in alerts_s)
    raised = np.asarray([a for a, _ in alerts], np.float64)
    truth = sorted((float(a), float(b)) for a, b in truth_s)
    delays, missed = [], 0
    for i, (start, end) in enumerate(truth):
        if any(a < start < b for a, b in alerts):
            delays.append(0.0)
            continue
        limit = truth[i + 1][0] if i + 1 < len(truth) else np.inf
        limit = min(limit, end + max(end - start, 0.0))
        j = int(np.searchsorted(raised, start, side="left"))
        if j < len(raised) and raised[j] < limit:
            delays.append(float(raised[j] - start))
        else:
            missed += 1
    return np.asarray(delays, np.float64), missed
