"""VAD-LLaMA phases 1-2 through the methods layer (tiny sizes: wiring, not quality): clip
layout, a finished run's metrics and report, resumption, streamed prediction, and the same
AUC from SynthVAD rendered natively or written in UCF-Crime's published layout."""

import io
import json
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))

import vadllama as vadllama_config  # noqa: E402

from tests.compiles import xla_compiles  # noqa: E402
from tests.tiny_configs import tiny_vadllama  # noqa: E402
from vau_jax import methods  # noqa: E402
from vau_jax.methods import paper, runner  # noqa: E402
from vau_jax.methods.vadllama import data as D  # noqa: E402


def test_clip_layout_padding_and_subsampling():
    tok = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    clips, mask = D.clips_from_frames(tok, 10, 4, 4)
    assert clips.shape == (4, 8, 3) and mask.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(clips[0].reshape(4, 2, 3), tok[:4])
    np.testing.assert_array_equal(clips[2, 4:], 0.0)  # frames 10, 11 do not exist
    with pytest.raises(ValueError, match="max_clips"):
        D.clips_from_frames(tok, 10, 2, 4)
    long = D.to_clips(tok, 1)  # 10 one-frame clips
    sub, mask = D.pad_clips(long, 4)  # training keeps 4 spread over the video
    assert mask.all() and [int(c[0, 0]) for c in sub] == [int(long[i][0, 0]) for i in (0, 3, 6, 9)]


def test_frame_tokens_are_standardised_class_then_patches():
    rec = {"cls": np.random.rand(3, 5) * 10, "patches": np.random.rand(3, 4, 5) + 7}
    tok = D.frame_tokens(rec)
    assert tok.shape == (3, 5, 5)
    np.testing.assert_allclose(tok.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(tok.std(-1), 1, atol=1e-3)
    np.testing.assert_allclose(tok[:, 0], D.frame_tokens({"cls": rec["cls"]})[:, 0], atol=1e-6)


@pytest.mark.slow
def test_finished_run_metrics_report_and_eval_mode(vadllama_run):
    saved = json.load(open(os.path.join(vadllama_run, "metrics.json")))
    for key in ("AUC_O", "AUC_A", "AUC_O_phase1", "AUC_A_phase1"):
        assert 0.0 <= saved[key] <= 1.0
    # It learns: above chance on the tiny test split (seed 0 measured AUC_O 0.847, AUC_A 0.986
    # on an AMD EPYC; chance 0.5).
    assert saved["AUC_O"] >= 0.7 and saved["AUC_A"] >= 0.7, saved
    assert os.listdir(os.path.join(vadllama_run, "tensorboard"))
    assert os.path.isfile(os.path.join(vadllama_run, "report.html"))
    data_dir = os.path.join(os.path.dirname(vadllama_run), "data")
    built = [d for d in os.listdir(data_dir) if d.startswith("clip_pretrain_") and "." not in d]
    assert len(built) == 1 and os.path.isfile(os.path.join(data_dir, built[0], "config.json"))
    # rerunning in eval mode restores the finished stages and only evaluates: same numbers
    c = tiny_vadllama(data_dir)
    again = runner.run(methods.build(c, vadllama_run), "eval")
    assert again["AUC_O"] == pytest.approx(saved["AUC_O"])


@pytest.mark.slow
def test_run_records_phase_clocks_and_evaluation_compiles_once_per_shape(vadllama_run, tmp_path):
    saved = json.load(open(os.path.join(vadllama_run, "metrics.json")))
    # render / pretrain / features / train appear when this run did them (another test
    # reruns this workdir with --mode=eval, which rewrites metrics.json without training);
    # evaluation and the report always run
    for phase in ("eval", "report", "other", "total"):
        assert saved[f"seconds_{phase}"] >= 0.0, phase
    parts = sum(v for k, v in saved.items() if k.startswith("seconds_") and k != "seconds_total")
    assert parts == pytest.approx(saved["seconds_total"], abs=0.1 * len(saved))
    assert saved["seconds_eval"] > 0 and saved["seconds_total"] >= saved["seconds_eval"]

    import vau_jax

    run = vau_jax.load_run(vadllama_run)
    method = methods.build(tiny_vadllama(run.config.data_dir), vadllama_run)
    method.prepare()
    src = method.source("test")
    clips = D.to_clips(src.tokens(0), method.frames_per_clip)
    assert len(clips) >= 2
    fn = method.scorer(2)
    method.score_clips(run.params, clips, None, 2, fn)  # compiles the phase-2 scorer
    first = method.evaluate(run.params, str(tmp_path))
    with xla_compiles() as compiles:
        # evaluating again compiles nothing and gives the same numbers
        again = method.evaluate(run.params, str(tmp_path))
    assert again == first
    assert compiles == []


@pytest.mark.slow
def test_streamed_prediction_equals_whole_video_scores(vadllama_run):
    import vau_jax

    run = vau_jax.load_run(vadllama_run)
    c = run.config
    method = methods.build(tiny_vadllama(c.data_dir), vadllama_run)
    method.prepare()
    video = method.dataset.split("test")[0]
    frames = video.record()["frames"]
    whole = method.frame_scores(run.params, "test")[0]
    t1, state = run.predict(frames, 8.0)
    np.testing.assert_allclose(t1["frame_probs"], whole, rtol=1e-4, atol=1e-5)
    parts, state = [], None
    for a in range(0, len(frames), 5):  # windows that cut clips in the middle
        t, state = run.predict(frames[a : a + 5], 8.0, state)
        parts.append(t)
    # complete clips are final; the last window's scores are whole-video scores
    np.testing.assert_allclose(
        parts[-1]["frame_probs"], whole[-len(parts[-1]["frame_probs"]) :], rtol=1e-4, atol=1e-5
    )
    assert parts[-1]["start_s"] == pytest.approx((len(frames) - len(frames[a:])) / 8.0)
    assert state.clips_done == len(frames) // method.frames_per_clip


@pytest.mark.slow
def test_ucf_crime_layout_gives_the_native_auc(tmp_path, tiny_data_dir):
    """The same videos written losslessly in UCF-Crime's published tree (train videos with
    video-level labels only) train the same VADor: AUC_O within 1e-3."""
    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.layouts import write_layout

    native = tiny_vadllama(tiny_data_dir)
    root = str(tmp_path / "UCF_Crimes")
    synth = synthvad.SynthConfig(**dict(native.synthvad))
    write_layout(
        root,
        "ucf_crime",
        {"train": native.num_train_videos, "test": native.num_test_videos},
        synth,
        codec="ffv1",
    )
    ucf = tiny_vadllama(tiny_data_dir)
    ucf.dataset, ucf.dataset_dir = "ucf_crime", root
    a = runner.run(methods.build(native, str(tmp_path / "native")), "train_and_eval")
    b = runner.run(methods.build(ucf, str(tmp_path / "ucf")), "train_and_eval")
    assert abs(a["AUC_O"] - b["AUC_O"]) < 1e-3 and abs(a["AUC_A"] - b["AUC_A"]) < 1e-3


def test_paper_preset_without_weights_says_what_to_convert():
    c = vadllama_config.get_config("paper")
    buf = io.StringIO()
    assert paper.explain_missing_weights(c, stream=buf) == 2
    text = buf.getvalue()
    assert (
        "python -m vau_jax.convert --src=" in text and "--config.paper_checkpoints.vision=" in text
    )
    assert "blip2" in text.lower()


def test_paper_preset_builds_full_size_under_eval_shape_with_shardings():
    from flax import linen as nn

    from vau_jax import sharding
    from vau_jax.methods.vadllama.paper import paper_abstract_params

    c = vadllama_config.get_config("paper")
    trees = paper_abstract_params(c)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    counts = {}
    for name, tree in trees.items():
        specs = sharding.param_shardings(tree, mesh)  # raises if a param has no logical names
        n_specs = len(
            jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
        )
        leaves = jax.tree.leaves(nn.unbox(tree))
        assert n_specs == len(leaves)
        counts[name] = sum(int(np.prod(x.shape)) for x in leaves)
    assert 0.98e9 < counts["vision"] < 0.99e9  # EVA-ViT-g/14 (39 blocks, 1408 wide)
    assert 1.8e8 < counts["image_qformer"] < 1.9e8  # BLIP-2 Q-Former
    # Video-LLaMA's video Q-Former (2 layers, no text: 18.9M) + frame positions + AP + LTC
    assert 1.9e7 < counts["vador"] < 2.0e7


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout, keys",
    [
        ("tad", ("AUC_O", "AUC_A")),
        ("xd_violence", ("AP_trapz", "AP_step")),
        ("ubnormal", ("micro_AUC", "macro_AUC")),
        ("shanghaitech", ("micro_AUC", "macro_AUC")),
        ("folder", ("AUC_O", "AUC_A")),
    ],
)
def test_every_published_layout_trains_and_reports_its_metrics(
    layout, keys, tmp_path, tiny_data_dir
):
    """SynthVAD written in each published tree trains weakly (video labels) and is scored
    with that dataset's protocol (UCF-Crime: the equivalence test above)."""
    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.layouts import write_layout
    from vau_jax.main import run

    c = tiny_vadllama(tiny_data_dir)
    synth = synthvad.SynthConfig(**dict(c.synthvad))
    root = str(tmp_path / layout)
    n_train = 8 if layout == "shanghaitech" else 4  # its re-split keeps some train videos apart
    write_layout(root, layout, {"train": n_train, "test": 4}, synth)
    c.dataset, c.dataset_dir, c.dataset_fps = layout, root, float(synth.fps)
    c.phase1.steps = c.phase2.steps = 2
    workdir = str(tmp_path / "run")
    assert run(c, workdir, "train_and_eval") == 0
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in keys:
        assert 0.0 <= saved[key] <= 1.0, (key, saved)
    others = {"AUC_O", "AP_step", "micro_AUC"} - set(keys)  # the other protocols' names
    assert not others & set(saved)
