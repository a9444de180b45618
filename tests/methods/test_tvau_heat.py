"""Which AHD heatmaps RAE reads (methods/tvau/heat.py): segment means pooled like PyTorch's
adaptive average pooling over time, read the same way in training, evaluation and prediction."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("frames,segments", [(87, 16), (16, 16), (10, 4), (3, 5), (1, 4)])
def test_segment_means_are_adaptive_average_pooling_over_time(frames, segments):
    import torch

    from vau_jax.methods.tvau.heat import segment_means

    heat = np.random.default_rng(frames).random((frames, 3, 3)).astype(np.float32)
    got = segment_means(heat, segments)
    # reference: torch's adaptive_avg_pool1d over time, each patch a channel
    x = torch.from_numpy(heat.reshape(frames, 9).T.copy())[None]  # [1, 9, T]
    want = torch.nn.functional.adaptive_avg_pool1d(x, segments)[0].T.reshape(segments, 3, 3)
    assert got.shape == (segments, 3, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-7)


def test_segment_means_reject_empty_input():
    from vau_jax.methods.tvau.heat import segment_means

    with pytest.raises(ValueError, match="0 frames into 4 segments"):
        segment_means(np.zeros((0, 3, 3), np.float32), 4)


def test_segment_peaks_keep_a_moving_objects_heat():
    """``segment_peak``: the segment mean's shape at the strength of its frames' own maxima."""
    from vau_jax.methods.tvau.heat import segment_means, segment_peaks

    heat = np.zeros((8, 4, 4), np.float32)
    for t in range(8):  # an object lit at 0.8 that moves one patch per frame, 4 per segment
        heat[t, t % 4, t % 4] = 0.8
    heat[:, 0, 3] = 0.1  # and a faint still spot
    means, peaks = segment_means(heat, 2), segment_peaks(heat, 2)
    assert np.allclose(means.max(axis=(1, 2)), 0.2)  # the mean over time spreads it 4 ways
    np.testing.assert_allclose(peaks.max(axis=(1, 2)), [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(peaks, means * 4.0, rtol=1e-6)  # the same shape, rescaled
    # by hand on random heat: max of each segment = mean over its frames of frame maxima
    rng = np.random.default_rng(3)
    heat = rng.random((13, 3, 3)).astype(np.float32)
    got = segment_peaks(heat, 4)
    bins = [(0, 4), (3, 7), (6, 10), (9, 13)]  # adaptive bins of 13 frames into 4
    for k, (a, b) in enumerate(bins):
        want = heat[a:b].reshape(b - a, -1).max(axis=1).mean()
        assert got[k].max() == pytest.approx(want, rel=1e-6)
        mean = heat[a:b].mean(axis=0)
        np.testing.assert_allclose(got[k], mean * (want / mean.max()), rtol=1e-5)
    assert not segment_peaks(np.zeros((5, 2, 2), np.float32), 3).any()  # no heat stays none


def test_heat_frames_option_is_checked():
    import ml_collections

    from vau_jax.methods.tvau.heat import heat_frames

    c = ml_collections.ConfigDict({"rae": {"num_base": 4}})
    assert heat_frames(c) == "sampled"  # runs saved before the option existed
    c.rae.heat_frames = "segment_mean"
    assert heat_frames(c) == "segment_mean"
    c.rae.heat_frames = "segment_peak"
    assert heat_frames(c) == "segment_peak"
    c.rae.heat_frames = "segments"
    with pytest.raises(ValueError, match="rae.heat_frames='segments'"):
        heat_frames(c)


def test_segment_mean_heat_reaches_training_evaluation_and_prediction(tvau_run, monkeypatch):
    import vau_jax
    from vau_jax.data.synthvad import SynthConfig, render_video
    from vau_jax.methods.tvau import data as D
    from vau_jax.methods.tvau import evaluation as E
    from vau_jax.methods.tvau import predict as P
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.frozen import attach_frozen
    from vau_jax.methods.tvau.heat import video_heat

    run = vau_jax.load_run(tvau_run)
    m, params = run.method, run.params
    m.prepare()
    m.heat_frames = "segment_mean"
    ahd = params["ahd"]

    # training: attach_frozen's heat is each video's segment means of every frame's heat
    rows = Q.rae_rows(m, "train", "anomaly")[:4]
    _, heat = attach_frozen(m, params, rows, "train", None)
    i = int(rows[0]["video"])
    feats = m.feats["train"].video(i)
    _, grid = E.heatmaps(m, ahd, feats["taps"], grid=True)
    bins = np.array_split(np.arange(len(grid)), m.frames)  # equal to the bins when T % S == 0
    assert heat[i].shape == (m.frames, m.grid, m.grid)
    if len(grid) % m.frames == 0:
        want = np.stack([grid[b].mean(0) for b in bins])
        np.testing.assert_allclose(heat[i], want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(heat[i], video_heat(m, ahd, feats), rtol=0, atol=0)
    sampled = grid[D.sample_indices(len(grid), m.frames)]
    assert not np.allclose(heat[i], sampled)  # not the sampled frames' heat

    # evaluation: every row's batch carries its video's segment means as "heat"
    seen = []
    real = E.scorer(m).generate

    def spy(p, llm, rows, tok, attach, **kw):
        def recording(b):
            out = attach(b)
            seen.append((np.asarray(b["video"]), out["heat"]))
            return out

        return real(p, llm, rows, tok, attach=recording, **kw)

    monkeypatch.setattr(E.scorer(m), "generate", spy)
    answers = E.answer_questions(m, params, "test")
    assert answers and seen
    for v, h in seen[:2]:
        assert h.shape == (len(v), m.frames, m.grid, m.grid)
        want = video_heat(m, ahd, m.feats["test"].video(int(v[-1])))
        np.testing.assert_allclose(h[-1], want, rtol=0, atol=0)

    # prediction on any video: the same pooling of that video's frames
    video = render_video(11, SynthConfig(min_seconds=3.0, max_seconds=3.0), "fire", "x")
    feats = P.video_features(m, video.frames, video.fps)
    batch = P._attach(m, feats, params)({"video": np.zeros(2, np.int64)})
    assert batch["heat"].shape == (2, m.frames, m.grid, m.grid)
    np.testing.assert_allclose(batch["heat"][1], video_heat(m, ahd, feats), rtol=0, atol=0)
    # predict hands over the grid heatmaps it already made: the same heat, no second AHD pass
    _, grid = E.heatmaps(m, ahd, feats["taps"], grid=True)
    given = P._attach(m, feats, params, grid)({"video": np.zeros(1, np.int64)})
    np.testing.assert_array_equal(given["heat"][0], batch["heat"][0])
    m.heat_frames = "sampled"
    assert "heat" not in P._attach(m, feats, params)({"video": np.zeros(2, np.int64)})


def test_cross_fitting_gives_each_video_its_fold_ahds_segment_means(tvau_run, monkeypatch):
    """With segment means and ``rae.heatmap_folds``, each training video's heat is the segment
    means of the fold AHD that did not see it (crossfit.py), not the sampled frames'."""
    import jax

    import vau_jax
    from vau_jax.methods.tvau import crossfit
    from vau_jax.methods.tvau.heat import video_heat

    run = vau_jax.load_run(tvau_run)
    m = run.method
    m.config.rae.heat_frames = "segment_mean"
    m.config.rae.heatmap_folds = 2
    m.prepare()
    ahd = run.params["ahd"]
    # two known fold AHDs instead of training them: the run's, and the run's with each
    # tap's weight tilted, so the folds' heat differs
    other = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 1.5 if "layer_weights" in jax.tree_util.keystr(p) else x, ahd
    )
    stacked = jax.tree.map(lambda a, b: np.stack([np.asarray(a), np.asarray(b)]), ahd, other)
    monkeypatch.setattr(crossfit, "train_fold_ahds", lambda method, folds, seed: stacked)
    heat = m.out_of_fold_heat()
    videos = m.dataset.split("train")
    labels = [m.records[v.id].is_anomalous for v in videos]
    folds = crossfit.fold_assignment(labels, 2, int(m.config.seed))
    assert sorted(heat) == list(range(len(videos)))
    differs = 0
    for i in range(len(videos)):
        feats = m.feats["train"].video(i)
        want = video_heat(m, ahd if folds[i] == 0 else other, feats)
        np.testing.assert_array_equal(heat[i], want)
        differs += not np.allclose(want, video_heat(m, ahd, feats))
    assert differs == int((folds == 1).sum()) > 0  # fold 1's videos read the tilted AHD


def _script():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "tvau_heat_readings.py")
    spec = importlib.util.spec_from_file_location("tvau_heat_readings", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, path


def test_heat_readings_script_summarises_each_video_as_rae_would_read_it():
    from sklearn.metrics import roc_auc_score

    from vau_jax.methods.tvau.data import sample_indices
    from vau_jax.methods.tvau.heat import segment_means

    mod, _ = _script()
    rng = np.random.default_rng(0)
    grid = rng.random((40, 3, 3)).astype(np.float32) * 0.2
    grid[7, 1, 1] = 0.9  # one frame's flicker: the sampled frames may or may not hold it
    ts = np.arange(40) / 8.0
    r = mod.readings(grid, ts, 16, 0.5)
    assert r["sampled"] == pytest.approx(grid[sample_indices(40, 16)].max())
    assert r["segment_mean"] == pytest.approx(segment_means(grid, 16).max())
    assert r["segment_mean"] < 0.9 and r["frame_score"] < 0.9  # the flicker averaged down
    # segment peaks: the mean over each segment of its frames' maxima, at least the mean map's
    peaks = segment_means(grid.reshape(40, -1).max(axis=1)[:, None, None], 16)
    assert r["segment_peak"] == pytest.approx(peaks.max())
    assert r["segment_peak"] >= r["segment_mean"]
    evidence = rng.random(20)
    labels = np.arange(20) % 2 == 0
    s = mod.separation(evidence, labels)
    assert s["auc"] == pytest.approx(roc_auc_score(labels, evidence), abs=1e-12)
    assert 0.5 <= s["best_acc"] <= 1.0


def test_heat_readings_script_runs_on_a_run(tvau_run):
    import subprocess
    import sys

    _, path = _script()
    out = subprocess.run(
        [sys.executable, path, tvau_run, "--splits=validation,test"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [x for x in out.stdout.splitlines() if "AUC" in x]
    assert len(lines) == 2 * 6
    assert {x.split()[0] for x in lines} == {
        "sampled", "segment_mean", "gauss_0.25", "gauss_0.5", "segment_peak", "frame_score"
    }  # fmt: skip
