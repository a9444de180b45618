"""SynthVAD writers: the CLI output (mp4, UCF-Crime, XD-Violence, UBnormal, meta.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from vau_jax.data.synthvad import NORMAL, SynthConfig, render_split_video
from vau_jax.data.synthvad.writers import (
    class_name,
    frame_intervals,
    ucf_lines,
    write_split,
)

N = 4
TINY = SynthConfig(min_seconds=1.0, max_seconds=2.5)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthvad_cli"))
    cmd = [
        sys.executable,
        "-m",
        "vau_jax.data.synthvad",
        f"--out={out}",
        "--split=test",
        f"--num_videos={N}",
        "--write_videos",
        "--size=64",
        "--min_seconds=1",
        "--max_seconds=2.5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["videos"] == N
    videos = [render_split_video("test", i, TINY) for i in range(N)]
    return out, videos


def test_files_exist_and_no_temp_files(written):
    out, videos = written
    for name in (
        "meta.json",
        "Temporal_Anomaly_Annotation.txt",
        "annotations.txt",
        "test_list.txt",
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    for v in videos:
        assert os.path.isfile(os.path.join(out, "videos", f"{v.video_id}.mp4"))
        has_annot = os.path.isdir(os.path.join(out, "videos", f"{v.video_id}_annotations"))
        assert has_annot == (v.anomaly_type != NORMAL)
    assert {v.anomaly_type != NORMAL for v in videos} == {True, False}
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    assert not leftovers


def test_mp4_decodes_with_right_frames_and_fps(written):
    out, videos = written
    for v in videos:
        with av.open(os.path.join(out, "videos", f"{v.video_id}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name in ("h264", "mpeg4")
            assert float(stream.average_rate) == pytest.approx(v.fps)
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert frames.shape == v.frames.shape
        assert np.abs(frames.astype(np.int16) - v.frames).mean() < 10  # lossy but close


def test_ubnormal_tracks_and_masks_equal_rendered(written):
    out, videos = written
    for v in videos:
        if v.anomaly_type == NORMAL:
            continue
        annot = os.path.join(out, "videos", f"{v.video_id}_annotations")
        with open(os.path.join(annot, f"{v.video_id}_tracks.txt")) as f:
            rows = [tuple(int(x) for x in line.split(",")) for line in f if line.strip()]
        anomalous = [i for i, tr in enumerate(v.tracks) if tr.anomalous]
        assert [r[0] for r in rows] == list(range(1, len(anomalous) + 1))
        union = np.zeros(v.num_frames, bool)
        for _, start, end in rows:
            union[start : end + 1] = True  # inclusive end
        np.testing.assert_array_equal(union, v.labels.astype(bool))
        pngs = sorted(p for p in os.listdir(annot) if p.endswith("_gt.png"))
        assert pngs == [f"{v.video_id}_{t:04d}_gt.png" for t in range(v.num_frames)]
        for t, name in enumerate(pngs):
            mask = np.asarray(Image.open(os.path.join(annot, name)))
            assert mask.dtype == np.uint8 and mask.shape == v.masks.shape[1:]
            expect = np.zeros_like(mask)
            if v.labels[t]:
                for ub_id, i in enumerate(anomalous, start=1):
                    expect[v.masks[t] == i + 1] = ub_id
            np.testing.assert_array_equal(mask, expect)


def test_ucf_xd_annotations(written):
    out, videos = written
    with open(os.path.join(out, "Temporal_Anomaly_Annotation.txt")) as f:
        ucf = [line.split() for line in f if line.strip()]
    assert [row[0] for row in ucf] == [f"{v.video_id}.mp4" for v in videos]
    for row, v in zip(ucf, videos):
        nums = [int(x) for x in row[2:]]
        runs = frame_intervals(v.labels)
        if v.anomaly_type == NORMAL:
            assert row[1] == "Normal" and nums == [-1, -1, -1, -1]
        else:
            assert row[1] == class_name(v.anomaly_type)
            assert nums[:2] == list(runs[0])
            labels = np.zeros(v.num_frames, bool)
            for s, e in zip(nums[::2], nums[1::2]):
                if s != -1:
                    labels[s:e] = True  # 0-based half-open
            np.testing.assert_array_equal(labels, v.labels.astype(bool))
    with open(os.path.join(out, "annotations.txt")) as f:
        xd = {line.split()[0]: [int(x) for x in line.split()[1:]] for line in f if line.strip()}
    assert set(xd) == {v.video_id for v in videos if v.anomaly_type != NORMAL}
    for v in videos:
        if v.video_id in xd:
            assert xd[v.video_id] == [x for r in frame_intervals(v.labels) for x in r]


def test_meta_json(written):
    out, videos = written
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    assert meta["splits"]["test"] == [v.video_id for v in videos]
    by_id = {m["id"]: m for m in meta["videos"]}
    for v in videos:
        m = by_id[v.video_id]
        assert m["fps"] == v.fps and m["n_frames"] == v.num_frames
        assert m["anomaly_type"] == v.anomaly_type and m["seed"] == v.seed
        np.testing.assert_allclose(np.array(m["intervals_seconds"]).reshape(-1, 2), v.intervals)
        assert m["event_description"] == v.event_description


def test_second_split_merges(tmp_path):
    write_split(str(tmp_path), "test", 2, TINY, write_videos=False)
    meta = write_split(str(tmp_path), "train", 2, TINY, write_videos=False)
    assert set(meta["splits"]) == {"test", "train"}
    assert len(meta["videos"]) == 4
    with open(tmp_path / "Temporal_Anomaly_Annotation.txt") as f:
        names = [line.split()[0] for line in f]
    assert names == ["test_000000.mp4", "test_000001.mp4"]  # train: video-level labels only
    with open(tmp_path / "annotations.txt") as f:
        assert not [line for line in f if line.startswith("train_")]
    assert not [d for d in os.listdir(tmp_path / "videos") if d.startswith("train_")]
    assert not os.path.exists(tmp_path / "videos" / "test_000000.mp4")


def test_ucf_merges_extra_runs():
    entry = {"id": "v", "class": "Fire", "intervals_frames": [[1, 3], [5, 6], [8, 9]]}
    assert ucf_lines([entry]) == "v.mp4  Fire  1  3  5  9\n"


def test_h264_is_deterministic_at_small_frame_sizes(tmp_path):
    """The same frames encode to the same bytes every time: x264's macroblock-tree rate
    control made 64x64 encodes differ from call to call (decoded frames up to 38 levels
    apart), so two data dirs of one code held different videos."""
    from vau_jax.data.synthvad.render import render_video
    from vau_jax.data.synthvad.writers import write_video

    frames = render_video(7, SynthConfig(height=64, width=64, fps=8.0)).frames
    blobs, decoded = set(), set()
    for i in range(4):
        path = str(tmp_path / f"v{i}.mp4")
        if write_video(path, frames, 8.0) != "libx264":
            pytest.skip("this PyAV build has no libx264")
        with open(path, "rb") as f:
            blobs.add(f.read())
        with av.open(path) as c:
            decoded.add(
                np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]).tobytes()
            )
    assert len(decoded) == 1 and len(blobs) == 1
