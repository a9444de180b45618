"""vau_jax.host_memory: with VAU_JAX_MALLOC=reuse the glibc settings are applied on import and
stop the page faults; without it nothing changes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from vau_jax import host_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)

# The gradient of one tiny-CLIP ViT block over a batch of 64 frames (65 tokens, width 64):
# its buffers are about 40 MB per call. Minor page faults per call, after warm-up.
PROBE = r"""
import json, resource
import vau_jax  # first: the allocator settings must precede XLA's threads
import jax, jax.numpy as jnp
from vau_jax import host_memory
from vau_jax.models import vit

block = vit.EncoderLayer(vit.PRESETS["tiny-clip-vit"])
x = jnp.ones((64, 65, 64)) * 0.1
params = block.init(jax.random.key(0), x)
f = jax.jit(jax.grad(lambda p, x: (block.apply(p, x) ** 2).sum(), argnums=(0, 1)))
for _ in range(3):
    jax.block_until_ready(f(params, x))
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    jax.block_until_ready(f(params, x))
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10
print(json.dumps({"applied": host_memory.tune_allocator(), "faults": faults}))
"""


def _probe(env_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop(host_memory.ENV, None)
    if env_value is not None:
        env[host_memory.ENV] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@glibc
def test_import_applies_settings_and_stops_page_faults():
    tuned, system = _probe("reuse"), _probe(None)
    assert tuned["applied"] == {
        "M_ARENA_MAX": 1,
        "M_MMAP_MAX": 0,
        "M_TRIM_THRESHOLD": host_memory.TRIM_THRESHOLD,
    }
    assert system["applied"] == {}
    # ~10,300 fresh pages per call with glibc's defaults (measured); the tuned process
    # reuses its heap: 26 pages per call in some runs, ~1,050 in others (measured on an AMD
    # EPYC, back to back: a 4 MB buffer that is sometimes fresh), 9.8x fewer at worst.
    assert system["faults"] > 5000, system
    assert tuned["faults"] < system["faults"] / 5, (tuned, system)


def test_opt_in_and_idempotence(monkeypatch):
    for value in ("", "system", "yes"):
        monkeypatch.setattr(host_memory, "_applied", None)
        monkeypatch.setenv(host_memory.ENV, value)
        assert host_memory.tune_allocator() == {}
    monkeypatch.setenv(host_memory.ENV, "reuse")
    # Once decided, a process keeps its settings (mallopt is not re-run).
    assert host_memory.tune_allocator() == {}
