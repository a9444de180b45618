"""``python -m vau_jax.explain``: errors (fast), prompts (fast), and end to end on a tiny run."""

import json
import os
from html.parser import HTMLParser

import numpy as np
import pytest

from tests.tiny_configs import tiny_vagpt
from vau_jax import explain as E
from vau_jax.data import synthvad
from vau_jax.data.instruct import multiple_choice
from vau_jax.data.synthvad.writers import write_mp4
from vau_jax.methods import vagpt_data as D
from vau_jax.methods import vagpt_report


def _small_mp4(path: str, n: int = 8) -> str:
    frames = np.random.default_rng(0).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    write_mp4(path, frames, 8.0)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("error: ")
    return err[0]


# ------------------------------------------------------------------------------ fast


def test_missing_workdir_is_a_one_line_error(tmp_path, capsys):
    video = _small_mp4(str(tmp_path / "v.mp4"))
    missing = str(tmp_path / "no_run")
    assert E.main(["--workdir", missing, "--video", video]) == 1
    assert missing in _error_line(capsys)


def test_corrupt_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    assert E.main(["--workdir", str(tmp_path), "--video", str(bad)]) == 1
    assert str(bad) in _error_line(capsys)
    assert E.main(["--workdir", str(tmp_path), "--video", str(tmp_path / "none.avi")]) == 1
    assert "none.avi" in _error_line(capsys)


def test_not_a_vagpt_run_and_no_checkpoint(tmp_path, capsys):
    video = _small_mp4(str(tmp_path / "v.mp4"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"method": "vadllama", "preset": "tiny"}))
    assert E.main(["--workdir", str(other), "--video", video]) == 1
    line = _error_line(capsys)
    assert str(other) in line and "VA-GPT" in line
    assert E.main(["--workdir", str(tmp_path), "--video", video]) == 1
    assert "config.json" in _error_line(capsys)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "config.json").write_text(json.dumps({"method": "vagpt", "preset": "tiny"}))
    assert E.main(["--workdir", str(untrained), "--video", video]) == 1
    line = _error_line(capsys)
    assert os.path.join(str(untrained), "checkpoints") in line and "no checkpoint" in line
    assert not os.path.exists(untrained / "checkpoints")  # nothing created in the run folder


def test_prompt_is_written_like_the_training_prompt():
    facts = D.facts(
        {
            "video_id": np.array(["v"]),
            "n_frames": np.array([48]),
            "fps": np.array([8.0]),
            "anomaly_type": np.array(["fire"]),
            "intervals": np.array([[[1.0, 2.5], [-1, -1], [-1, -1], [-1, -1]]], np.float32),
        },
        0,
    )
    q = multiple_choice(facts, synthvad.ANOMALY_TYPES, seed=3)
    assert E.human_turn(E.mc_prompt(q.question, q.options), "PRIOR.") == D.human_text(q, "PRIOR.")
    assert [o.letter for o in E.relettered(q.options[::-1])] == ["A", "B", "C", "D"]
    # Candidate options: every type with the TETG interval, written like the MC builder.
    cands = E.candidate_options(synthvad.ANOMALY_TYPES, (1.0, 2.5), 6.0)
    assert len(cands) == len(synthvad.ANOMALY_TYPES) + 1
    assert cands[-1].anomaly_type == "normal" and cands[-1].interval is None
    correct = q.options[q.answer_index].text  # "A fire from 1.0s to 2.5s"
    assert correct == next(o.text for o in cands if o.anomaly_type == "fire")
    assert {o.interval for o in E.candidate_options(["fire"], None, 6.04)} == {(0.0, 6.0), None}
    assert "H. " in E.mc_prompt("Q?", cands)


def test_threshold_runs_in_seconds():
    p = np.array([0.1, 0.6, 0.7, 0.2, 0.5, 0.9, 0.1, 0.8])
    assert E.threshold_runs(p, 4.0, 0.5) == [[0.25, 0.75], [1.0, 1.5], [1.75, 2.0]]
    assert E.threshold_runs(np.zeros(5), 4.0, 0.5) == []


# ------------------------------------------------------------------------------ tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished tiny VA-GPT run (workdir, config) shared by the slow tests."""
    from vau_jax.methods.runner import run_method
    from vau_jax.methods.vagpt import VAGPT

    root = tmp_path_factory.mktemp("explain_run")
    c = tiny_vagpt(str(root / "data"))
    workdir = str(root / "run")
    run_method(VAGPT(c, workdir), c, workdir, "train")
    return workdir, c


@pytest.fixture(scope="module")
def loaded(tiny_run):
    return E.load_run(tiny_run[0])


def _anomalous_test_video(config) -> tuple[int, synthvad.SynthVideo]:
    synth = synthvad.SynthConfig(**dict(config.synthvad))
    for i in range(int(config.num_test_videos)):
        v = synthvad.render_split_video("test", i, synth)
        if v.anomaly_type != synthvad.NORMAL:
            return i, v
    raise AssertionError("no anomalous test video")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.count: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1


@pytest.mark.slow
def test_config_json_round_trips(tiny_run):
    from vau_jax.methods.clip_pretrain import checkpoint_dir

    workdir, c = tiny_run
    back = E.load_config(workdir)
    assert json.loads(back.to_json()) == json.loads(c.to_json_best_effort())
    assert checkpoint_dir(back.clip_pretrain) == checkpoint_dir(c.clip_pretrain)


@pytest.mark.slow
def test_video_features_match_the_cached_split(tiny_run, loaded):
    _, c = tiny_run
    i, v = _anomalous_test_video(c)
    m = loaded.method
    got = D.video_features(m.clip, m.dino, v.frames, v.fps, int(c.frames_per_video))
    ref = m.feats["test"]
    n = v.num_frames
    assert got["n_frames"][0] == n == ref["n_frames"][i]
    np.testing.assert_array_equal(got["sample_index"][0], ref["sample_index"][i])
    for key in ("visual", "dino"):
        np.testing.assert_allclose(got[key][0], ref[key][i], atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(got["cls"][0], ref["cls"][i, :n], atol=2e-3, rtol=2e-3)
    probs = m.tetg_run.probs(m.tetg_params, got)[0]
    np.testing.assert_allclose(probs, m.tetg_probs["test"][i], atol=1e-3)


@pytest.mark.slow
def test_explain_a_synthvad_mp4_end_to_end(tiny_run, tmp_path, capsys):
    workdir, c = tiny_run
    _, v = _anomalous_test_video(c)
    video = str(tmp_path / "synth_test.mp4")
    write_mp4(video, v.frames, v.fps)
    assert E.main(["--workdir", workdir, "--video", video]) == 0
    out = capsys.readouterr().out
    folder = os.path.join(workdir, "explain", "synth_test")
    assert os.path.join(folder, "timeline.json") in out and "top option" in out
    t = json.load(open(os.path.join(folder, "timeline.json")))
    for key in (
        "video",
        "fps",
        "duration_s",
        "frame_probs",
        "threshold",
        "intervals_s",
        "tetg_interval_s",
        "tetg_sentence",
        "explanation",
        "options",
    ):
        assert key in t, key
    assert t["fps"] == c.synthvad.fps and t["n_frames"] == v.num_frames
    assert len(t["frame_probs"]) == v.num_frames  # decoded at the run's fps: same frames
    probs = np.asarray(t["frame_probs"])
    assert ((probs >= 0) & (probs <= 1)).all()
    assert t["duration_s"] == pytest.approx(v.num_frames / v.fps)
    assert len(t["options"]) == len(synthvad.ANOMALY_TYPES) + 1
    p = [o["p"] for o in t["options"]]
    assert sum(p) == pytest.approx(1.0, abs=1e-4) and p == sorted(p, reverse=True)
    assert [o["logprob"] for o in t["options"]] == sorted(
        [o["logprob"] for o in t["options"]], reverse=True
    )
    for s, e in t["intervals_s"]:
        assert 0 <= s < e <= t["duration_s"] + 1e-6
    if t["tetg_interval_s"] is not None:
        assert t["tetg_interval_s"][0] < t["tetg_interval_s"][1]
    assert isinstance(t["explanation"], str) and "SynthVAD" in t["note"]
    html = open(os.path.join(folder, "report.html")).read()
    tags = _Tags()
    tags.feed(html)
    assert tags.count.get("img", 0) == min(vagpt_report.FRAMES_SHOWN, int(c.frames_per_video))
    assert tags.count.get("svg", 0) >= 1
    assert "Options ranked by log-likelihood" in html


@pytest.mark.slow
def test_four_options_and_free_form(tiny_run, loaded):
    _, c = tiny_run
    _, v = _anomalous_test_video(c)
    t, _ = E.explain_frames(loaded, v.frames[:12], "clip.mp4", num_options=4, max_new_tokens=4)
    assert len(t["options"]) == 4 and len(t["frame_probs"]) == 12
    assert sum(o["p"] for o in t["options"]) == pytest.approx(1.0, abs=1e-4)
    assert "A. " in t["prompt"] and "E. " not in t["prompt"]
    t, _ = E.explain_frames(
        loaded,
        v.frames[:12],
        "clip.mp4",
        question="What happens?",
        free_form=True,
        max_new_tokens=4,
    )
    assert t["prompt"].endswith("What happens?") and "A. " not in t["prompt"]


@pytest.mark.slow
def test_explain_the_real_clip(tiny_run, loaded, vtest_path, tmp_path):
    workdir, c = tiny_run
    out = str(tmp_path / "vtest")
    t = E.run(workdir, vtest_path, out=out, max_seconds=4.0, max_new_tokens=8, loaded=loaded)
    fps = float(c.synthvad.fps)
    assert t["n_frames"] == int(4.0 * fps) == len(t["frame_probs"])
    assert all(0.0 <= x <= 1.0 for x in t["frame_probs"])
    assert os.path.isfile(os.path.join(out, "timeline.json"))
    assert os.path.isfile(os.path.join(out, "report.html"))
