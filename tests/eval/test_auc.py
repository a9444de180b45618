"""ROC AUC / AP against scikit-learn, and the frame-level protocols built on them."""

# Float64 parity with scikit-learn: measured at most 2.2e-16 (AVX2 EPYC); 1e-14 below.

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d
from sklearn import metrics as skm

from vau_jax.data.formats.record import VideoRecord
from vau_jax.eval.metrics import auc as auc_lib
from vau_jax.eval.metrics import frame_level as fa


@st.composite
def binary_case(draw):
    """Labels with both classes; scores from a tiny value set (heavy ties) or floats."""
    n = draw(st.integers(2, 80))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    labels[draw(st.integers(0, n - 1))] = 0
    labels[(labels.index(0) + 1) % n] = 1  # both classes present
    if draw(st.booleans()):
        levels = draw(st.integers(1, 4))
        scores = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
        scores = np.asarray(scores, np.float64) / max(levels, 1)
    else:
        scores = np.asarray(
            draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=n, max_size=n))
        )
    return np.asarray(labels), scores


@pytest.mark.parity
@settings(max_examples=300, deadline=None, derandomize=True)
@given(binary_case())
def test_roc_auc_matches_sklearn(case):
    labels, scores = case
    np.testing.assert_allclose(
        auc_lib.roc_auc(labels, scores), skm.roc_auc_score(labels, scores), atol=1e-14
    )


@pytest.mark.parity
@settings(max_examples=300, deadline=None, derandomize=True)
@given(binary_case())
def test_ap_definitions_match_sklearn(case):
    labels, scores = case
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    np.testing.assert_allclose(
        auc_lib.ap_trapz(labels, scores), skm.auc(recall, precision), atol=1e-14
    )
    np.testing.assert_allclose(
        auc_lib.ap_step(labels, scores), skm.average_precision_score(labels, scores), atol=1e-14
    )
    ours_p, ours_r, ours_t = auc_lib.precision_recall_curve(labels, scores)
    sk_p, sk_r, sk_t = skm.precision_recall_curve(labels, scores)
    np.testing.assert_allclose(ours_p, sk_p)
    np.testing.assert_allclose(ours_r, sk_r)
    np.testing.assert_allclose(ours_t, sk_t)


@pytest.mark.parity
def test_large_inputs_match_sklearn():
    rng = np.random.default_rng(5)
    labels = rng.random(200_000) < 0.1
    scores = np.round(rng.random(200_000) + 0.3 * labels, 3)  # many ties
    assert auc_lib.roc_auc(labels, scores) == pytest.approx(
        skm.roc_auc_score(labels, scores), abs=1e-10
    )
    assert auc_lib.ap_step(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-10
    )
    p, r, _ = skm.precision_recall_curve(labels, scores)
    assert auc_lib.ap_trapz(labels, scores) == pytest.approx(skm.auc(r, p), abs=1e-10)


def test_all_tied_scores_give_half_and_prevalence():
    labels = np.array([0, 1, 1, 0, 1])
    scores = np.full(5, 0.3)
    assert auc_lib.roc_auc(labels, scores) == pytest.approx(0.5)
    assert auc_lib.ap_step(labels, scores) == pytest.approx(0.6)
    # PR curve: (R=1, P=0.6) then (R=0, P=1): trapezoid = (0.6 + 1) / 2
    assert auc_lib.ap_trapz(labels, scores) == pytest.approx(0.8)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1]])
def test_single_class_raises(labels):
    scores = np.linspace(0, 1, len(labels))
    for fn in (auc_lib.roc_auc, auc_lib.ap_trapz, auc_lib.ap_step):
        with pytest.raises(ValueError, match="both classes"):
            fn(np.asarray(labels), scores)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="not finite"):
        auc_lib.roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="labels"):
        auc_lib.roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        auc_lib.roc_auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))


# ----------------------------------------------------------------------------- frame protocols


def _rec(vid, n_frames, intervals):
    return VideoRecord(id=vid, n_frames=n_frames, intervals=list(intervals))


def test_ucf_protocol_repeats_and_concatenates():
    rng = np.random.default_rng(0)
    recs = [_rec("a", 48, [(10, 30)]), _rec("b", 32, []), _rec("c", 60, [(0, 5)])]
    scores = {"a": rng.random(3), "b": rng.random(2), "c": rng.random(4)}  # c: 64 >= 60 frames
    out = fa.frame_auc(recs, scores)
    lab = {r.id: r.frame_labels() for r in recs}
    frames = {k: np.repeat(v, 16)[: len(lab[k])] for k, v in scores.items()}
    y_all = np.concatenate([lab[k] for k in "abc"])
    s_all = np.concatenate([frames[k] for k in "abc"])
    assert out["AUC_O"] == pytest.approx(skm.roc_auc_score(y_all, s_all), abs=1e-14)
    y_a = np.concatenate([lab[k] for k in "ac"])
    s_a = np.concatenate([frames[k] for k in "ac"])
    assert out["AUC_A"] == pytest.approx(skm.roc_auc_score(y_a, s_a), abs=1e-14)


def test_ucf_protocol_cuts_unscored_tail_and_rejects_mismatch():
    # 70 frames, 4 snippets = 64 frames: the 6 unscored frames are cut from the ground truth.
    labels, frames = fa.ucf_frames(np.array([0.1, 0.2, 0.3, 0.4]), _rec("v", 70, [(60, 70)]))
    assert labels.shape == frames.shape == (64,)
    assert labels.sum() == 4
    with pytest.raises(ValueError, match="'v'.*covers? 48 frames.*70 frames"):
        fa.ucf_frames(np.ones(3), _rec("v", 70, []))
    with pytest.raises(ValueError, match="'w'.*starts at frame 100"):
        fa.ucf_frames(np.ones(4), _rec("w", None, [(100, 120)]))


def _umil_reference(seg_scores, n, windows):
    """Loop version of the UMIL/VAD-LLaMA mapping, written from the protocol text."""
    ratio = float(n) / float(len(seg_scores))
    out = np.zeros(n)
    for i, s in enumerate(seg_scores):
        out[int(i * ratio + 0.5) : int((i + 1) * ratio + 0.5)] = s
    if windows:
        size = n // windows
        res = np.zeros(n)
        for w in range(windows):
            if size:
                res[w * size : (w + 1) * size] = out[w * size : (w + 1) * size].mean()
        if n > size * windows:
            res[size * windows :] = out[size * windows :].mean()
        out = res
    return out


@pytest.mark.parametrize(
    "n,t,windows",
    [(100, 7, 0), (1000, 32, 32), (33, 40, 0), (20, 5, 32), (517, 13, 32), (64, 64, 32)],
)
def test_umil_mapping_matches_loop(n, t, windows):
    seg = np.random.default_rng(n + t).random(t)
    _, frames = fa.umil_frames(seg, _rec("v", n, []), windows)
    np.testing.assert_allclose(frames, _umil_reference(seg, n, windows), atol=1e-14)


def test_frame_auc_id_and_value_errors():
    recs = [_rec("a", 32, [(0, 10)]), _rec("b", 32, [])]
    with pytest.raises(ValueError, match="no scores.*b"):
        fa.frame_auc(recs, {"a": np.ones(2)})
    with pytest.raises(ValueError, match="not in the annotation.*zz"):
        fa.frame_auc(recs, {"a": np.ones(2), "b": np.ones(2), "zz": np.ones(2)})
    with pytest.raises(ValueError, match="'b'.*not finite"):
        fa.frame_auc(recs, {"a": np.ones(2), "b": np.array([0.1, np.inf])})
    with pytest.raises(ValueError, match="unknown protocol"):
        fa.frame_auc(recs, {"a": np.ones(2), "b": np.ones(2)}, protocol="xx")


@pytest.mark.parity
def test_xd_ap_unlisted_videos_are_normal():
    rng = np.random.default_rng(1)
    recs = [_rec("fight", None, [(16, 64)])]
    scores = {"fight": rng.random(6), "calm": rng.random(3)}
    out = fa.xd_ap(recs, scores)
    y = np.concatenate([np.zeros(48), recs[0].frame_labels(96)])  # sorted ids: calm, fight
    s = np.concatenate([np.repeat(scores["calm"], 16), np.repeat(scores["fight"], 16)])
    p, r, _ = skm.precision_recall_curve(y, s)
    assert out["AP_trapz"] == pytest.approx(skm.auc(r, p), abs=1e-14)
    assert out["AP_step"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-14)


@pytest.mark.parity
@pytest.mark.parametrize("sigma", [0.0, 3.0])
def test_ubnormal_micro_macro(sigma):
    rng = np.random.default_rng(2)
    recs = [_rec("v1", 50, [(10, 20)]), _rec("v2", 40, []), _rec("v3", 30, [(0, 30)])]
    scores = {r.id: rng.random(r.n_frames) for r in recs}
    out = fa.ubnormal_auc(recs, scores, sigma=sigma)
    smooth = {k: gaussian_filter1d(v, sigma) if sigma else v for k, v in scores.items()}
    ys = [r.frame_labels() for r in recs]
    ss = [smooth[r.id] for r in recs]
    micro = skm.roc_auc_score(np.concatenate(ys), np.concatenate(ss))
    macro = np.mean([skm.roc_auc_score(np.r_[0, y, 1], np.r_[0.0, s, 1.0]) for y, s in zip(ys, ss)])
    assert out["micro_AUC"] == pytest.approx(micro, abs=1e-14)
    assert out["macro_AUC"] == pytest.approx(macro, abs=1e-14)
    with pytest.raises(ValueError, match="'v2': 39 frame scores but 40"):
        fa.ubnormal_auc(recs, {**scores, "v2": np.ones(39)})
