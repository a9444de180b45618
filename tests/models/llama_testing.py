"""The tiny LLaMA the model tests share: its config and a jitted, unboxed init."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vau_jax.models import llama

TINY = llama.LlamaConfig(
    vocab_size=53,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    rope_theta=300.0,
    rms_norm_eps=1e-5,
)


def init_llama(cfg: llama.LlamaConfig, seed: int = 0):
    """``(LlamaForCausalLM(cfg), params)``: random weights from ``seed``, unboxed."""
    module = llama.LlamaForCausalLM(cfg)
    init = jax.jit(module.init)
    params = nn.unbox(init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"])
    return module, params
