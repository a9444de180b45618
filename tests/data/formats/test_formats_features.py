"""Pre-extracted feature layouts: I3D ten-crop and VadCLIP per-crop files."""

import numpy as np
import pytest

from vau_jax.data.formats import FormatError, load_features, read_features


def test_i3d(tmp_path):
    (tmp_path / "Abuse").mkdir()
    a = np.random.default_rng(0).normal(size=[5, 10, 2048]).astype(np.float32)
    np.save(tmp_path / "Abuse" / "Abuse028_x264_i3d.npy", a)
    np.save(tmp_path / "Normal_Videos_003_x264_i3d.npy", np.zeros([3, 10, 2048], np.float32))
    np.save(tmp_path / "ignored.npy", np.zeros(3))
    recs = read_features(tmp_path, "i3d")
    assert [r.id for r in recs] == ["Abuse028_x264", "Normal_Videos_003_x264"]
    assert recs[0].label == "Abuse" and recs[1].label == "Normal"
    assert recs[0].extra["n_snippets"] == 5 and recs[0].extra["feature_shape"] == (5, 10, 2048)
    np.testing.assert_array_equal(load_features(recs[0]), a)
    np.testing.assert_array_equal(load_features(recs[0], crop=3), a[:, 3])


def test_vadclip(tmp_path):
    rng = np.random.default_rng(1)
    crops = [rng.normal(size=[4, 512]).astype(np.float32) for _ in range(10)]
    (tmp_path / "Abuse").mkdir()
    (tmp_path / "Testing_Normal_Videos_Anomaly").mkdir()
    for k, c in enumerate(crops):
        np.save(tmp_path / "Abuse" / f"Abuse028_x264__{k}.npy", c)
    np.save(tmp_path / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_003_x264__0.npy", crops[0])
    a, n = read_features(tmp_path, "vadclip")
    assert a.label == "Abuse" and n.label == "Normal"
    assert a.extra["crop_ids"] == list(range(10)) and a.extra["n_snippets"] == 4
    got = load_features(a)
    assert got.shape == (4, 10, 512)
    np.testing.assert_array_equal(got[:, 7], crops[7])
    np.testing.assert_array_equal(load_features(a, crop=2), crops[2])


def test_wrong_rank_and_mismatched_crops(tmp_path):
    np.save(tmp_path / "v_i3d.npy", np.zeros([3, 2048], np.float32))
    with pytest.raises(FormatError, match=r"v_i3d.npy: expected a 3-D array"):
        read_features(tmp_path, "i3d")
    d = tmp_path / "clip" / "Abuse"
    d.mkdir(parents=True)
    np.save(d / "x__0.npy", np.zeros([3, 512]))
    np.save(d / "x__1.npy", np.zeros([4, 512]))
    with pytest.raises(FormatError, match=r"x__1.npy: shape \(4, 512\) differs"):
        read_features(tmp_path / "clip", "vadclip")
    with pytest.raises(FormatError, match="no feature files"):
        read_features(tmp_path / "clip", "i3d")
