"""Full-size LLaMA presets: parameter counts without memory, logical axes on every param."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from vau_jax.convert import hf_llama
from vau_jax.models import llama

PUBLISHED = {"vicuna-7b": 6.74e9, "llama-2-7b": 6.74e9, "smollm2-135m": 134.5e6}


def _boxed(cfg: llama.LlamaConfig):
    module = llama.module_from_config(cfg)
    args, kwargs = llama.dummy_inputs(cfg)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree))))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_matches_published(name):
    n = _count(_boxed(llama.PRESETS[name]))
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.005, f"{name}: {n:,}"


@pytest.mark.parametrize("name", ["smollm2-135m", "llama-2-7b"])
def test_param_count_equals_hf_meta_model(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = llama.PRESETS[name]
    hf_cfg = transformers.LlamaConfig(
        **{
            k: v
            for k, v in hf_llama.config_to_hf(cfg).items()
            if k not in ("model_type", "architectures")
        }
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(hf_cfg)
    expected = sum(p.numel() for p in model.parameters())  # tied weights are counted once
    assert _count(_boxed(cfg)) == expected


@pytest.mark.parametrize("name", sorted(llama.PRESETS))
@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_logical_axes(name, scan):
    import dataclasses

    cfg = dataclasses.replace(llama.PRESETS[name], scan_layers=scan)
    boxed = _boxed(cfg)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), leaf
        assert len(leaf.names) == leaf.value.ndim and all(leaf.names), leaf.names


def test_tiny_preset_runs():
    cfg = llama.PRESETS["tiny-llama"]
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    module = llama.module_from_config(cfg)
    args, kwargs = llama.dummy_inputs(cfg)
    out = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), *args, **kwargs))[0]
    assert out["logits"].shape == (*args[0].shape, cfg.vocab_size)
