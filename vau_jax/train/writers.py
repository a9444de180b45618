"""Metric writers: TensorBoard event files, ``metrics.jsonl``, a progress bar, ``metrics.json``.

Only process 0 writes. TensorBoard events are written with the ``tensorboard`` package's own
event-file writer (no TensorFlow). The progress bar shows steps/s, ETA and the loss on a TTY
and falls back to plain log lines (every ``log_every`` steps) otherwise.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np


def _scalar(v: Any) -> float | None:
    try:
        f = float(np.asarray(v))
    except (TypeError, ValueError):
        return None
    return f


class MetricWriter:
    """Writes scalar metrics to TensorBoard and ``metrics.jsonl`` under ``workdir``.

    Each record is ``{"step": int, "split": str, "time": float, <name>: float, ...}``.
    """

    def __init__(self, workdir: str, *, enabled: bool | None = None):
        self.workdir = workdir
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._tb = None
        self._jsonl = None
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            self._tb = EventFileWriter(os.path.join(workdir, "tensorboard"))
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Writes every scalar of ``metrics`` (non-scalars are skipped) at ``step``."""
        if not self.enabled:
            return
        from tensorboard.compat.proto import event_pb2, summary_pb2

        values = {k: _scalar(v) for k, v in metrics.items()}
        values = {k: v for k, v in values.items() if v is not None}
        now = time.time()
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=f"{split}/{k}", simple_value=v)
                for k, v in values.items()
            ]
        )
        self._tb.add_event(event_pb2.Event(wall_time=now, step=int(step), summary=summary))
        record = {"step": int(step), "split": split, "time": round(now, 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled and self._tb is not None:
            self._tb.close()
            self._jsonl.close()
            self._tb = self._jsonl = None


def write_final_metrics(workdir: str, metrics: Mapping[str, Any]) -> str:
    """Writes ``workdir/metrics.json``: flat ``{"name": number}`` (DESIGN §4), atomically."""
    flat = {k: _scalar(v) for k, v in metrics.items()}
    bad = sorted(k for k, v in flat.items() if v is None)
    if bad:
        raise ValueError(f"final metrics must be numbers; not numbers: {bad}")
    path = os.path.join(workdir, "metrics.json")
    os.makedirs(workdir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(flat, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


class Progress:
    """Progress over ``total`` steps: a tqdm bar on a TTY, plain lines every ``log_every`` else.

    ``unit`` names what is counted (``"step"``: training steps; ``"batch"``: evaluation
    batches)."""

    def __init__(
        self,
        total: int,
        *,
        desc: str = "train",
        initial: int = 0,
        log_every: int = 50,
        stream=None,
        unit: str = "step",
    ):
        self.total, self.step, self.desc, self.log_every = total, initial, desc, max(1, log_every)
        self.unit = unit
        self._plural = unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")
        self._stream = stream or sys.stderr
        self._t0, self._s0 = time.time(), initial
        self._bar = None
        if getattr(self._stream, "isatty", lambda: False)() and jax.process_index() == 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit=unit,
                file=self._stream,
                dynamic_ncols=True,
            )

    def rate(self) -> float:
        """Steps per second since the bar was created."""
        dt = time.time() - self._t0
        return (self.step - self._s0) / dt if dt > 0 else 0.0

    def update(self, step: int, loss: float | None = None) -> None:
        delta, self.step = step - self.step, step
        if self._bar is not None:
            self._bar.update(delta)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}")
            return
        if jax.process_index() != 0:
            return
        if step % self.log_every == 0 or step == self.total:
            rate = self.rate()
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            loss_s = f" loss {loss:.4f}" if loss is not None else ""
            print(
                f"{self.desc}: {self.unit} {step}/{self.total} {rate:.2f} {self._plural}/s "
                f"ETA {eta:.0f}s{loss_s}",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
