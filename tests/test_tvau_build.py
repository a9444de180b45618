"""``python -m vau_jax.tvau_build``: one end-to-end run, and user errors as one line, exit 2."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from vau_jax import tvau_build
from vau_jax.data.synthvad import SynthConfig
from vau_jax.data.synthvad.layouts import write_layout

CONFIG = SynthConfig(min_seconds=2.0, max_seconds=2.0, min_walkers=1, max_walkers=1)
OUTPUTS = ("tvau_annotations.json", "questions.jsonl", "stats.json")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("cli") / "ubnormal")
    write_layout(root, "ubnormal", {"test": 2}, CONFIG, codec="ffv1")
    return root


def _error_line(capsys, argv):
    assert tvau_build.main(["tvau_build", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_cli_end_to_end(tree, tmp_path):
    out = str(tmp_path / "out")
    argv = [sys.executable, "-m", "vau_jax.tvau_build", "--dataset=ubnormal"]
    argv += [f"--dataset_dir={tree}", f"--out={out}", "--annotator=noisy", "--seed=1"]
    argv += ["--noise=jitter=0.5,swap=0.2,contradict=1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["videos"] == 2 and stats["dropped"] == stats["injected"]
    for name in OUTPUTS:
        assert os.path.isfile(os.path.join(out, name))
    with open(os.path.join(out, "stats.json")) as f:
        assert json.load(f) == stats
    assert os.listdir(os.path.join(out, "refined"))  # the anomalous test video's frames


def test_cli_missing_dataset_dir(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    line = _error_line(capsys, ["--dataset=ubnormal", f"--dataset_dir={missing}", "--out=x"])
    assert line.startswith(f"error: {missing}: ")


def test_cli_unknown_annotator(tree, tmp_path, capsys):
    argv = ["--dataset=shanghaitech", f"--dataset_dir={tree}", f"--out={tmp_path}"]
    line = _error_line(capsys, [*argv, "--annotator=gpt"])
    assert "unknown annotator 'gpt'" in line and "oracle" in line


def test_cli_layout_without_videos(tmp_path, capsys):
    root = tmp_path / "empty"
    (root / "scripts").mkdir(parents=True)
    for kind in ("abnormal", "normal"):
        for word in ("training", "test"):
            (root / "scripts" / f"{kind}_{word}_video_names.txt").write_text("")
    argv = ["--dataset=ubnormal", f"--dataset_dir={root}", f"--out={tmp_path / 'out'}"]
    assert _error_line(capsys, argv) == f"error: {root}: no videos in this ubnormal layout"
    assert not (tmp_path / "out").exists()


def test_cli_other_user_errors(tree, tmp_path, capsys):
    base = [f"--dataset_dir={tree}", f"--out={tmp_path / 'o'}"]
    assert "--dataset" in _error_line(capsys, base)  # required flag
    assert "--noise" in _error_line(capsys, ["--dataset=ubnormal", *base, "--noise=blur=2"])
    real = str(tmp_path / "real")
    shutil.copytree(tree, real)
    os.remove(os.path.join(real, "meta.json"))
    argv = ["--dataset=ubnormal", f"--dataset_dir={real}", f"--out={tmp_path / 'o'}"]
    assert "oracle annotator needs SynthVAD" in _error_line(capsys, argv)


def test_cli_object_id_without_mask(tree, tmp_path, capsys):
    """A track listed in ``_tracks.txt`` that no mask pixel belongs to: one line, exit 2."""
    bad = str(tmp_path / "bad")
    shutil.copytree(tree, bad)
    tracks = [
        os.path.join(d, f)
        for d, _, files in os.walk(bad)
        for f in files
        if f.endswith("_tracks.txt")
    ][0]
    with open(tracks, "a") as f:
        f.write("9,0,1\n")
    line = _error_line(
        capsys, ["--dataset=ubnormal", f"--dataset_dir={bad}", f"--out={tmp_path}/o"]
    )
    assert line.startswith(f"error: {tracks}: ") and "object id 9" in line
