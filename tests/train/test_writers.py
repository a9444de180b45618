"""Writers: TensorBoard events readable by TensorBoard, metrics.jsonl, metrics.json."""

import io
import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vau_jax.train.writers import MetricWriter, Progress, write_final_metrics


def test_tensorboard_and_jsonl(tmp_path):
    w = MetricWriter(str(tmp_path), enabled=True)
    w.write(1, {"loss": 2.0, "lr": 1e-3, "not_scalar": "x"})
    w.write(2, {"loss": 1.5})
    w.write(2, {"AUC_O": 0.9}, split="eval")
    w.close()
    ea = EventAccumulator(str(tmp_path / "tensorboard"))
    ea.Reload()
    assert [e.value for e in ea.Scalars("train/loss")] == [2.0, 1.5]
    assert ea.Scalars("eval/AUC_O")[0].step == 2
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["step"] == 1 and lines[0]["loss"] == 2.0 and "not_scalar" not in lines[0]
    assert lines[2]["split"] == "eval"


def test_final_metrics_flat_numbers(tmp_path):
    path = write_final_metrics(str(tmp_path), {"AUC_O": 0.91, "steps": 3})
    assert json.loads(open(path).read()) == {"AUC_O": 0.91, "steps": 3.0}
    with pytest.raises(ValueError, match="not numbers"):
        write_final_metrics(str(tmp_path), {"name": "abc"})


def test_progress_plain_lines_when_not_a_tty():
    buf = io.StringIO()
    p = Progress(10, desc="phase1", log_every=5, stream=buf)
    for s in range(1, 11):
        p.update(s, loss=1.0 / s)
    out = buf.getvalue().splitlines()
    assert (
        len(out) == 2
        and out[-1].startswith("phase1: step 10/10")
        and "steps/s" in out[-1]
        and "ETA" in out[-1]
    )


def test_progress_counts_other_units():
    buf = io.StringIO()
    p = Progress(4, desc="generate", log_every=2, stream=buf, unit="batch")
    for s in range(1, 5):
        p.update(s)
    p.close()
    out = buf.getvalue().splitlines()
    assert len(out) == 2 and out[-1].startswith("generate: batch 4/4") and "batches/s" in out[-1]
