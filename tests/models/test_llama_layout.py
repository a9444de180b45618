"""Decoder-layer layouts: loop weights restacked for the scan layout, and back."""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.models import llama
from vau_jax.models.llama_layout import match_layer_layout

CFG = llama.LlamaConfig(
    vocab_size=53,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)


def _model(cfg: llama.LlamaConfig, seed: int):
    module = llama.LlamaForCausalLM(cfg)
    init = jax.jit(module.init)
    return module, nn.unbox(init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"])


def test_match_layer_layout_loads_either_layout_into_the_other():
    """Unscanned weights restacked into the scan layout give the same logits, and back."""
    loop_module, loop_params = _model(CFG, 3)
    scan_module, scan_template = _model(dataclasses.replace(CFG, scan_layers=True), 0)
    stacked = match_layer_layout(jax.device_get(loop_params), scan_template)
    assert "layers" in stacked["model"] and "layers_0" not in stacked["model"]
    chex.assert_trees_all_equal_shapes(stacked, scan_template)
    ids = jnp.asarray(np.random.RandomState(3).randint(3, CFG.vocab_size, (2, 9)), jnp.int32)
    want = jax.jit(loop_module.apply)({"params": loop_params}, ids)["logits"]
    got = jax.jit(scan_module.apply)({"params": stacked}, ids)["logits"]
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=0)  # measured 0 (f32 floor)
    back = match_layer_layout(stacked, loop_params)
    chex.assert_trees_all_equal(back, jax.device_get(loop_params))
    assert match_layer_layout(loop_params, loop_params) is loop_params  # same layout
