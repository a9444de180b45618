"""SynthVAD writes the real formats; the readers read them back to its ground truth."""

import json
import subprocess
import sys

import numpy as np
import pytest

from vau_jax.data.formats import read_ubnormal, read_ucf_crime, read_xd_violence

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthvad")
    cmd = [
        sys.executable, "-m", "vau_jax.data.synthvad", f"--out={out}", "--split=test",
        "--num_videos=6", "--write_videos", "--min_seconds=2", "--max_seconds=3",
        "--anomaly_prob=0.7",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    meta = json.loads((out / "meta.json").read_text())
    return out, {v["id"]: v for v in meta["videos"]}, meta


def test_ucf_crime_roundtrip(synth):
    out, truth, _ = synth
    recs = read_ucf_crime(out / "Temporal_Anomaly_Annotation.txt", video_dir=str(out / "videos"))
    assert sorted(r.id for r in recs) == sorted(truth)
    assert any(r.is_anomalous for r in recs) and any(not r.is_anomalous for r in recs)
    for r in recs:
        t = truth[r.id]
        assert r.label == t["class"]
        assert [list(iv) for iv in r.intervals] == t["intervals_frames"]
        np.testing.assert_allclose(r.intervals_seconds(t["fps"]), t["intervals_seconds"] or [])
        expected = np.zeros(t["n_frames"], np.uint8)
        for s, e in t["intervals_frames"]:
            expected[s:e] = 1
        np.testing.assert_array_equal(r.frame_labels(t["n_frames"]), expected)


def test_xd_violence_roundtrip(synth):
    out, truth, _ = synth
    recs = read_xd_violence(out / "annotations.txt", test_videos=out / "test_list.txt")
    assert sorted(r.id for r in recs) == sorted(truth)
    for r in recs:
        assert [list(iv) for iv in r.intervals] == truth[r.id]["intervals_frames"]
        assert (r.label == "Normal") == (truth[r.id]["class"] == "Normal")


def test_ubnormal_roundtrip_with_boxes(synth):
    from vau_jax.data.synthvad.source import render_split_video
    from vau_jax.data.synthvad.types import SynthConfig
    from vau_jax.data.synthvad.writers import ubnormal_tracks

    out, truth, meta = synth
    recs = {r.id: r for r in read_ubnormal(out / "videos")}
    assert sorted(recs) == sorted(truth)
    cfg_dict = meta["configs"]["test"]
    cfg = SynthConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()})
    for index, vid in enumerate(meta["splits"]["test"]):
        r, t = recs[vid], truth[vid]
        assert r.n_frames == t["n_frames"]
        assert (r.label == "Normal") == (t["class"] == "Normal")
        if r.label == "Normal":
            assert r.fps == t["fps"]  # probed from the mp4
            continue
        assert [list(iv) for iv in r.intervals] == t["intervals_frames"]
        video = render_split_video("test", index, cfg)
        assert video.video_id == vid
        for ub_id, start, end, track_index in ubnormal_tracks(video):
            track = video.tracks[track_index]
            keep = video.labels[track.frames] == 1
            want = np.concatenate([track.frames[keep, None], track.boxes[keep]], 1)
            np.testing.assert_array_equal(r.tracks[ub_id], want)
            assert (r.tracks[ub_id][0, 0], r.tracks[ub_id][-1, 0]) == (start, end)
