"""Streaming alerts: a growing file or a pipe in, one JSON line per window out.

    python -m vau_jax.explain --stream --workdir=DIR --video=PATH|- [--window_seconds=1] \
        [--threshold=P | --false_alarms_per_hour=R] [--idle_seconds=10]

The stream (MPEG-TS or Matroska, still being written, or standard input:
:mod:`vau_jax.stream.source`) is decoded at the run's frame rate and cut into windows of
``window_seconds``. Each window is scored as soon as it is complete
(:mod:`vau_jax.stream.scoring`; VAD-LLaMA carries its LTC lists from window to window) and
printed as one line::

    {"t_s": 12.0, "p": 0.91, "event": "start", "type": "fighting"}

``t_s`` is the stream time at the window's end (seconds since the first frame: when the
window is known), ``p`` the largest frame probability in it, ``event`` ``"start"`` /
``"end"`` where ``p`` crosses the threshold (:mod:`vau_jax.stream.events`), else null, and
``type`` the alert's anomaly class while an alert is on (VA-GPT's LLM ranks the classes for
the last ``type_seconds`` when an alert starts; null for methods without a classifier).

The threshold is the run's own unless ``--threshold`` gives one, or
``--false_alarms_per_hour`` calibrates it on SynthVAD's validation split (videos no method
trains or is tested on): the lowest threshold whose alerts starting in normal footage stay
within the rate (:func:`calibrate`). Nothing of the stream is kept beyond the method's
bounded state and the last ``type_seconds`` of frames, so memory stays flat over hours.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from vau_jax.stream.events import Calibration, EventTracker, calibrate_threshold
from vau_jax.stream.scoring import WindowScorer, window_scorer
from vau_jax.stream.source import Window, iter_windows, open_source

__all__ = [
    "Calibration",
    "StreamSummary",
    "calibrate",
    "calibration_windows",
    "follow",
    "iter_windows",
    "open_source",
    "window_scorer",
]


@dataclasses.dataclass
class StreamSummary:
    """What a stream came to.

    Attributes:
      windows: windows scored.
      stream_seconds: stream time covered.
      wall_seconds: wall-clock time from the first byte asked for to the last line.
      alerts: alerts started.
      threshold: the threshold used.
    """

    windows: int = 0
    stream_seconds: float = 0.0
    wall_seconds: float = 0.0
    alerts: int = 0
    threshold: float = 0.5


def follow(
    windows: Iterable[Window],
    scorer: WindowScorer,
    threshold: float,
    emit: Callable[[dict[str, Any]], None],
    type_seconds: float = 4.0,
    on_window: Callable[[Window, dict[str, Any]], None] | None = None,
) -> StreamSummary:
    """Scores every window of a stream and emits one record per window (module docstring).

    Args:
      windows: the stream's windows, in order (:func:`iter_windows`).
      scorer: the run's :class:`WindowScorer` (its state is the stream's).
      threshold: the alert threshold.
      emit: receives each record ``{"t_s", "p", "event", "type"}``.
      type_seconds: how much of the stream's end :meth:`WindowScorer.classify` sees.
      on_window: called after each window (benchmarks: memory, timing).
    """
    tracker = EventTracker(float(threshold))
    recent: collections.deque[np.ndarray] = collections.deque()
    kind: str | None = None
    summary = StreamSummary(threshold=float(threshold))
    t0 = time.perf_counter()
    for w in windows:
        probs = scorer(w.frames)
        p = float(np.max(probs))
        recent.append(w.frames)
        while sum(len(f) for f in recent) - len(recent[0]) >= type_seconds * w.fps:
            recent.popleft()
        event = tracker.update(p)
        if event == "start":
            summary.alerts += 1
            kind = scorer.classify(np.concatenate(list(recent)))
        record = {
            "t_s": round(w.end_s, 4),
            "p": round(p, 6),
            "event": event,
            "type": kind if (tracker.active or event == "end") else None,
        }
        if event == "end":
            kind = None
        emit(record)
        summary.windows += 1
        summary.stream_seconds = w.end_s
        if on_window is not None:
            on_window(w, record)
    summary.wall_seconds = time.perf_counter() - t0
    return summary


def calibration_windows(
    scorer: WindowScorer, num_videos: int, window_seconds: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Window probabilities and truth of SynthVAD's first ``num_videos`` validation videos,
    each scored as its own stream: ``(probs [K_i] per video, anomalous bool [K_i])``."""
    from vau_jax.data.frames import FrameSpec, resample_array
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.data.synthvad.source import render_split_video
    from vau_jax.inference import RunError

    run = scorer.run
    name = str(run.config.get("dataset", "synthvad"))
    if name != "synthvad":
        raise RunError(
            f"{run.workdir}: --false_alarms_per_hour calibrates on SynthVAD's validation "
            f"split, and this run was trained on {name!r}; give --threshold instead"
        )
    synth = SynthConfig(**dict(run.config.synthvad))
    fps, size = scorer.fps, int(run.frame_size())
    per = max(1, int(round(window_seconds * fps)))
    probs, anomalous = [], []
    for i in range(int(num_videos)):
        v = render_split_video("validation", i, synth)
        chunks = resample_array(v.frames, float(v.fps), FrameSpec(fps=fps, size=size))
        frames = np.concatenate([c.frames for c in chunks])
        scorer.reset()
        ps, an = [], []
        for s in range(0, len(frames), per):
            ps.append(float(np.max(scorer(frames[s : s + per]))))
            a, b = s / fps, min(s + per, len(frames)) / fps
            an.append(any(lo < b and hi > a for lo, hi in np.asarray(v.intervals).tolist()))
        scorer.reset()
        probs.append(np.asarray(ps))
        anomalous.append(np.asarray(an, bool))
    return probs, anomalous


def calibrate(
    scorer: WindowScorer, false_alarms_per_hour: float, num_videos: int, window_seconds: float
) -> Calibration:
    """The threshold for ``false_alarms_per_hour`` on SynthVAD's validation split
    (:func:`calibration_windows`, :func:`~vau_jax.stream.events.calibrate_threshold`)."""
    from vau_jax.inference import RunError

    probs, anomalous = calibration_windows(scorer, num_videos, window_seconds)
    try:
        return calibrate_threshold(probs, anomalous, window_seconds, false_alarms_per_hour)
    except ValueError as err:
        raise RunError(f"{scorer.run.workdir}: {err}") from None


def print_record(record: dict[str, Any]) -> None:
    """One JSON line on standard output, flushed (a consumer sees it at once)."""
    print(json.dumps(record), flush=True)
