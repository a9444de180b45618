"""``python -m vau_jax.main``: bad input is one line ``error: PATH[:LINE]: reason``, exit code 2,
nothing written to the workdir; a config typo names the nearest keys; pre-extracted features."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIG = os.path.join(ROOT, "configs", "vadllama.py")


def _main(args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "vau_jax.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory):
    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.layouts import write_layout

    root = tmp_path_factory.mktemp("layouts")
    synth = synthvad.SynthConfig(min_seconds=3.0, max_seconds=3.0)
    write_layout(str(root / "ucf"), "ucf_crime", {"train": 3, "test": 2}, synth)
    write_layout(str(root / "folder"), "folder", {"train": 3, "test": 2}, synth)
    return root


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return str(dst)


def test_config_key_typo_names_the_nearest_keys(tmp_path):
    line = _one_error(
        _main([f"--config={CONFIG}", "--config.ltc.kk=3", f"--workdir={tmp_path}/w"], tmp_path)
    )
    assert "--config.ltc.kk" in line and "ltc.k" in line
    line = _one_error(_main([f"--config={CONFIG}", "--config.batchsize=3"], tmp_path))
    assert "batch_size" in line
    assert not os.path.exists(tmp_path / "w")


def test_bad_preset_value_and_flag_say_why(tmp_path):
    assert "unknown preset 'papr'" in _one_error(_main([f"--config={CONFIG}:papr"], tmp_path))
    line = _one_error(_main([f"--config={CONFIG}", "--config.batch_size=abc"], tmp_path))
    assert "batch_size" in line
    assert "no such config file" in _one_error(_main(["--config=/no/such.py"], tmp_path))


@pytest.mark.parametrize("case", ["missing_split_file", "absent_video", "csv_bad_times"])
def test_bad_dataset_is_one_line_and_writes_nothing(case, ucf_tree, tmp_path):
    if case == "missing_split_file":
        root = _copy(ucf_tree / "ucf", tmp_path / "ucf")
        os.remove(os.path.join(root, "Anomaly_Detection_splits", "Anomaly_Train.txt"))
        dataset, want = "ucf_crime", "Anomaly_Train.txt"
    elif case == "absent_video":
        root = _copy(ucf_tree / "ucf", tmp_path / "ucf")
        test_list = os.path.join(root, "Anomaly_Detection_splits", "Anomaly_Test.txt")
        first = open(test_list).read().split()[0]
        os.remove(os.path.join(root, "Videos", first))
        dataset, want = "ucf_crime", "Anomaly_Test.txt:1"
    else:
        root = _copy(ucf_tree / "folder", tmp_path / "folder")
        path = os.path.join(root, "annotations.csv")
        rows = list(csv.reader(open(path)))
        k = next(i for i, r in enumerate(rows) if i and r[3])  # a row with times
        rows[k][3], rows[k][4] = "5.0", "2.0"  # start after end
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        dataset, want = "folder", f"annotations.csv:{k + 1}"
    workdir = tmp_path / "run"
    line = _one_error(
        _main(
            [
                f"--config={CONFIG}",
                f"--config.dataset={dataset}",
                f"--config.dataset_dir={root}",
                f"--config.data_dir={tmp_path}/d",
                f"--workdir={workdir}",
            ],
            tmp_path,
        )
    )
    assert want in line, line
    assert not os.path.exists(workdir)


def _features_tree(root, width=8, bad=None):
    """A UCF-Crime tree of pre-extracted I3D features: features/{train,test}/<name>_i3d.npy
    [T, 10, D] and the test annotation."""
    rng = np.random.default_rng(0)
    names = {
        "train": [
            "Fighting001_x264",
            "Fighting002_x264",
            "Normal_Videos001_x264",
            "Normal_Videos002_x264",
        ],
        "test": ["Fighting010_x264", "Normal_Videos010_x264"],
    }
    for split, vids in names.items():
        os.makedirs(root / "features" / split)
        for v in vids:
            w = width if v != bad else width * 2
            x = rng.normal(size=(6, 10, w)).astype(np.float32)
            if v.startswith("Fighting"):
                x[2:4] += 3.0
            np.save(root / "features" / split / f"{v}_i3d.npy", x)
    (root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Fighting010_x264.mp4  Fighting  32  64  -1  -1\n"
        "Normal_Videos010_x264.mp4  Normal  -1  -1  -1  -1\n"
    )
    return str(root)


def test_feature_file_of_the_wrong_width(tmp_path):
    root = _features_tree(tmp_path / "ucf", bad="Fighting002_x264")
    workdir = tmp_path / "run"
    line = _one_error(
        _main(
            [
                f"--config={CONFIG}",
                "--config.dataset=ucf_crime",
                f"--config.dataset_dir={root}",
                "--config.features=i3d",
                "--config.feature_width=8",
                f"--config.data_dir={tmp_path}/d",
                f"--workdir={workdir}",
            ],
            tmp_path,
        )
    )
    assert "Fighting002_x264_i3d.npy" in line and "width 16" in line
    assert not os.path.exists(workdir)


@pytest.mark.slow
def test_pre_extracted_features_train_and_evaluate(tmp_path):
    from tests.tiny_configs import tiny_vadllama
    from vau_jax.main import run

    c = tiny_vadllama(str(tmp_path / "d"))
    c.dataset, c.dataset_dir = "ucf_crime", _features_tree(tmp_path / "ucf")
    c.features, c.feature_width, c.max_clips = "i3d", 8, 6
    assert run(c, str(tmp_path / "run"), "train_and_eval") == 0
    import json

    m = json.load(open(tmp_path / "run" / "metrics.json"))
    assert 0.0 <= m["AUC_O"] <= 1.0 and m["test_videos"] == 2
    assert not os.path.exists(tmp_path / "d")  # no tiny CLIP, no feature store: files only
