"""read_layout on broken trees: every problem is a FormatError that starts with PATH[:LINE]."""

import os
import re

import pytest

from vau_jax.data.formats import FormatError
from vau_jax.data.formats.layouts import read_layout


def _append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")
    with open(path) as f:
        return sum(1 for _ in f)  # the appended line's number


def _raises(layout, root, prefix, match=None):
    with pytest.raises(FormatError) as err:
        read_layout(layout, root)
    msg = str(err.value)
    assert msg.startswith(prefix), msg
    if match:
        assert re.search(match, msg), msg
    return msg


@pytest.mark.parametrize(
    ("layout", "required"),
    [
        ("ucf_crime", "Anomaly_Detection_splits/Anomaly_Train.txt"),
        ("ucf_crime", "Anomaly_Detection_splits/Anomaly_Test.txt"),
        ("ucf_crime", "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"),
        ("tad", "train_split.txt"),
        ("tad", "vals.txt"),
        ("xd_violence", "annotations.txt"),
        ("ubnormal", "scripts/abnormal_test_video_names.txt"),
        ("ubnormal", "scripts/normal_training_video_names.txt"),
        ("shanghaitech", "SH_Test_NEW.txt"),
        ("folder", "annotations.csv"),
    ],
)
def test_missing_required_file(tree_copy, layout, required):
    root = tree_copy(layout)
    path = os.path.join(root, required)
    os.remove(path)
    assert _raises(layout, root, f"{path}: ") == f"{path}: missing"


@pytest.mark.parametrize(
    ("layout", "annotation", "line"),
    [
        (
            "ucf_crime",
            "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
            "ghost.mp4  Running  1  5  -1  -1",
        ),
        ("tad", "vals.txt", "ghost.mp4  Running  1  5  -1  -1"),
        ("xd_violence", "annotations.txt", "ghost_label_B1-0-0 1 5"),
        ("ucf_crime", "Anomaly_Detection_splits/Anomaly_Test.txt", "Running/ghost.mp4"),
        ("ucf_crime", "Anomaly_Detection_splits/Anomaly_Train.txt", "Running/ghost.mp4"),
        ("tad", "test_split.txt", "abnormal/ghost.mp4"),
        ("xd_violence", "test_list.txt", "videos/test/ghost_label_A.mp4"),
        ("ubnormal", "scripts/abnormal_test_video_names.txt", "abnormal_scene_1_scenario_99"),
        ("ubnormal", "scripts/normal_training_video_names.txt", "normal_scene_2_scenario_99"),
        ("shanghaitech", "SH_Test_NEW.txt", "01_0099,1,24"),
        ("shanghaitech", "SH_Train_new.txt", "01_099,0"),
        ("folder", "annotations.csv", "ghost.mp4,test,normal,,"),
    ],
)
def test_line_naming_an_absent_video(tree_copy, layout, annotation, line):
    root = tree_copy(layout)
    path = os.path.join(root, annotation)
    lineno = _append(path, line)
    _raises(layout, root, f"{path}:{lineno}: ", "ghost|99")


def test_ucf_crime_video_deleted_from_disk(tree_copy):
    root = tree_copy("ucf_crime")
    test_list = os.path.join(root, "Anomaly_Detection_splits", "Anomaly_Test.txt")
    with open(test_list) as f:
        rel = f.readline().strip()
    os.remove(os.path.join(root, "Videos", rel))
    _raises("ucf_crime", root, f"{test_list}:1: ", "not found")


def test_ucf_crime_test_video_without_annotation(tree_copy):
    root = tree_copy("ucf_crime")
    ann = os.path.join(root, "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    with open(ann) as f:
        lines = f.readlines()
    with open(ann, "w") as f:
        f.writelines(lines[1:])
    test_list = os.path.join(root, "Anomaly_Detection_splits", "Anomaly_Test.txt")
    _raises("ucf_crime", root, f"{test_list}:", "has no row in")


def test_train_video_in_the_annotation_is_rejected(tree_copy):
    """A train video named in the test annotation is not a test video: an error, not a leak."""
    root = tree_copy("tad")
    with open(os.path.join(root, "train_split.txt")) as f:
        rel = f.readline().strip()
    ann = os.path.join(root, "vals.txt")
    lineno = _append(ann, f"{os.path.basename(rel)}  Running  1  5  -1  -1")
    _raises("tad", root, f"{ann}:{lineno}: ", "not a test video")


def test_duplicate_id_across_splits(tree_copy):
    root = tree_copy("tad")
    with open(os.path.join(root, "test_split.txt")) as f:
        rel = f.readline().strip()
    train_list = os.path.join(root, "train_split.txt")
    lineno = _append(train_list, rel)
    test_list = os.path.join(root, "test_split.txt")
    msg = _raises("tad", root, f"{test_list}:1: ", "appears twice")
    assert f"{train_list}:{lineno}" in msg


def test_malformed_annotation_line(tree_copy):
    root = tree_copy("ucf_crime")
    ann = os.path.join(root, "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    lineno = _append(ann, "test_000001.mp4  Normal  16")
    _raises("ucf_crime", root, f"{ann}:{lineno}: ", "expected 6 columns")


def test_ubnormal_abnormal_test_video_without_annotations(tree_copy):
    import shutil

    root = tree_copy("ubnormal")
    lst = os.path.join(root, "scripts", "abnormal_test_video_names.txt")
    with open(lst) as f:
        name = f.readline().strip()
    scene = name.split("_")[2]
    shutil.rmtree(os.path.join(root, f"Scene{scene}", f"{name}_annotations"))
    _raises("ubnormal", root, f"{lst}:1: ", "missing")


def test_shanghaitech_label_disagrees_with_mask(tree_copy):
    root = tree_copy("shanghaitech")
    lst = os.path.join(root, "SH_Test_NEW.txt")
    with open(lst) as f:
        lines = f.read().splitlines()
    i = next(i for i, line in enumerate(lines) if line.split(",")[1] == "1")
    vid, _, n = lines[i].split(",")
    lines[i] = f"{vid},0,{n}"
    with open(lst, "w") as f:
        f.write("\n".join(lines) + "\n")
    _raises("shanghaitech", root, f"{lst}:{i + 1}: ", "disagrees")


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(FormatError, match=r"unknown dataset 'kinetics'") as err:
        read_layout("kinetics", str(tmp_path))
    assert str(err.value).startswith(f"{tmp_path}: ")
    missing = str(tmp_path / "nope")
    with pytest.raises(FormatError, match="not a directory") as err:
        read_layout("ucf_crime", missing)
    assert str(err.value).startswith(f"{missing}: ")
