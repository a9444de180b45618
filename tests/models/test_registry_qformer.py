"""Q-Former presets: full-size parameter count (no memory) and logical axis names."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from vau_jax.models import qformer as Q


def _boxed_params(name: str):
    cfg = Q.PRESETS[name]
    module = Q.module_from_config(cfg)
    args, kwargs = Q.dummy_inputs(cfg)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree))))


def test_blip2_qformer_param_count_matches_hf():
    """``blip2-qformer`` vs the HF reference of the same config, built on the meta device.

    The BLIP-2 paper gives the Q-Former as 188M parameters, counting the BERT-base word and
    position embeddings it was initialised from. Our count includes: the 32 learned query
    tokens (24,576), word + position embeddings (30522 + 512 rows), the embedding LayerNorm,
    12 self-attention layers, 6 cross-attention layers (keys/values from 1408-wide EVA-ViT-g
    features), and both feed-forward blocks (query and text). It excludes BLIP-2's stage-1
    heads (ITC projections, ITM head, LM head). HF ``InstructBlipQFormerModel`` has exactly
    these modules except the query tokens, which HF keeps in the enclosing model.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = Q.PRESETS["blip2-qformer"]
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_query_tokens) == (12, 768, 32)
    assert (cfg.encoder_hidden_size, cfg.cross_attention_frequency) == (1408, 2)
    ours = _count(_boxed_params("blip2-qformer"))

    hf_cfg = transformers.InstructBlipQFormerConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        cross_attention_frequency=cfg.cross_attention_frequency,
        encoder_hidden_size=cfg.encoder_hidden_size,
    )
    with torch.device("meta"):
        hf = transformers.InstructBlipQFormerModel(hf_cfg)
    hf_count = sum(p.numel() for p in hf.parameters())
    hf_count += cfg.num_query_tokens * cfg.hidden_size  # Blip2Model.query_tokens
    assert abs(ours - hf_count) / hf_count <= 0.005, (ours, hf_count)
    assert ours == hf_count  # same modules: the counts agree exactly
    # Within 2% of the published 188M (which also counts BLIP-2's stage-1 heads).
    assert abs(ours - 188e6) / 188e6 < 0.02, ours


@pytest.mark.parametrize("name", sorted(Q.PRESETS))
def test_every_param_leaf_has_logical_axis_names(name):
    boxed = _boxed_params(name)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert len(leaves) == len(jax.tree.leaves(nn.unbox(boxed)))
    for leaf in leaves:
        assert isinstance(leaf, nn.LogicallyPartitioned), leaf
        assert len(leaf.names) == leaf.value.ndim
        assert all(n is not None or s == 1 for n, s in zip(leaf.names, leaf.value.shape))


@pytest.mark.slow
def test_tiny_preset_runs():
    cfg = Q.PRESETS["tiny-qformer"]
    module = Q.module_from_config(cfg)
    args, kwargs = Q.dummy_inputs(cfg)
    variables = module.init(jax.random.key(0), *args, **kwargs)
    out = module.apply(variables, *args, **kwargs)
    n = cfg.num_query_tokens + kwargs["input_ids"].shape[1]
    assert out["last_hidden_state"].shape == (1, n, cfg.hidden_size)
    assert np.isfinite(np.asarray(out["last_hidden_state"])).all()
