"""Ahead-of-time compilation for GPU topologies (``vau_jax.aot_gpu``), with no GPU present.

The compile test needs JAX's CUDA 12 plugin (the ``cuda12`` extra) and is skipped with the
reason otherwise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax import aot_gpu

needs_cuda_plugin = pytest.mark.skipif(
    not aot_gpu.cuda_plugin_available(),
    reason="JAX's CUDA plugin is not installed (pip install -e '.[cuda12]')",
)


def test_topology_names_and_target_config():
    topo = aot_gpu.gpu_topology("h100-8")
    assert topo.shape == (1, 1, 8) and topo.hbm_bytes == 84_942_979_072
    text = topo.target_config()
    assert "core_count: 132" in text and 'platform_name: "CUDA"' in text
    assert "feature_extension: ACCELERATED_FEATURES" in text and "ecc_enabled: true" in text
    with pytest.raises(ValueError, match="unknown GPU topology 'a100-3'; known: h100-8"):
        aot_gpu.gpu_topology("a100-3")


@needs_cuda_plugin
def test_sharded_step_compiles_for_8_h100s():
    """A donated, sharded SGD step on a 2 x 4 mesh of 8 H100s: bytes per device from the
    executable, an all-reduce for the gradient over ``data``."""
    devices = aot_gpu.gpu_devices("h100-8")
    assert len(devices) == 8 and devices[0].device_kind == "NVIDIA H100 80GB HBM3"
    mesh = jax.sharding.Mesh(np.array(devices).reshape(2, 4), ("data", "model"))

    def spec(shape, *axes):
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*axes))
        return jax.ShapeDtypeStruct(shape, jnp.bfloat16, sharding=sharding)

    w, x = spec((4096, 8192), None, "model"), spec((1024, 4096), "data", None)

    def step(w, x):
        return w - 1e-3 * jax.grad(lambda w: jnp.mean(jnp.tanh(x @ w) ** 2))(w)

    fn = jax.jit(step, donate_argnums=0, out_shardings=w.sharding)
    compiled = fn.lower(w, x).compile()
    mem = compiled.memory_analysis()
    w_bytes, x_bytes = 4096 * 2048 * 2, 512 * 4096 * 2  # one device's shards
    assert mem.argument_size_in_bytes == w_bytes + x_bytes
    assert mem.output_size_in_bytes == mem.alias_size_in_bytes == w_bytes
    assert 0 < mem.temp_size_in_bytes < 4 * w_bytes
    assert "all-reduce" in compiled.as_text()
