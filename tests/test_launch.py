"""The multi-host launch scripts' dry runs: every command they would run, in order, and the
clear exit 2 on missing options (no cloud or cluster is reachable from the tests)."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MAIN = ["--config=configs/vadllama.py:paper", "--config.dataset_dir=/mnt/gcs/data/UCF_Crimes"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", os.path.join(REPO, "launch", script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": "/usr/bin:/bin"},  # no gcloud / sbatch: nothing can run
    )


def _order(text: str, needles: list[str]) -> None:
    """Every needle appears in ``text``, in this order."""
    at = 0
    for needle in needles:
        found = text.find(needle, at)
        assert found >= 0, (needle, text[at:])
        at = found + len(needle)


def test_tpu_vm_dry_run_prints_every_step():
    p = _run(
        "tpu_vm.sh",
        "--tpu=vau-v5e",
        "--zone=us-west4-a",
        "--bucket=gs://my-bucket",
        "--spot",
        "--data=/data/UCF_Crimes",
        "--checkpoints=/data/ckpt",
        "--dry_run",
        "--",
        *MAIN,
    )
    assert p.returncode == 0, p.stderr
    _order(
        p.stdout,
        [
            "gsutil -m rsync -r /data/UCF_Crimes gs://my-bucket/data/UCF_Crimes",
            "gsutil -m rsync -r /data/ckpt gs://my-bucket/checkpoints",
            "gcloud compute tpus tpu-vm describe vau-v5e --zone=us-west4-a",
            "gcloud compute tpus tpu-vm create vau-v5e --zone=us-west4-a "
            "--accelerator-type=v5litepod-8 --version=v2-alpha-tpuv5-lite --spot",
            "archive --format=tar.gz",
            "tpu-vm scp /tmp/vau_jax-vau-v5e.tgz",
            "--worker=all",
            "tpu-vm ssh vau-v5e --zone=us-west4-a --worker=all",
            "vau_jax[tpu]",
            "gcsfuse --implicit-dirs my-bucket /mnt/gcs",
            "until main exits 0",
            "tpu-vm ssh vau-v5e --zone=us-west4-a --worker=all",
            "python\\ -m\\ vau_jax.main\\ --config=configs/vadllama.py:paper",
            "--workdir=/mnt/gcs/runs/vau-v5e\\ --config.data_dir=/mnt/gcs/data_cache",
        ],
    )


def test_gpu_slurm_dry_run_prints_every_step_and_the_batch_script():
    p = _run(
        "gpu_slurm.sh",
        "--shared=/shared/vj",
        "--nodes=4",
        "--gpus_per_node=8",
        "--partition=gpu",
        "--run=r1",
        "--data=/data/UCF_Crimes",
        "--dry_run",
        "--",
        *MAIN,
    )
    assert p.returncode == 0, p.stderr
    _order(
        p.stdout,
        [
            "mkdir -p /shared/vj/code /shared/vj/runs/r1",
            "archive HEAD | tar x -C /shared/vj/code",
            "python3 -m venv /shared/vj/venv",
            "pip install -q -e /shared/vj/code\\[cuda12\\]",
            "rsync -a /data/UCF_Crimes/ /shared/vj/data/UCF_Crimes/",
            "#SBATCH --nodes=4",
            "#SBATCH --ntasks-per-node=8",
            "#SBATCH --gpus-per-task=1",
            "#SBATCH --requeue",
            "#SBATCH --partition=gpu",
            "cd /shared/vj/code",
            "srun --kill-on-bad-exit=1 python -m vau_jax.main --config=configs/vadllama.py:paper",
            "--workdir=/shared/vj/runs/r1",
            "--config.data_dir=/shared/vj/data_cache",
            "&& exit 0",
            'not retrying" >&2; exit 2',
            "sbatch /shared/vj/runs/r1/job.sbatch",
        ],
    )


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("tpu_vm.sh", ["--zone=z", "--bucket=gs://b", "--", "x"], "--tpu=... is required"),
        ("tpu_vm.sh", ["--tpu=t", "--zone=z", "--bucket=b", "--", "x"], "must be gs://NAME"),
        ("tpu_vm.sh", ["--tpu=t", "--zone=z", "--bucket=gs://b"], "no vau_jax.main flags"),
        ("tpu_vm.sh", ["--tpu=t", "--frob"], "unknown option --frob"),
        ("gpu_slurm.sh", ["--", "x"], "--shared=DIR"),
        ("gpu_slurm.sh", ["--shared=/s"], "no vau_jax.main flags"),
    ],
)
def test_missing_options_exit_2_with_one_line(script, args, message):
    p = _run(script, "--dry_run", *args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
