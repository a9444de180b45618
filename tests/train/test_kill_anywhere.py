"""Kill anywhere: SIGKILL at 10 seeded points of a whole tiny job, rerun, same result.

The job (``kill_pipeline.py``) renders SynthVAD videos with the tfds builder, caches their
features in the feature store and trains two stages with async checkpoints. Each case kills
it with SIGKILL (:mod:`vau_jax.faults`) at a seeded pass of one point: during rendering,
during feature caching, mid-step, during an async checkpoint write, at a stage boundary (two
cases each); then reruns the same command. The rerun's final params equal the uninterrupted
run's bit for bit, and so does its loss sequence (the last logged loss per global step):
nothing half-written was read.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from vau_jax.faults import ENV

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "kill_pipeline.py")

#: Passes through each point in one uninterrupted run (3 videos, 2 x 6 steps, saves every 2).
PASSES = {"render": 3, "features": 4, "step": 12, "checkpoint": 6, "stage_boundary": 2}


def _cases(seed=2026):
    """Two distinct seeded passes of every point."""
    rng = np.random.default_rng(seed)
    return [
        (p, int(n) + 1) for p in sorted(PASSES) for n in rng.choice(PASSES[p], 2, replace=False)
    ]


CASES = _cases()


def _run(base, kill=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env.pop(ENV, None)
    if kill:
        env[ENV] = kill
    return subprocess.run(
        [sys.executable, SCRIPT, str(base / "data"), str(base / "run")],
        env=env,
        cwd=str(base),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _losses(workdir):
    out = {}
    with open(workdir / "metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == "train":
                out[r["step"]] = r["loss"]
    return out


def _partial_files(base):
    """Names of unfinished artefacts a kill left (tfds ``incomplete.*``, orbax ``*-tmp-*``,
    feature ``.tmp-*`` / unpacked parts)."""
    out = []
    for root, dirs, files in os.walk(base):
        for n in dirs + files:
            if "incomplete" in n or "tmp" in n or (os.path.basename(root) == "parts"):
                out.append(os.path.relpath(os.path.join(root, n), base))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("ref")
    r = _run(base)
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(np.load(base / "run" / "final_params.npz")), _losses(base / "run")


def test_the_cases_cover_every_point_twice():
    assert sorted({p for p, _ in CASES}) == sorted(PASSES)
    assert len(set(CASES)) == 10


@pytest.mark.slow
@pytest.mark.parametrize("point,n", CASES, ids=[f"{p}-{n}" for p, n in CASES])
def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path, reference, point, n):
    ref_params, ref_losses = reference
    killed = _run(tmp_path, f"{point}:{n}")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert not (tmp_path / "run" / "final_params.npz").exists()
    left = _partial_files(tmp_path)
    if point == "render":  # tfds was writing the split when it died
        assert any("incomplete" in p for p in left), left
    rerun = _run(tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    params = dict(np.load(tmp_path / "run" / "final_params.npz"))
    assert sorted(params) == sorted(ref_params)
    for k in ref_params:
        np.testing.assert_array_equal(params[k], ref_params[k], err_msg=k)
    assert _losses(tmp_path / "run") == ref_losses
    assert not [p for p in _partial_files(tmp_path) if "parts" in p and p.endswith(".npz")]
