"""The three snippet -> frame protocols on real-list edge cases, with hand-derived AUCs.

TAD's list writes normal videos as ``0 n_frames`` and has anomalies that start at frame 0;
VAD-LLaMA's public evaluation marks ``gt[s:e] = 1`` only when ``s > 0``. The expected values
below are counted by hand (every video has 64 frames and 4 scores, so each score covers 16
whole frames under every protocol and the 32 two-frame windows keep the values: a frame AUC
equals the AUC over the 4-frame-blocks, i.e. over the scores themselves).
"""

from __future__ import annotations

import numpy as np
import pytest

from vau_jax.data.formats import read_umil
from vau_jax.data.formats.record import VideoRecord
from vau_jax.data.formats.umil import NormalIntervalsWarning
from vau_jax.eval.metrics import frame_level as fa

LIST = """\
frames/abnormal/A.mp4 64 1 16 48
frames/abnormal/B.mp4 64 1 0 32
frames/normal/N.mp4 64 normal 0 64
"""
# A: anomaly in frames 16..47 = scores 1, 2.  B: anomaly from frame 0 = scores 0, 1.
# N: a normal video written as "0 64".
SCORES = {
    "A": np.array([0.10, 0.80, 0.68, 0.72]),
    "B": np.array([0.70, 0.60, 0.30, 0.75]),
    "N": np.array([0.65, 0.40, 0.25, 0.05]),
}


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "TAD_test.txt"
    path.write_text(LIST)
    with pytest.warns(NormalIntervalsWarning):
        return read_umil(path)


# ucf / umil: positives A1 .80, A2 .68, B0 .70, B1 .60; negatives A0 .10, A3 .72, B2 .30,
# B3 .75, N .65 .40 .25 .05. Negatives below each positive: .80 -> 8, .68 -> 6 (not .72,
# .75), .70 -> 6, .60 -> 5 (not .72, .75, .65): AUC_O = 25 / 32. AUC_A (A, B; negatives .10
# .72 .30 .75): .80 -> 4, .68 -> 2, .70 -> 2, .60 -> 2: 10 / 16.
AS_WRITTEN = {"AUC_O": 25 / 32, "AUC_A": 10 / 16}
# vadllama: B's interval starts at 0, so B is normal. Positives A1 .80, A2 .68; negatives
# A0 .10, A3 .72, B .70 .60 .30 .75, N .65 .40 .25 .05. .80 -> 10, .68 -> 7 (not .72, .70,
# .75): AUC_O = 17 / 20. AUC_A: only A (negatives .10, .72): .80 -> 2, .68 -> 1: 3 / 4.
VADLLAMA = {"AUC_O": 17 / 20, "AUC_A": 3 / 4}


@pytest.mark.parametrize(
    ("protocol", "windows", "expected"),
    [
        ("ucf", 0, AS_WRITTEN),
        ("umil", 0, AS_WRITTEN),
        ("umil", 32, AS_WRITTEN),
        ("vadllama", 0, VADLLAMA),
        ("vadllama", 32, VADLLAMA),
    ],
)
def test_normal_written_as_0_n_and_anomaly_from_frame_0(records, protocol, windows, expected):
    out = fa.frame_auc(records, SCORES, protocol=protocol, windows=windows)
    assert out == pytest.approx(expected, abs=1e-12)
    videos = {vid: labels for vid, labels, _ in fa.video_frames(records, SCORES, protocol=protocol)}
    assert videos["N"].sum() == 0  # the normal video is normal under every protocol
    assert videos["A"].sum() == 32
    assert videos["B"].sum() == (0 if protocol == "vadllama" else 32)


@pytest.mark.parametrize("protocol", fa.PROTOCOLS)
@pytest.mark.parametrize("n_frames", [64, None])
def test_interval_past_the_last_frame_is_clipped(protocol, n_frames):
    # 64 frames (or 16 * 4 scores when the file has no frame counts), interval [40, 70)
    rec = VideoRecord(id="v", n_frames=n_frames, intervals=[(40, 70)])
    [(_, labels, frames)] = fa.video_frames([rec], {"v": np.arange(4.0)}, protocol=protocol)
    assert labels.shape == frames.shape == (64,)
    np.testing.assert_array_equal(np.flatnonzero(labels), np.arange(40, 64))


def _public_loop(seg_scores, n, intervals):
    """VAD-LLaMA's evaluate_result for one video, as loops (written from the public code)."""
    gt = np.zeros(n, np.int8)
    for s, e in intervals:
        if s > 0:
            gt[s:e] = 1
    r = float(n) / float(len(seg_scores))
    ans = np.zeros(n, np.float32)
    for i, v in enumerate(seg_scores):
        ans[int(i * r + 0.5) : int((i + 1) * r + 0.5)] = v
    size = n // 32
    out = np.zeros_like(ans)
    for w in range(32):
        if size:  # the public code assigns the NaN mean of an empty slice to an empty slice
            out[size * w : size * (w + 1)] = np.mean(ans[size * w : size * (w + 1)])
    if n > size * 32:
        out[size * 32 :] = np.mean(ans[size * 32 :])
    return gt, out


@pytest.mark.parametrize(
    ("n", "t", "intervals"),
    [
        (1266, 20, [(150, 420), (680, 1267)]),  # UCF-Crime Arson011: end past the last frame
        (255, 4, [(0, 256)]),  # TAD: starts at frame 0 and ends past the end
        (20, 5, [(3, 9)]),  # fewer frames than windows
        (33, 40, [(1, 2)]),  # more scores than frames
        (517, 13, []),
        (1000, 32, [(999, 1000)]),
    ],
)
def test_vadllama_matches_the_public_loop(n, t, intervals):
    rng = np.random.default_rng(n * 7 + t)
    for seg in (rng.random(t), np.round(rng.random(t), 1)):  # the second with ties
        rec = VideoRecord(id="v", n_frames=n, intervals=intervals)
        labels, frames = fa.vadllama_frames(seg, rec)
        want_labels, want_frames = _public_loop(seg, n, intervals)
        np.testing.assert_array_equal(labels, want_labels)
        assert frames.dtype == np.float32
        np.testing.assert_array_equal(frames, want_frames)


def test_protocol_window_rules():
    recs = [VideoRecord(id="a", n_frames=64, intervals=[(8, 40)])]
    scores = {"a": np.linspace(0, 1, 4)}
    with pytest.raises(ValueError, match="'vadllama' protocol always averages over 32"):
        fa.frame_auc(
            recs + [VideoRecord(id="b", n_frames=64)],
            scores | {"b": np.ones(4)},
            protocol="vadllama",
            windows=8,
        )
    with pytest.raises(ValueError, match="window averaging belongs to"):
        fa.frame_auc(recs, scores, protocol="ucf", windows=32)


def test_xd_ap_under_vadllama():
    # annotations.txt lists only anomalous videos; "calm" is unlisted (normal, n_frames unknown)
    recs = [VideoRecord(id="fight", intervals=[(16, 48)])]
    out = fa.xd_ap(
        recs,
        {"fight": np.array([0.1, 0.9, 0.8, 0.2]), "calm": np.full(4, 0.05)},
        protocol="vadllama",
    )
    # positives (scores .9, .8) rank above every negative: both APs are 1
    assert out == pytest.approx({"AP_trapz": 1.0, "AP_step": 1.0})
