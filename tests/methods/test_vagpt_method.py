"""End-to-end plumbing of the tiny VA-GPT preset (tiny sizes: checks wiring, not quality)."""

import json
import os
import sys
from html.parser import HTMLParser

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))

import vagpt as vagpt_config  # noqa: E402

from vau_jax.methods import vagpt_data as D  # noqa: E402
from vau_jax.methods.runner import run_method  # noqa: E402
from vau_jax.methods.vagpt import VAGPT  # noqa: E402
from vau_jax.methods.vagpt_report import report_videos  # noqa: E402


def _tiny(data_dir):
    c = vagpt_config.get_config("tiny")
    c.data_dir = data_dir
    cp = c.clip_pretrain
    cp.data_dir, cp.num_train_videos, cp.num_test_videos, cp.frames_per_video = data_dir, 4, 3, 2
    cp.batch_size, cp.num_steps, cp.optimizer.warmup_steps, cp.checkpoint_every, cp.log_every = (
        8,
        3,
        1,
        0,
        1,
    )
    cp.synthvad.min_seconds = cp.synthvad.max_seconds = 3.0
    c.synthvad.min_seconds = c.synthvad.max_seconds = 3.0
    c.num_train_videos, c.num_test_videos = 6, 4
    c.questions_per_train_video, c.questions_per_test_video = 2, 1
    c.frames_per_video, c.batch_size, c.log_every = 4, 4, 1
    c.tetg.steps, c.tetg.batch_size = 5, 8
    c.stage1.steps, c.stage2.steps = 3, 2
    c.stage1.optimizer.warmup_steps = c.stage2.optimizer.warmup_steps = 1
    c.async_checkpointing = False
    c.report_videos = 2
    c.mesh.data = 2  # batch 4 over 2 of the 8 test devices
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data dir (tokenizer, tiny CLIP, cached features) shared by the slow tests."""
    return str(tmp_path_factory.mktemp("vagpt_data"))


def test_sample_frames_and_questions_are_deterministic():
    idx = D.sample_frames(50, 16)
    assert idx[0] == 0 and idx[-1] == 49 and (np.diff(idx) > 0).all()
    feats = {
        "video_id": np.array(["v0"]),
        "n_frames": np.array([40]),
        "fps": np.array([8.0]),
        "anomaly_type": np.array(["fire"]),
        "intervals": np.array([[[1.0, 2.5], [-1, -1], [-1, -1], [-1, -1]]], np.float32),
    }
    a, b = D.questions(feats, 0, 3), D.questions(feats, 0, 3)
    assert [q.prompt() for q in a] == [q.prompt() for q in b]
    assert len({q.prompt() for q in a}) > 1  # different distractors / orders per question
    for q in a:
        assert q.options[q.answer_index].interval == (1.0, 2.5)
    text = D.human_text(a[0], "PRIOR.")
    assert text.startswith("<video>\nPRIOR.\n") and a[0].prompt() in text


@pytest.mark.slow
def test_tiny_run_trains_evaluates_reports_and_resumes(tmp_path, data_dir):
    c = _tiny(data_dir)
    workdir = str(tmp_path / "run")
    method = VAGPT(c, workdir)
    # TETG was trained alone in its own run and is frozen (a plain array tree, no optimizer).
    assert os.path.isdir(os.path.join(workdir, "tetg"))
    _, metrics = run_method(method, c, workdir, "train_and_eval")
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert saved == pytest.approx(metrics)
    for key in (
        "total_acc",
        "temporal_acc",
        "total_acc_stage1",
        "temporal_acc_stage1",
        "total_acc_generate",
        "tetg_frame_auc",
    ):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["test_questions"] == 4 and saved["sets_keep_ratio"] == 0.5
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    # The report: one curve per shown video, frames as images, the questions.
    html = open(os.path.join(workdir, "report.html")).read()

    class Count(HTMLParser):
        imgs = svgs = 0

        def handle_starttag(self, tag, attrs):
            Count.imgs += tag == "img"
            Count.svgs += tag == "svg"

    Count().feed(html)
    assert Count.imgs == 2 * 6 and Count.svgs >= 2
    assert "Answer with the option" in html
    # Rerunning in eval mode restores the final params: same numbers.
    _, again = run_method(VAGPT(c, workdir), c, workdir, "eval")
    assert again["total_acc"] == pytest.approx(metrics["total_acc"])


@pytest.mark.slow
def test_frozen_llm_stays_bit_identical(tmp_path, data_dir):
    c = _tiny(data_dir)
    c.train_llm = False
    workdir = str(tmp_path / "run")
    method = VAGPT(c, workdir)
    # The trainer initialises under jit (bitwise different from eager init).
    init = jax.device_get(jax.jit(method.init_params)(jax.random.key(c.seed)))
    params, _ = run_method(method, c, workdir, "train")
    params = jax.device_get(params)
    for a, b in zip(jax.tree.leaves(init["llm"]), jax.tree.leaves(params["llm"])):
        np.testing.assert_array_equal(a, b)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(init["context_proj"]), jax.tree.leaves(params["context_proj"])
        )
    ]
    assert any(moved)


def test_report_videos_alternate_anomalous_and_normal():
    feats = {"anomaly_type": np.array(["normal", "normal", "fire", "running", "normal"])}
    assert report_videos(feats, 4) == [2, 0, 3, 1]
    assert report_videos(feats, 10) == [2, 0, 3, 1, 4]
