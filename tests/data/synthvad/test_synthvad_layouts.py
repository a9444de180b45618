"""SynthVAD dataset-tree writers: lossless FFV1, UCA captions, write_layout checks and the CLI."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vau_jax.data.formats import read_uca
from vau_jax.data.formats.xd_violence import XD_CLASSES, xd_labels
from vau_jax.data.synthvad import ANOMALY_TYPES, NORMAL, SynthConfig, render_split_video
from vau_jax.data.synthvad.__main__ import main
from vau_jax.data.synthvad.captions import clock, uca_entry, uca_segments, write_uca
from vau_jax.data.synthvad.layouts import XD_CODES, write_layout, xd_name
from vau_jax.data.synthvad.writers import class_name, write_video
from vau_jax.data.video import probe, read_frames

CONFIG = SynthConfig(min_seconds=3, max_seconds=3, anomaly_prob=0.6)


def test_ffv1_is_lossless_for_any_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 34, 46, 3), dtype=np.uint8)
    path = str(tmp_path / "noise.mkv")
    assert write_video(path, frames, 8.0, "ffv1") == "ffv1"
    info = probe(path)
    assert (info.codec, info.n_frames, info.fps, info.width, info.height) == (
        "ffv1",
        5,
        8.0,
        46,
        34,
    )
    np.testing.assert_array_equal(read_frames(path).frames, frames)


def test_h264_is_close_but_lossy(tmp_path):
    video = render_split_video("test", 0, CONFIG)
    path = str(tmp_path / "v.mp4")
    write_video(path, video.frames, video.fps, "h264")
    decoded = read_frames(path).frames
    assert decoded.shape == video.frames.shape
    assert np.abs(decoded.astype(np.int16) - video.frames).mean() < 10
    with pytest.raises(ValueError, match="unknown codec"):
        write_video(str(tmp_path / "x.avi"), video.frames, video.fps, "xvid")


def test_ffv1_trees_decode_to_the_rendered_frames(tmp_path):
    """Training on the written files sees exactly the rendered videos."""
    root = str(tmp_path / "folder")
    meta = write_layout(root, "folder", {"test": 3}, CONFIG, codec="ffv1")
    for i, v in enumerate(meta["videos"]):
        video = render_split_video("test", i, CONFIG)
        assert v["path"] == f"videos/{video.video_id}.mkv"
        np.testing.assert_array_equal(
            read_frames(os.path.join(root, v["path"])).frames, video.frames
        )
    root = str(tmp_path / "shanghaitech")
    meta = write_layout(root, "shanghaitech", {"train": 3}, CONFIG, codec="ffv1")
    for i, v in enumerate(meta["videos"]):
        video = render_split_video("train", i, CONFIG)
        path = os.path.join(root, v["path"])
        if video.anomaly_type == NORMAL:  # training/videos/<id>.mkv
            np.testing.assert_array_equal(read_frames(path).frames, video.frames)
        else:  # testing/frames/<id>/<t>.png
            names = sorted(os.listdir(path))
            assert names == [f"{t:03d}.png" for t in range(video.num_frames)]
            got = np.stack([np.asarray(Image.open(os.path.join(path, n))) for n in names])
            np.testing.assert_array_equal(got, video.frames)


def test_no_temp_files_and_meta(tmp_path):
    root = str(tmp_path / "ub")
    meta = write_layout(root, "ubnormal", {"train": 2, "test": 2}, CONFIG)
    leftovers = [f for _, _, fs in os.walk(root) for f in fs if f.endswith(".tmp")]
    assert not leftovers
    with open(os.path.join(root, "meta.json")) as f:
        assert json.load(f) == json.loads(json.dumps(meta))
    assert meta["splits"] == {
        "train": ["train_000000", "train_000001"],
        "test": ["test_000000", "test_000001"],
    }
    for v in meta["videos"]:
        assert os.path.isfile(os.path.join(root, v["path"]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layout": "kinetics"}, "unknown layout"),
        ({"codec": "vp9"}, "unknown codec"),
        ({"splits": {"pretrain": 2}}, "unknown split"),
        ({"splits": {"validation": 2}}, "the tad layout has no validation split"),
        ({"splits": {"test": -1}}, "int >= 0"),
    ],
)
def test_write_layout_rejects(tmp_path, kwargs, match):
    args = {"layout": "tad", "splits": {"test": 1}, "codec": "h264"} | kwargs
    with pytest.raises(ValueError, match=match):
        write_layout(
            str(tmp_path / "out"), args["layout"], args["splits"], CONFIG, codec=args["codec"]
        )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty directory"):
        write_layout(str(tmp_path / "full"), "tad", {"test": 1}, CONFIG)


def test_uca_segments_cover_the_video_and_describe_the_event():
    for i in range(6):
        video = render_split_video("test", i, CONFIG)
        segments = uca_segments(video)
        assert segments[0][0] == 0.0 and segments[-1][1] == round(video.num_frames / video.fps, 1)
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))  # contiguous
        assert all(s < e for s, e, _ in segments)
        events = [(s, e) for s, e, text in segments if text == video.event_description]
        if video.anomaly_type == NORMAL:
            assert not events
        else:
            want = [(round(float(s), 1), round(float(e), 1)) for s, e in video.intervals]
            np.testing.assert_allclose(events, want, atol=0.051)


def test_clock():
    assert [clock(t) for t in (0.0, 1.2, 65.3, 599.9, 3599.9, 3725.3)] == [
        "00:00.0",
        "00:01.2",
        "01:05.3",
        "09:59.9",
        "59:59.9",
        "01:02:05.3",
    ]


def test_uca_txt_equals_json(tmp_path):
    entries = {
        v.video_id: uca_entry(v) for v in (render_split_video("test", i, CONFIG) for i in range(5))
    }
    entries["long_video"] = {
        "duration": 4000.0,
        "timestamps": [[0.0, 65.3], [65.3, 3599.9], [3599.9, 3725.3]],
        "sentences": ["A quiet street.", "A car ## parks.", "A fire starts."],
    }
    json_path, txt_path = write_uca(str(tmp_path), "test", entries)
    assert os.path.basename(json_path) == "UCFCrime_Test.json"
    with open(txt_path) as f:
        text = f.read()
    assert "long_video 59:59.9 01:02:05.3 ##A fire starts.\n" in text
    from_json, from_txt = read_uca(json_path), read_uca(txt_path)
    assert [r.id for r in from_json] == [r.id for r in from_txt] == list(entries)
    for a, b in zip(from_json, from_txt):
        assert a.extra["segments"] == b.extra["segments"] and a.text == b.text


def test_cli_writes_a_layout(tmp_path, capsys):
    out = tmp_path / "tad"
    argv = ["synthvad", f"--out={out}", "--layout=tad", "--num_train=2", "--num_test=2",
            "--min_seconds=3", "--max_seconds=3", "--size=32"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["layout"] == "tad" and summary["videos"] == 4
    assert summary["split"] == {"train": 2, "test": 2}
    assert probe(str(out / "videos" / "abnormal" / "train_000000.mp4")).width == 32


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--layout=kinetics"], "--layout"),
        (["--codec=vp9", "--layout=tad"], "--codec"),
        (["--layout=tad", "--num_videos=3"], "--num_videos is only used without --layout"),
        (["--codec=ffv1"], "--codec is only used with --layout"),
        (["--num_validation=2"], "--num_validation is only used with --layout"),
        (["--layout=tad", "--num_validation=2"], "the tad layout has no validation split"),
        (["--layout=tad", "--size=33"], "even"),
        (["--layout=tad", "--no_such_flag=1"], "no_such_flag"),
        (["--layout=tad", "extra"], "unexpected arguments"),
    ],
)
def test_cli_usage_errors(tmp_path, capsys, args, match):
    assert main(["synthvad", f"--out={tmp_path / 'o'}", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and match in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_non_empty_out(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["synthvad", f"--out={tmp_path}", "--layout=folder", "--num_train=1"]) == 2
    assert "not an empty directory" in capsys.readouterr().err


def test_cli_subprocess_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vau_jax.data.synthvad", f"--out={tmp_path}", "--layout=nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


# XD-Violence's own codes (Wu et al. 2020): B1 fighting, B2 shooting, B4 riot, B5 abuse,
# B6 car accident, G explosion; A normal.
XD_REAL = {"B1", "B2", "B4", "B5", "B6", "G"}


def test_xd_codes_real_where_xd_has_the_class_own_codes_elsewhere():
    assert set(XD_CODES) == set(ANOMALY_TYPES)
    assert len(set(XD_CODES.values())) == len(XD_CODES)  # no type reuses another's code
    assert {t: XD_CODES[t] for t in ("fighting", "explosion", "vehicle")} == {
        "fighting": "B1",
        "explosion": "G",
        "vehicle": "B6",
    }
    assert {t: XD_CODES[t] for t in ("running", "falling", "fire", "abandoned_object")} == {
        "running": "S1",
        "falling": "S2",
        "fire": "S3",
        "abandoned_object": "S4",
    }
    own = {c for c in XD_CODES.values() if c not in XD_REAL}
    assert own == {"S1", "S2", "S3", "S4"}


def test_xd_names_read_back_as_the_type():
    """The reader gives the XD class for real codes and the SynthVAD class for S1..S4."""
    want = {
        "running": "Running",
        "fighting": "Fighting",
        "falling": "Falling",
        "explosion": "Explosion",
        "fire": "Fire",
        "vehicle": "Car accident",
        "abandoned_object": "AbandonedObject",
    }
    for anomaly_type in ANOMALY_TYPES:
        video = SimpleNamespace(video_id="test_000003", anomaly_type=anomaly_type)
        name = xd_name(video)
        assert name == f"test_000003_label_{XD_CODES[anomaly_type]}-0-0"
        assert xd_labels(name) == [want[anomaly_type]]
    assert xd_labels(xd_name(SimpleNamespace(video_id="v", anomaly_type=NORMAL))) == ["Normal"]
    for anomaly_type, code in XD_CODES.items():
        assert XD_CLASSES[code] == want[anomaly_type]
        if code not in XD_REAL:
            assert XD_CLASSES[code] == class_name(anomaly_type)
