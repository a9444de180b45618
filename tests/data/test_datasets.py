"""Datasets as config: SynthVAD rendered once via tfds, published layouts read from files, and
the same frames and ground truth either way (lossless codec)."""

import os

import ml_collections
import numpy as np
import pytest

from vau_jax.data import synthvad
from vau_jax.data.datasets import (
    METRICS,
    FrameFolderVideo,
    load_dataset,
    prepared_synthvad,
    synthvad_dataset,
)
from vau_jax.data.formats.record import FormatError
from vau_jax.data.frames import FrameSpec
from vau_jax.data.synthvad.layouts import write_layout

SYNTH = synthvad.SynthConfig(min_seconds=3.0, max_seconds=3.0)
SPEC = FrameSpec(fps=8.0, size=64, input="background")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    native = synthvad_dataset(str(root / "cache"), SYNTH, 5, 4)
    layouts = {}
    for name in ("ucf_crime", "folder", "shanghaitech"):
        write_layout(str(root / name), name, {"train": 5, "test": 4}, SYNTH, codec="ffv1")
        cfg = ml_collections.ConfigDict(
            {
                "dataset": name,
                "dataset_dir": str(root / name),
                "data_dir": str(root / "cache"),
                "dataset_fps": 8.0,
            }
        )
        layouts[name] = load_dataset(cfg)
    return root, native, layouts


def test_synthvad_is_rendered_once_and_reused(data, tmp_path):
    root, native, _ = data
    assert [v.id for v in native.split("train")] == [f"train_{i:06d}" for i in range(5)]
    b = prepared_synthvad(str(root / "cache" / "tfds"), "train", 3, SYNTH)
    assert b.builder_config.num_videos == 5  # the existing 5-video build serves 3
    rec = native.split("test")[0].record()
    v = synthvad.render_split_video("test", 0, SYNTH)
    np.testing.assert_array_equal(rec["frames"], v.frames)
    assert native.metric == "frame_auc" and METRICS["xd_violence"] == "xd_ap"


def test_ucf_layout_gives_the_native_frames_and_labels(data):
    _, native, layouts = data
    ucf = layouts["ucf_crime"]
    for split in ("train", "test"):
        assert [v.id for v in ucf.split(split)] == [v.id for v in native.split(split)]
    for a, b in zip(native.split("test"), ucf.split("test")):
        fa = np.concatenate([c.frames for c in a.frames(SPEC)])
        chunks = list(b.frames(SPEC))
        fb = np.concatenate([c.frames for c in chunks])
        np.testing.assert_array_equal(fa, fb)  # FFV1 is lossless; same background frames
        idx = np.concatenate([c.indices for c in chunks])
        ts = np.concatenate([c.timestamps for c in chunks])
        np.testing.assert_array_equal(a.frame_labels(idx, ts), b.frame_labels(idx, ts))
        assert a.is_anomalous == b.is_anomalous
        assert a.content_hash() != b.content_hash()  # a file and a record never share a key


def test_training_videos_carry_video_level_labels_only(data):
    _, _, layouts = data
    train = layouts["ucf_crime"].split("train")
    anomalous = [v for v in train if v.is_anomalous]
    assert anomalous and all(not v.frame_intervals and not v.intervals_s for v in train)
    with pytest.raises(ValueError, match="no frame-level ground truth"):
        anomalous[0].frame_labels(np.arange(3), np.arange(3) / 8.0)
    assert all(v.captions for v in train)  # UCA captions come along as text, not labels


def test_folder_layout_labels_come_from_seconds(data):
    _, native, layouts = data
    for a, b in zip(native.split("test"), layouts["folder"].split("test")):
        assert b.intervals_s or not b.is_anomalous
        if b.is_anomalous:
            got = b.frame_labels(np.arange(24), np.arange(24) / 8.0)
            want = a.frame_labels(np.arange(24), np.arange(24) / 8.0)
            assert (got == want).mean() > 0.95  # seconds rounded to the writer's precision


def test_shanghaitech_test_videos_are_frame_folders(data):
    _, native, layouts = data
    test = layouts["shanghaitech"].split("test")
    folders = [v for v in test if isinstance(v, FrameFolderVideo)]
    assert folders and all(v.fps == 8.0 for v in folders)
    assert layouts["shanghaitech"].metric == "ubnormal_auc"


def test_config_errors_name_the_problem(tmp_path):
    cfg = ml_collections.ConfigDict(
        {"dataset": "ucf_crime", "dataset_dir": "", "data_dir": str(tmp_path)}
    )
    with pytest.raises(ValueError, match="dataset_dir"):
        load_dataset(cfg)
    cfg.dataset_dir = str(tmp_path / "nowhere")
    with pytest.raises(FormatError, match="nowhere"):
        load_dataset(cfg)
    cfg.dataset = "kinetics"
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(cfg)


def test_missing_split_file_is_one_error_naming_it(data, tmp_path):
    import shutil

    root, _, _ = data
    bad = tmp_path / "ucf"
    shutil.copytree(root / "ucf_crime", bad)
    os.remove(bad / "Anomaly_Detection_splits" / "Anomaly_Train.txt")
    cfg = ml_collections.ConfigDict(
        {"dataset": "ucf_crime", "dataset_dir": str(bad), "data_dir": str(tmp_path)}
    )
    with pytest.raises(FormatError, match="Anomaly_Train.txt"):
        load_dataset(cfg)
