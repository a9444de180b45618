"""Decoder-layer layouts: loop weights restacked for the scan layout, and back."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tests.models.llama_testing import TINY, init_llama
from vau_jax.models.llama_layout import match_layer_layout


def test_match_layer_layout_loads_either_layout_into_the_other():
    """Unscanned weights restacked into the scan layout give the same logits, and back."""
    loop_module, loop_params = init_llama(TINY, 3)
    scan_module, scan_template = init_llama(dataclasses.replace(TINY, scan_layers=True), 0)
    stacked = match_layer_layout(jax.device_get(loop_params), scan_template)
    assert "layers" in stacked["model"] and "layers_0" not in stacked["model"]
    chex.assert_trees_all_equal_shapes(stacked, scan_template)
    ids = jnp.asarray(np.random.RandomState(3).randint(3, TINY.vocab_size, (2, 9)), jnp.int32)
    want = jax.jit(loop_module.apply)({"params": loop_params}, ids)["logits"]
    got = jax.jit(scan_module.apply)({"params": stacked}, ids)["logits"]
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=0)  # measured 0 (f32 floor)
    back = match_layer_layout(stacked, loop_params)
    chex.assert_trees_all_equal(back, jax.device_get(loop_params))
    assert match_layer_layout(loop_params, loop_params) is loop_params  # same layout
