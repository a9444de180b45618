"""``vau_jax.load_run`` and ``python -m vau_jax.explain``: errors (fast), prompts (fast), and
end to end on the tiny VA-GPT and VAD-LLaMA runs."""

import json
import os
from html.parser import HTMLParser

import numpy as np
import pytest

import vau_jax
from vau_jax import explain as E
from vau_jax.data import synthvad
from vau_jax.data.benchmark import candidate_options, human_turn, mc_prompt, relettered
from vau_jax.data.synthvad.writers import write_mp4
from vau_jax.methods.base import runs_seconds
from vau_jax.methods.vagpt import data as D


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
    assert E.main(["--workdir", missing, "--video", video]) == 2
    assert missing in _error_line(capsys)


def test_corrupt_video_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    assert E.main(["--workdir", str(tmp_path), "--video", str(bad)]) == 2
    assert str(bad) in _error_line(capsys)
    assert E.main(["--workdir", str(tmp_path), "--video", str(tmp_path / "none.avi")]) == 2
    assert "none.avi" in _error_line(capsys)
    with pytest.raises(SystemExit) as e:
        E.main(["--workdir", str(tmp_path), "--video", str(bad), "--num_options", "5"])
    assert e.value.code == 2 and "num_options" in _error_line(capsys)


def test_not_a_predicting_run_and_no_checkpoint(tmp_path, capsys):
    video = _small_mp4(str(tmp_path / "v.mp4"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"method": "clip_pretrain", "preset": "tiny"}))
    assert E.main(["--workdir", str(other), "--video", video]) == 2
    line = _error_line(capsys)
    assert str(other) in line and "clip_pretrain" in line
    assert E.main(["--workdir", str(tmp_path), "--video", video]) == 2
    assert "config.json" in _error_line(capsys)


def test_prompt_is_written_like_the_training_prompt():
    from vau_jax.data.datasets import Video

    v = Video(
        id="v",
        split="test",
        label="fire",
        fps=8.0,
        n_frames=48,
        frame_intervals=((8, 20),),
        info={"anomaly_type": "fire"},
    )
    q = D.questions(v, 1, synthvad.ANOMALY_TYPES)[0]
    assert human_turn(mc_prompt(q.question, q.options), "PRIOR.") == D.human_text(q, "PRIOR.")
    assert [o.letter for o in relettered(q.options[::-1])] == ["A", "B", "C", "D"]
    # Candidate options: every type with the TETG interval, written like the MC builder.
    cands = candidate_options(synthvad.ANOMALY_TYPES, (1.0, 2.5), 6.0)
    assert len(cands) == len(synthvad.ANOMALY_TYPES) + 1
    assert cands[-1].anomaly_type == "normal" and cands[-1].interval is None
    correct = q.options[q.answer_index].text  # "A fire from 1.0s to 2.5s"
    assert correct == next(o.text for o in cands if o.anomaly_type == "fire")
    assert "H. " in mc_prompt("Q?", cands)


def test_threshold_runs_in_seconds():
    p = np.array([0.1, 0.6, 0.7, 0.2, 0.5, 0.9, 0.1, 0.8])
    t = np.arange(8) / 4.0
    assert runs_seconds(p, t, 0.5, 0.25) == [[0.25, 0.75], [1.0, 1.5], [1.75, 2.0]]
    assert runs_seconds(np.zeros(5), t[:5], 0.5, 0.25) == []


# ------------------------------------------------------------------------------ tiny runs


def _anomalous_test_video(data_dir: str, config) -> synthvad.SynthVideo:
    synth = synthvad.SynthConfig(**dict(config.synthvad))
    for i in range(int(config.num_test_videos)):
        v = synthvad.render_split_video("test", i, synth)
        if v.anomaly_type != synthvad.NORMAL:
            return v
    raise AssertionError("no anomalous test video")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.count: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1


@pytest.fixture(scope="module")
def vagpt_loaded(vagpt_run):
    return vau_jax.load_run(vagpt_run)


@pytest.mark.slow
def test_load_run_needs_no_training_features(vagpt_run, vagpt_loaded):
    run = vagpt_loaded
    assert run.name == "vagpt" and run.method.prepared == "inference"
    assert run.method.dataset is None and not run.method.feats  # nothing of the splits loaded
    assert run.stage == "stage2" and run.frame_rate() == 8.0 and run.frame_size() == 64


@pytest.mark.slow
def test_predicted_features_match_the_cached_split(vagpt_run, vagpt_loaded):
    from tests.tiny_configs import tiny_vagpt
    from vau_jax import methods
    from vau_jax.methods.vagpt.predict import video_features

    data_dir = os.path.join(os.path.dirname(vagpt_run), "data")
    m = methods.build(tiny_vagpt(data_dir), vagpt_run)
    m.prepare()
    i = next(k for k, v in enumerate(m.dataset.split("test")) if v.is_anomalous)
    video = m.dataset.split("test")[i]
    got = video_features(vagpt_loaded.method, video.record()["frames"], 8.0)
    ref = m.feats["test"].video(i)
    np.testing.assert_array_equal(got["sample_times"], ref["sample_times"])
    for key in ("cls", "visual", "dino"):  # the store keeps float16: that is the difference
        np.testing.assert_allclose(got[key], ref[key], atol=3e-2, rtol=1e-2)
    probs = m.tetg.probs(m.tetg_params, [got["cls"]])[0]
    np.testing.assert_allclose(probs, m.tetg_probs["test"][i], atol=1e-2)


@pytest.mark.slow
def test_explain_vagpt_end_to_end(vagpt_run, vagpt_loaded, tmp_path, capsys):
    data_dir = os.path.join(os.path.dirname(vagpt_run), "data")
    c = vagpt_loaded.config
    v = _anomalous_test_video(data_dir, c)
    video = str(tmp_path / "synth_test.mp4")
    write_mp4(video, v.frames, v.fps)
    out = str(tmp_path / "out")
    t = E.run(vagpt_run, video, out, loaded=vagpt_loaded)
    assert t["paths"] == [os.path.join(out, "timeline.json"), os.path.join(out, "report.html")]
    saved = json.load(open(os.path.join(out, "timeline.json")))
    for key in (
        "video",
        "fps",
        "n_frames",
        "duration_s",
        "frame_probs",
        "threshold",
        "intervals_s",
        "tetg_interval_s",
        "tetg_sentence",
        "explanation",
        "options",
        "method",
        "run",
    ):
        assert key in saved, key
    assert saved["fps"] == c.synthvad.fps and saved["n_frames"] == v.num_frames
    assert len(saved["frame_probs"]) == v.num_frames
    probs = np.asarray(saved["frame_probs"])
    assert ((probs >= 0) & (probs <= 1)).all()
    assert len(saved["options"]) == len(synthvad.ANOMALY_TYPES) + 1
    p = [o["p"] for o in saved["options"]]
    assert sum(p) == pytest.approx(1.0, abs=1e-4) and p == sorted(p, reverse=True)
    for s, e in saved["intervals_s"]:
        assert 0 <= s < e <= saved["duration_s"] + 1e-6
    assert isinstance(saved["explanation"], str) and "SynthVAD" in saved["note"]
    html = open(os.path.join(out, "report.html")).read()
    tags = _Tags()
    tags.feed(html)
    assert tags.count.get("img", 0) == int(c.frames_per_video)
    assert tags.count.get("svg", 0) >= 1 and "Options ranked by log-likelihood" in html
    assert not os.path.exists(os.path.join(vagpt_run, "explain"))  # --out was given


@pytest.mark.slow
def test_four_options_and_free_form(vagpt_loaded):
    frames = np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    t, state = vagpt_loaded.predict(frames, 8.0, num_options=4, max_new_tokens=4)
    assert len(t["options"]) == 4 and len(t["frame_probs"]) == 12
    assert sum(o["p"] for o in t["options"]) == pytest.approx(1.0, abs=1e-4)
    assert "A. " in t["prompt"] and "E. " not in t["prompt"]
    assert state == {"seconds": 1.5}
    t, _ = vagpt_loaded.predict(
        frames, 8.0, state, question="What happens?", free_form=True, max_new_tokens=4
    )
    assert t["prompt"].endswith("What happens?") and "A. " not in t["prompt"]
    assert t["start_s"] == 1.5


@pytest.mark.slow
def test_explain_vadllama_and_the_real_clip(vadllama_run, vtest_path, tmp_path, capsys):
    out = str(tmp_path / "vtest")
    code = E.main(
        ["--workdir", vadllama_run, "--video", vtest_path, "--max_seconds", "4", "--out", out]
    )
    assert code == 0 and "vadllama" in capsys.readouterr().out
    t = json.load(open(os.path.join(out, "timeline.json")))
    assert t["method"] == "vadllama" and t["n_frames"] == 32 == len(t["frame_probs"])
    assert all(0.0 <= x <= 1.0 for x in t["frame_probs"])
    assert len(t["clip_scores"]) == 4 and t["clip_seconds"] == 1.0
    assert os.path.isfile(os.path.join(out, "report.html"))
