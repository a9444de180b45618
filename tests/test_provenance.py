"""provenance.json: code, libraries, machine, config and data of a run, traceable."""

import json
import os
import subprocess

import jax
import ml_collections

from vau_jax import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**kw):
    c = ml_collections.ConfigDict(
        {"dataset": "synthvad", "dataset_dir": "", "seed": 0, "num_train_videos": 4,
         "synthvad": {"height": 64, "width": 64}}
    )  # fmt: skip
    c.update(kw)
    return c


def test_run_files_record_code_libraries_machine_config_and_data(tmp_path):
    c = _config()
    provenance.write_run_files(str(tmp_path), c)
    rec = json.loads((tmp_path / "provenance.json").read_text())
    config_json = (tmp_path / "config.json").read_text()
    assert json.loads(config_json)["num_train_videos"] == 4
    import hashlib

    assert rec["config_sha1"] == hashlib.sha1(config_json.encode()).hexdigest()
    assert rec["packages"]["jax"] == jax.__version__
    assert rec["machine"]["cpu"] and rec["machine"]["device_count"] == len(jax.devices())
    assert rec["machine"]["backend"] == jax.default_backend()
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout (CI's clean clone is one)
        assert rec["git"]["commit"] == head.stdout.strip()
        assert isinstance(rec["git"]["dirty"], bool)
    assert rec["dataset"]["name"] == "synthvad"
    assert rec["dataset"]["fingerprint"]["settings"]["synthvad"] == {"height": 64, "width": 64}
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]  # atomic writes leave no temp


def test_synthvad_fingerprint_follows_the_renderer_settings():
    a = provenance.dataset_record(_config())["fingerprint"]["sha1"]
    assert provenance.dataset_record(_config())["fingerprint"]["sha1"] == a
    b = provenance.dataset_record(_config(num_train_videos=5))["fingerprint"]["sha1"]
    assert a != b


def test_folder_fingerprint_sees_added_and_resized_files(tmp_path):
    root = tmp_path / "ucf"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "a.mp4").write_bytes(b"x" * 10)
    c = _config(dataset="ucf_crime", dataset_dir=str(root))
    first = provenance.dataset_record(c)["fingerprint"]
    assert first["files"] == 1 and first["bytes"] == 10
    (root / "videos" / "a.mp4").write_bytes(b"x" * 11)
    second = provenance.dataset_record(c)["fingerprint"]
    assert second["sha1"] != first["sha1"]
    (root / "list.txt").write_text("a.mp4\n")
    assert provenance.dataset_record(c)["fingerprint"]["files"] == 2
