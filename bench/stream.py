"""Streaming benchmark: memory over an hour of stream, alert latency, speed against real time.

    python bench/stream.py --workdir=RUN [--minutes=60] [--window_seconds=1] [--pace=0] \
        [--threshold=P | --false_alarms_per_hour=R]

A writer process films SynthVAD test-split videos in one scene and appends them to an
MPEG-TS file (:func:`vau_jax.stream.synthetic.write_stream`; ``--pace`` > 0 holds it to that
many times real time, 0 writes as fast as it renders). This process follows the growing file
exactly as ``python -m vau_jax.explain --stream`` does (:func:`vau_jax.stream.follow`) and
measures:

* RSS (``/proc/self/statm``) at every 5 minutes of stream time: memory must stay flat, so
  10 min and 60 min are compared (within 5%);
* alert latency: stream seconds from each true anomaly's start to its alert (median and
  90th percentile; :func:`vau_jax.stream.events.alert_latencies`), anomalies missed, and
  false alerts per hour (alerts never on, from their first window, while an anomaly is);
* speed: stream seconds per wall second (``> 1`` = faster than real time), with and
  without the time spent waiting for the writer.

Prints the CPU model first and one JSON object at the end. Run it from the folder the run
was trained in (its frozen encoders live in the run's data dir).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import cpu_model  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished run (VAD-LLaMA, VA-GPT or T-VAU).")
_MINUTES = flags.DEFINE_float("minutes", 60.0, "Stream length in minutes of stream time.")
_WINDOW = flags.DEFINE_float("window_seconds", 1.0, "Window length in seconds.")
_PACE = flags.DEFINE_float("pace", 0.0, "Writer speed in multiples of real time (0: no limit).")
_THRESHOLD = flags.DEFINE_float("threshold", None, "Alert threshold (default: the run's).")
_FAH = flags.DEFINE_float(
    "false_alarms_per_hour", None, "Calibrate the threshold on SynthVAD validation for this rate."
)
_OUT = flags.DEFINE_string("out", None, "Where the stream is written (default: a temp dir).")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _writer(path: str, seconds: float, fps: float, size: int, pace: float, truth_path: str):
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.stream.synthetic import write_stream

    cuts: list[float] = []
    cfg = SynthConfig(height=size, width=size, fps=fps)
    truth = write_stream(path, seconds, cfg, pace=pace, cuts=cuts)
    with open(truth_path, "w") as f:
        json.dump({"truth": truth, "cuts": cuts}, f)


def main(argv: list[str]) -> None:
    del argv
    import vau_jax
    from vau_jax import stream as S
    from vau_jax.stream.events import alert_latencies

    print(f"CPU: {cpu_model()}", flush=True)
    run = vau_jax.load_run(_WORKDIR.value)
    scorer = S.window_scorer(run)
    threshold = scorer.threshold if _THRESHOLD.value is None else _THRESHOLD.value
    calibration = None
    if _FAH.value is not None:
        cal = S.calibrate(scorer, _FAH.value, 64, _WINDOW.value)
        threshold, calibration = cal.threshold, dataclasses.asdict(cal)
    synth = run.config.synthvad
    out = _OUT.value or tempfile.mkdtemp(prefix="stream_bench_")
    os.makedirs(out, exist_ok=True)
    path, truth_path = os.path.join(out, "stream.ts"), os.path.join(out, "truth.json")
    seconds = 60.0 * _MINUTES.value
    ctx = mp.get_context("spawn")
    writer = ctx.Process(
        target=_writer,
        args=(path, seconds, float(synth.fps), int(synth.height), _PACE.value, truth_path),
    )
    writer.start()
    while not os.path.exists(path) or os.path.getsize(path) == 0:
        time.sleep(0.05)
    name, fileobj = S.open_source(path, idle_seconds=10.0)
    rss: dict[int, float] = {}
    alerts: list[list[float]] = []
    marks = iter(range(0, int(seconds) + 1, 300))
    mark = next(marks)

    def on_window(w: S.Window, record: dict) -> None:
        nonlocal mark
        if record["event"] == "start":
            alerts.append([record["t_s"], float("inf")])
        elif record["event"] == "end":
            alerts[-1][1] = record["t_s"]
        while mark is not None and w.end_s >= mark:
            rss[mark] = round(_rss_mib(), 1)
            mark = next(marks, None)

    windows = S.iter_windows(name, fileobj, run.frame_rate(), run.frame_size(), _WINDOW.value)
    done = S.follow(windows, scorer, threshold, lambda r: None, on_window=on_window)
    waited = fileobj.waited_seconds
    fileobj.close()
    writer.join()
    with open(truth_path) as f:
        written = json.load(f)
    truth, cuts = [tuple(t) for t in written["truth"]], np.asarray(written["cuts"])
    delays, missed = alert_latencies(alerts, truth)
    # An alert answers an anomaly when it is on (from its first window) while the anomaly is.
    w = _WINDOW.value
    answered = sum(any(s - w < b and e > a for a, b in truth) for s, e in alerts)
    false_alerts = len(alerts) - answered
    # Where false alerts start: within 3 s after a cut between two videos (walkers vanish
    # and others appear at once, which the stream's single scene makes look like an event)?
    false_starts = [s for s, e in alerts if not any(s - w < b and e > a for a, b in truth)]
    near_cut = sum(bool(np.any((s - cuts >= 0) & (s - cuts <= 3.0))) for s in false_starts)
    r10, r60 = rss.get(600), rss.get(3600)
    result = {
        "bench": "stream",
        "method": run.name,
        "workdir": os.path.abspath(_WORKDIR.value),
        "window_seconds": _WINDOW.value,
        "threshold": threshold,
        "calibration": calibration,
        "stream_seconds": round(done.stream_seconds, 1),
        "wall_seconds": round(done.wall_seconds, 1),
        "waited_for_writer_seconds": round(waited, 1),
        "x_real_time": round(done.stream_seconds / done.wall_seconds, 2),
        "x_real_time_busy": round(done.stream_seconds / max(done.wall_seconds - waited, 1e-9), 2),
        "anomalies": len(truth),
        "detected": len(delays),
        "missed": missed,
        "latency_median_s": round(float(np.median(delays)), 3) if len(delays) else None,
        "latency_p90_s": round(float(np.percentile(delays, 90)), 3) if len(delays) else None,
        "alerts": len(alerts),
        "false_alerts_per_hour": round(false_alerts / (done.stream_seconds / 3600), 2),
        "false_alerts_within_3s_after_a_cut": near_cut,
        "cuts": len(cuts),
        "rss_mib_by_minute": {str(k // 60): v for k, v in sorted(rss.items())},
        "rss_60_vs_10_min": round(r60 / r10 - 1.0, 4) if r10 and r60 else None,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
