"""read_layout on SynthVAD-written trees: records equal the writer's ground truth (meta.json)."""

import csv
import json
import os

import numpy as np
import pytest

from vau_jax.data.formats import read_uca
from vau_jax.data.formats.layouts import DATASETS, read_layout


def _meta(root):
    with open(os.path.join(root, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(root, "synthvad_ids.json")) as f:
        ids = json.load(f)
    assert ids == {v["id"]: v["name"] for v in meta["videos"]}
    return meta


def _expected_label(layout, video, split):
    normal = video["anomaly_type"] == "normal"
    if normal:
        return "Normal"
    if layout in ("ubnormal", "shanghaitech") or (layout == "tad" and split == "train"):
        return "Anomaly"  # no class in the dataset (TAD train: the folder is the label)
    if layout == "xd_violence":
        # XD's class where XD has one (B1, G, B6), else the SynthVAD class (codes S1..S4)
        return XD_READ_BACK.get(video["anomaly_type"], video["class"])
    return video["class"]


XD_READ_BACK = {"fighting": "Fighting", "explosion": "Explosion", "vehicle": "Car accident"}


@pytest.mark.parametrize("layout", DATASETS)
def test_records_equal_ground_truth(layout_tree, layout):
    root = layout_tree(layout)
    meta = _meta(root)
    by_name = {v["name"]: v for v in meta["videos"]}
    records = read_layout(layout, root)
    # UBnormal's tree always holds validation lists (empty here); no other layout has them.
    assert set(records) == {"train", "test"} | ({"validation"} if layout == "ubnormal" else set())
    all_ids = [r.id for recs in records.values() for r in recs]
    assert len(all_ids) == len(set(all_ids)) == len(meta["videos"])
    for split, recs in records.items():
        assert [r.id for r in recs] == sorted(
            v["name"] for v in by_name.values() if v["split"] == split
        )
        for r in recs:
            v = by_name[r.id]
            assert r.extra["split"] == v["split"] == split
            assert r.extra["dataset"] == layout
            assert r.path == os.path.join(root, v["path"]) and os.path.exists(r.path)
            assert r.label == _expected_label(layout, v, split)
            if layout == "folder":
                assert r.intervals == []
                want = v["intervals_seconds"] if split == "test" else []
                assert [list(x) for x in r.extra["intervals_s"]] == want
            elif split == "train":
                assert r.intervals == []  # weak, video-level labels only
            else:
                assert [list(x) for x in r.intervals] == v["intervals_frames"]
                if r.n_frames is not None:
                    assert r.n_frames == v["n_frames"]
                    np.testing.assert_array_equal(
                        r.frame_labels(),
                        np.isin(np.arange(v["n_frames"]), _frames(v)).astype(np.uint8),
                    )
    # the fixture's splits hold both normal and anomalous videos
    for split in ("train", "test"):
        assert {r.label == "Normal" for r in records[split]} == {True, False}


def _frames(video):
    return [t for s, e in video["intervals_frames"] for t in range(s, e)]


def _train_names(root):
    return {v["name"] for v in _meta(root)["videos"] if v["split"] == "train"}


@pytest.mark.parametrize(
    ("layout", "annotation"),
    [
        ("ucf_crime", "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"),
        ("tad", "vals.txt"),
        ("xd_violence", "annotations.txt"),
    ],
)
def test_annotation_files_hold_test_videos_only(layout_tree, layout, annotation):
    root = layout_tree(layout)
    meta = _meta(root)
    with open(os.path.join(root, annotation)) as f:
        names = [line.split()[0] for line in f if line.strip()]
    stems = {n.rsplit(".", 1)[0] if n.endswith((".mp4", ".mkv")) else n for n in names}
    assert stems and not stems & _train_names(root)
    test = {v["name"] for v in meta["videos"] if v["split"] == "test"}
    assert stems <= test


def test_folder_csv_train_rows_have_no_times(layout_tree):
    root = layout_tree("folder")
    with open(os.path.join(root, "annotations.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["split"] == "train"]
    assert train and all(r["start_s"] == r["end_s"] == "" for r in train)
    assert any(r["start_s"] for r in rows if r["split"] == "test")


@pytest.mark.parametrize("layout", ["ubnormal", "shanghaitech"])
def test_published_train_annotation_is_dropped(layout_tree, layout):
    """UBnormal and the ShanghaiTech re-split annotate anomalous training videos on disk (as
    published); the reader still gives train records video-level labels only."""
    root = layout_tree(layout)
    meta = _meta(root)
    anomalous_train = [
        v["name"] for v in meta["videos"] if v["split"] == "train" and v["intervals_frames"]
    ]
    assert anomalous_train
    for name in anomalous_train:
        if layout == "ubnormal":
            scene = name.split("_")[2]
            assert os.path.isdir(os.path.join(root, f"Scene{scene}", f"{name}_annotations"))
        else:
            assert os.path.isfile(os.path.join(root, "testing", "test_frame_mask", f"{name}.npy"))
    train = {r.id: r for r in read_layout(layout, root)["train"]}
    assert all(train[n].intervals == [] and train[n].label == "Anomaly" for n in anomalous_train)
    assert all(r.masks_path is None and not r.tracks for r in train.values())


def test_ubnormal_test_tracks_and_fps(layout_tree):
    root = layout_tree("ubnormal")
    meta = _meta(root)
    by_name = {v["name"]: v for v in meta["videos"]}
    for r in read_layout("ubnormal", root)["test"]:
        if r.label == "Normal":
            assert r.fps is None and r.n_frames is None  # not probed
            continue
        assert r.fps == by_name[r.id]["fps"] and r.n_frames == by_name[r.id]["n_frames"]
        assert r.tracks and all(len(rows) for rows in r.tracks.values())


def test_shanghaitech_pixel_masks(layout_tree):
    root = layout_tree("shanghaitech")
    for r in read_layout("shanghaitech", root)["test"]:
        frame_mask = np.load(os.path.join(root, "testing", "test_frame_mask", f"{r.id}.npy"))
        pixel = np.load(r.masks_path)
        assert frame_mask.dtype == pixel.dtype == np.uint8
        assert pixel.shape[0] == frame_mask.shape[0] == r.n_frames
        np.testing.assert_array_equal(pixel.reshape(len(pixel), -1).max(1), frame_mask)
        assert sorted(os.listdir(r.path)) == [f"{t:03d}.jpg" for t in range(r.n_frames)]


def test_shanghaitech_original_split_without_lists(tree_copy):
    root = tree_copy("shanghaitech")
    for name in ("SH_Train_new.txt", "SH_Test_NEW.txt"):
        os.remove(os.path.join(root, name))
    meta = _meta(root)
    records = read_layout("shanghaitech", root)
    train_dir = os.path.join(root, "training", "videos")
    assert [r.id for r in records["train"]] == sorted(n[:-4] for n in os.listdir(train_dir))
    assert all(r.label == "Normal" for r in records["train"])
    by_name = {v["name"]: v for v in meta["videos"]}
    assert {r.id for r in records["test"]} == {
        n for n in by_name if n not in {r.id for r in records["train"]}
    }
    for r in records["test"]:
        assert [list(x) for x in r.intervals] == by_name[r.id]["intervals_frames"]


def test_xd_violence_lists_are_optional(tree_copy):
    root = tree_copy("xd_violence")
    with_lists = read_layout("xd_violence", root)
    for split in ("train", "test"):
        os.remove(os.path.join(root, f"{split}_list.txt"))
    without = read_layout("xd_violence", root)
    for split in ("train", "test"):
        got = [(r.id, r.path, r.label, r.intervals) for r in without[split]]
        assert got == [(r.id, r.path, r.label, r.intervals) for r in with_lists[split]]


def test_ucf_crime_uca_captions(layout_tree, tree_copy):
    root = layout_tree("ucf_crime")
    meta = _meta(root)
    records = read_layout("ucf_crime", root)
    for split, name in (("train", "Train"), ("test", "Test")):
        uca = {r.id: r for r in read_uca(os.path.join(root, "UCA", f"UCFCrime_{name}.json"))}
        assert set(uca) == {r.id for r in records[split]}
        for r in records[split]:
            assert r.extra["captions"] == uca[r.id].extra["segments"] and r.text
    events = {v["id"]: v["event_description"] for v in meta["videos"] if v["intervals_frames"]}
    test = {r.id: r for r in records["test"]}
    for vid, event in events.items():
        if vid in test:
            assert event in [s for _, _, s in test[vid].extra["captions"]]
    bare = tree_copy("ucf_crime")
    for name in os.listdir(os.path.join(bare, "UCA")):
        os.remove(os.path.join(bare, "UCA", name))
    assert all(
        r.text is None and "captions" not in r.extra for r in read_layout("ucf_crime", bare)["test"]
    )


@pytest.mark.parametrize("layout", DATASETS)
def test_ffv1_trees_read_the_same(layout_tree, layout):
    """The lossless tree has the same records, with ``.mkv`` files (and PNG frames)."""
    lossy = read_layout(layout, layout_tree(layout))
    lossless = read_layout(layout, layout_tree(layout, "ffv1"))
    for split in ("train", "test"):
        a, b = lossy[split], lossless[split]
        assert [(r.id, r.label, r.intervals) for r in a] == [
            (r.id, r.label, r.intervals) for r in b
        ]
        for r in b:
            assert os.path.isdir(r.path) or r.path.endswith(".mkv")


def test_ubnormal_validation_split(tmp_path):
    """SynthVAD's validation split fills UBnormal's validation lists, frame-annotated like
    test; it is written last, so the train and test videos keep their names."""
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.data.synthvad.layouts import write_layout

    cfg = SynthConfig(min_seconds=3, max_seconds=3, anomaly_prob=0.6)
    plain, with_val = str(tmp_path / "plain"), str(tmp_path / "val")
    write_layout(plain, "ubnormal", {"train": 2, "test": 3}, cfg)
    write_layout(with_val, "ubnormal", {"train": 2, "test": 3, "validation": 4}, cfg)
    a, b = read_layout("ubnormal", plain), read_layout("ubnormal", with_val)
    assert a["validation"] == [] and len(b["validation"]) == 4  # the empty lists read as empty
    for split in ("train", "test"):
        assert [r.id for r in a[split]] == [r.id for r in b[split]]
    meta = {v["name"]: v for v in _meta(with_val)["videos"]}
    assert {meta[r.id]["split"] for r in b["validation"]} == {"validation"}
    anomalous = [r for r in b["validation"] if r.label == "Anomaly"]
    assert anomalous
    for r in b["validation"]:
        want = [list(x) for x in meta[r.id]["intervals_frames"]]
        assert [list(x) for x in r.intervals] == want
    assert all(r.tracks for r in anomalous)
    # A tree without validation lists (as other UBnormal copies may be) has no such split.
    for kind in ("abnormal", "normal"):
        os.remove(os.path.join(plain, "scripts", f"{kind}_validation_video_names.txt"))
    assert sorted(read_layout("ubnormal", plain)) == ["test", "train"]


@pytest.mark.parametrize("layout", ["ucf_crime", "shanghaitech"])
def test_validation_only_where_the_layout_has_it(tmp_path, layout):
    from vau_jax.data.synthvad.layouts import write_layout

    with pytest.raises(ValueError, match="has no validation split"):
        write_layout(str(tmp_path / "t"), layout, {"train": 1, "validation": 1})
