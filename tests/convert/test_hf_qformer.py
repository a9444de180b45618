"""Parity of the Flax Q-Former against HF Blip2QFormerModel / InstructBlipQFormerModel.

Tiny seeded random HF models are saved with ``save_pretrained(safe_serialization=True)``,
loaded through ``vau_jax.convert.load_hf`` and compared on every returned tensor.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.convert.hf_testing import save as _save  # noqa: E402
from vau_jax.convert import CheckpointMismatchError, hf_qformer, load_hf  # noqa: E402

# Max abs error over every output: measured 2.0e-6 to 5.0e-6 (3 seeds, AVX2 EPYC, float32;
# the InstructBLIP configs are the largest).
TOL = 2.5e-5

BLIP2_CONFIGS = [
    dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        encoder_hidden_size=24,
        cross_attention_frequency=2,
    ),
    dict(
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=40,
        encoder_hidden_size=40,
        cross_attention_frequency=1,
        hidden_act="gelu_new",
    ),
]
INSTRUCT_CONFIGS = [
    dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        encoder_hidden_size=24,
        cross_attention_frequency=1,
        vocab_size=50,
        max_position_embeddings=20,
    ),
    dict(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=64,
        encoder_hidden_size=40,
        cross_attention_frequency=2,
        vocab_size=70,
        max_position_embeddings=16,
    ),
]


def _apply(module, params, *args, **kwargs):
    """``module.apply`` under ``jax.jit`` (one compile instead of one per eager op)."""
    fn = jax.jit(module.apply, static_argnames=("output_hidden_states", "deterministic"))
    return fn({"params": params}, *args, **kwargs)


def _randomize(model, seed: int) -> None:
    """Random values in every tensor (LayerNorm scales around 1) so any mix-up shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm.weight" in name or "layernorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)


def _compare(ours: dict, theirs, n_layers: int) -> float:
    worst = 0.0
    for name in ("last_hidden_state", "pooler_output"):
        worst = max(
            worst, float(np.abs(np.asarray(ours[name]) - getattr(theirs, name).numpy()).max())
        )
    assert len(ours["hidden_states"]) == len(theirs.hidden_states) == n_layers + 1
    for a, b in zip(ours["hidden_states"], theirs.hidden_states):
        assert a.shape == tuple(b.shape)
        worst = max(worst, float(np.abs(np.asarray(a) - b.numpy()).max()))
    return worst


@pytest.mark.parity
@pytest.mark.parametrize("idx", range(len(BLIP2_CONFIGS)))
def test_blip2_qformer_parity_and_round_trip(tmp_path, idx):
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    torch.manual_seed(idx)
    hf_cfg = Blip2QFormerConfig(**BLIP2_CONFIGS[idx])
    hf = Blip2QFormerModel(hf_cfg).eval()
    _randomize(hf, seed=10 + idx)
    path = _save(hf, tmp_path / "qformer")

    module, params = load_hf(path)
    cfg = module.config
    assert cfg.hf_model_type == "blip_2_qformer" and not cfg.text_input
    query = np.asarray(params["query_tokens"])  # a bare folder has no query tokens
    assert query.shape == (1, cfg.num_query_tokens, hf_cfg.hidden_size)
    assert np.std(query) > 0  # deterministic random init, not zeros

    g = torch.Generator().manual_seed(idx)
    image = torch.randn(2, 7, hf_cfg.encoder_hidden_size, generator=g)
    image_mask = torch.ones(2, 7, dtype=torch.long)
    image_mask[1, 5:] = 0
    with torch.no_grad():
        ref = hf(
            query_embeds=torch.from_numpy(query.copy()).expand(2, -1, -1),
            encoder_hidden_states=image,
            encoder_attention_mask=image_mask,
            output_hidden_states=True,
        )
    out = _apply(
        module,
        params,
        image.numpy(),
        encoder_attention_mask=image_mask.numpy(),
        output_hidden_states=True,
    )
    err = _compare(out, ref, hf_cfg.num_hidden_layers)
    print(f"blip2 config {idx}: max abs err {err:.3g}")
    assert err <= TOL

    # HF -> Flax -> HF is exact (the bare export leaves the query tokens out, as HF does).
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = hf_qformer.params_to_hf(params, cfg)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


@pytest.mark.parity
@pytest.mark.parametrize("idx", range(len(INSTRUCT_CONFIGS)))
def test_instructblip_qformer_text_parity_and_round_trip(tmp_path, idx):
    from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

    torch.manual_seed(idx)
    hf_cfg = InstructBlipQFormerConfig(**INSTRUCT_CONFIGS[idx])
    hf = InstructBlipQFormerModel(hf_cfg).eval()
    _randomize(hf, seed=20 + idx)
    path = _save(hf, tmp_path / "qformer")

    module, params = load_hf(path)
    cfg = module.config
    assert cfg.hf_model_type == "instructblip_qformer" and cfg.text_input

    g = torch.Generator().manual_seed(100 + idx)
    nq, t = cfg.num_query_tokens, 6
    image = torch.randn(2, 5, hf_cfg.encoder_hidden_size, generator=g)
    ids = torch.randint(1, hf_cfg.vocab_size, (2, t), generator=g)
    text_mask = torch.ones(2, t, dtype=torch.long)
    text_mask[1, 3:] = 0  # right padding in the second row
    ids[1, 3:] = hf_cfg.pad_token_id
    full_mask = torch.cat([torch.ones(2, nq, dtype=torch.long), text_mask], dim=1)
    query = np.asarray(params["query_tokens"])
    with torch.no_grad():
        ref = hf(
            input_ids=ids,
            attention_mask=full_mask,
            query_embeds=torch.from_numpy(query.copy()).expand(2, -1, -1),
            encoder_hidden_states=image,
            output_hidden_states=True,
        )
    for mask in (text_mask.numpy(), full_mask.numpy()):  # text-only or HF-style mask
        out = _apply(
            module,
            params,
            image.numpy(),
            input_ids=ids.numpy(),
            attention_mask=mask,
            output_hidden_states=True,
        )
        assert out["last_hidden_state"].shape == (2, nq + t, hf_cfg.hidden_size)
        err = _compare(out, ref, hf_cfg.num_hidden_layers)
        print(f"instructblip config {idx}, mask {mask.shape}: max abs err {err:.3g}")
        assert err <= TOL

    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    back = hf_qformer.params_to_hf(params, cfg)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def _tiny_saved(tmp_path):
    from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

    torch.manual_seed(0)
    hf = InstructBlipQFormerModel(InstructBlipQFormerConfig(**INSTRUCT_CONFIGS[0])).eval()
    return hf, _save(hf, tmp_path / "src")


def _resave(hf, path, state_dict):
    from safetensors.numpy import save_file

    os.makedirs(path, exist_ok=True)
    hf.config.save_pretrained(str(path))
    save_file(
        {k: np.ascontiguousarray(v) for k, v in state_dict.items()},
        os.path.join(str(path), "model.safetensors"),
    )
    return str(path)


@pytest.mark.parity
def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    hf, _ = _tiny_saved(tmp_path)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    key = "encoder.layer.1.crossattention.attention.key.weight"
    sd[key] = np.zeros((32, 23), np.float32)  # encoder width 24 expected
    path = _resave(hf, tmp_path / "bad", sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_hf(path)
    msg = str(info.value)
    assert key in msg and "(32, 24)" in msg and "(32, 23)" in msg and path in msg


@pytest.mark.parity
def test_missing_and_unexpected_keys(tmp_path):
    hf, _ = _tiny_saved(tmp_path)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    missing = "encoder.layer.0.output_query.LayerNorm.bias"
    del sd[missing]
    sd["encoder.layer.0.extra.weight"] = np.zeros((2, 2), np.float32)
    path = _resave(hf, tmp_path / "bad", sd)
    with pytest.raises(CheckpointMismatchError) as info:
        load_hf(path)
    msg = str(info.value)
    assert missing in msg and "(32,)" in msg
    assert "encoder.layer.0.extra.weight" in msg


def _full_model(kind: str):
    """A tiny full BLIP-2 / InstructBLIP model (vision tower + Q-Former + OPT)."""
    import transformers as tf

    vision = dict(
        hidden_size=24,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    qformer = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        cross_attention_frequency=1,
        vocab_size=40,
        max_position_embeddings=16,
    )
    text = tf.OPTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        vocab_size=64,
        word_embed_proj_dim=16,
        max_position_embeddings=32,
    ).to_dict()
    if kind == "Blip2ForImageTextRetrieval":
        qformer["use_qformer_text_input"] = True
    config_cls = tf.InstructBlipConfig if kind.startswith("InstructBlip") else tf.Blip2Config
    cfg = config_cls(
        vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=5
    )
    return getattr(tf, kind)(cfg).eval()


@pytest.mark.parity
@pytest.mark.parametrize(
    "kind", ["Blip2Model", "Blip2ForImageTextRetrieval", "InstructBlipForConditionalGeneration"]
)
def test_qformer_and_query_tokens_from_full_model(tmp_path, kind):
    """Q-Former + query tokens out of a full model folder (``prefix="qformer."``)."""
    torch.manual_seed(0)
    hf = _full_model(kind)
    _randomize(hf, seed=3)
    path = _save(hf, tmp_path / "full")

    module, params = hf_qformer.load_full_model(path)
    cfg = module.config
    assert cfg.num_query_tokens == 5
    np.testing.assert_array_equal(
        np.asarray(params["query_tokens"]), hf.query_tokens.detach().numpy()
    )

    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 5, 24, generator=g)
    query = hf.query_tokens.expand(2, -1, -1)
    kwargs, ours_kwargs = {}, {}
    if cfg.text_input:
        ids = torch.randint(1, 40, (2, 4), generator=g)
        text_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
        full_mask = torch.cat([torch.ones(2, 5, dtype=torch.long), text_mask], dim=1)
        ours_kwargs = dict(input_ids=ids.numpy(), attention_mask=text_mask.numpy())
        if kind == "Blip2ForImageTextRetrieval":  # text embedded outside the Q-Former
            query = torch.cat([query, hf.embeddings(input_ids=ids)], dim=1)
            kwargs = dict(query_length=5, attention_mask=full_mask)
        else:
            kwargs = dict(input_ids=ids, attention_mask=full_mask)
    with torch.no_grad():
        ref = hf.qformer(
            query_embeds=query, encoder_hidden_states=image, output_hidden_states=True, **kwargs
        )
    out = _apply(module, params, image.numpy(), output_hidden_states=True, **ours_kwargs)
    err = _compare(out, ref, 2)
    print(f"{kind} q-former: max abs err {err:.3g}")
    assert err <= TOL

    back = hf_qformer.params_to_hf(params, cfg, prefix="qformer.")
    sd = {
        k: v.numpy()
        for k, v in hf.state_dict().items()
        if k.startswith(("qformer.", "embeddings.")) or k == "query_tokens"
    }
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_config_round_trip():
    cfg = hf_qformer.config_from_hf(
        {
            "model_type": "instructblip_qformer",
            "hidden_size": 32,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "intermediate_size": 48,
            "encoder_hidden_size": 24,
        },
        num_query_tokens=6,
    )
    assert cfg.num_query_tokens == 6 and cfg.text_input
    assert hf_qformer.config_from_hf(hf_qformer.config_to_hf(cfg)) == cfg
    assert hf_qformer.handles(cfg)
    with pytest.raises(ValueError, match="model_type"):
        hf_qformer.config_from_hf({"model_type": "bert"})
