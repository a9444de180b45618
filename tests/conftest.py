"""Test-wide set-up: 8 forced CPU devices (sharding tests), float32 matmuls, data paths."""

import os

# Must happen before jax initialises its backend.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def vtest_path() -> str:
    """Path of the real surveillance clip ``vtest.avi``; skips when unavailable."""
    path = os.environ.get("VAU_JAX_VTEST")
    if not path or not os.path.isfile(path):
        pytest.skip("real clip not available (set VAU_JAX_VTEST to ../shared/data/vtest.avi)")
    return path
