"""Smoke tests of the benchmark scripts in ``bench/``: they build and run at their real
shapes (their timings are not checked here)."""

import importlib.util
import math
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")


def _load(name: str):
    """``bench/<name>.py`` as a module (``bench/`` is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(BENCH, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_steps_bench_builds_both_sides():
    """``bench/steps.py``: every row's JAX and PyTorch training steps build at the tiny
    presets' shapes with matching parameter counts, and one step of each gives a finite loss."""
    steps = _load("steps")
    for name in steps.ROWS:
        row = getattr(steps, f"row_{name}")()
        steps.check_params(row)  # raises when total or trainable counts differ by > 2%
        assert 0 < row.ours_params[1] <= row.ours_params[0], row.ours_params
        assert row.flops > 0
        ours, theirs = row.ours(1), row.theirs(1)
        assert math.isfinite(ours) and math.isfinite(theirs), (name, ours, theirs)


def test_machine_header_names_each_library_matmul_rate(capsys):
    models = _load("models")
    rates = models.matmul_rates(1)
    assert set(rates) == {"jax", "torch"} and all(
        r > 0 and math.isfinite(r) for r in rates.values()
    )
    peak = models.machine_header(1, 1)
    out = capsys.readouterr().out
    assert "JAX " in out and "PyTorch " in out and f"{peak:.1f} GFLOP/s" in out


def test_gemv_chains_agree_between_jax_and_pytorch():
    """``bench/gemv.py``: the JAX and PyTorch chains compute the same products (two blocks of
    small shapes here; the script runs SmolLM2's 30 blocks)."""
    gemv = _load("gemv")
    mats = gemv.weights([(24, 16), (16, 24), (40, 16), (16, 20)] * 2)
    assert [w.shape for w in mats[:4]] == [(24, 16), (16, 24), (40, 16), (16, 20)]
    ours, theirs = gemv.jax_chain(mats)(), gemv.torch_chain(mats)()
    assert math.isfinite(ours) and ours != 0.0
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert gemv.best(lambda: 0.0, 2) >= 0.0
