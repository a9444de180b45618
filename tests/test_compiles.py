"""The compile counter the evaluation tests rely on sees a compilation, and only then."""

import jax
import jax.numpy as jnp

from tests.compiles import xla_compiles


def test_counts_fresh_compiles_and_not_cached_calls():
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    x, y = jnp.arange(5.0), jnp.arange(6.0)  # made outside the counted blocks
    with xla_compiles() as first:
        f(x).block_until_ready()
    with xla_compiles() as again:
        f(x).block_until_ready()
    with xla_compiles() as new_shape:
        f(y).block_until_ready()
    assert len(first) == 1 and first[0] > 0
    assert again == []
    assert len(new_shape) == 1


def test_a_load_from_the_persistent_cache_counts_as_a_compilation(tmp_path):
    """The suite shares a persistent compilation cache (conftest.py): a second process that
    loads the executable from it instead of compiling is still counted."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json, jax, jax.numpy as jnp\n"
        "from jax import monitoring\n"
        "from tests.compiles import xla_compiles\n"
        "x = jnp.arange(7.0)\n"
        "hits = []\n"
        "monitoring.register_event_listener(\n"
        "    lambda e, **k: hits.append(e) if e.endswith('/cache_hits') else None)\n"
        "with xla_compiles() as c:\n"
        "    jax.jit(lambda x: jnp.sin(x) * 2.0)(x).block_until_ready()\n"
        "print(json.dumps([len(c), len(hits)]))\n"
    )
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PLATFORMS="cpu",
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = [
        subprocess.run(
            [sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    fresh, loaded = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert fresh == [1, 0]  # compiled, and written to the cache
    assert loaded == [1, 1]  # read back from it, and still counted
    assert os.listdir(tmp_path / "cache")
