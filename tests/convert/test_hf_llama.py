"""HF LlamaForCausalLM <-> vau_jax LLaMA: logits and every hidden state, round trip, errors."""

import dataclasses
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vau_jax.convert import CheckpointMismatchError, hf_llama, load_hf  # noqa: E402

CONFIGS = {
    # GQA (2 kv heads for 4 query heads), untied embeddings, non-default theta.
    "gqa_untied": dict(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    ),
    # MHA, tied embeddings, llama3 RoPE scaling, biases, head_dim != hidden / heads.
    "mha_tied_llama3": dict(
        vocab_size=61,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=3,
        head_dim=20,
        tie_word_embeddings=True,
        attention_bias=True,
        mlp_bias=True,
        rope_parameters=dict(
            rope_type="llama3",
            rope_theta=10000.0,
            factor=4.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8,
        ),
    ),
}


def _hf_model(name: str, seed: int):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(**CONFIGS[name])
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms so a swapped scale would show
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def hf_folder(request, tmp_path_factory):
    model = _hf_model(request.param, seed=len(request.param))
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path, safe_serialization=True)
    return model, str(path)


@pytest.mark.parity
def test_logits_and_hidden_states_match_hf(hf_folder):
    model, path = hf_folder
    module, params = load_hf(path)
    vocab = model.config.vocab_size
    ids = np.random.RandomState(0).randint(0, vocab, (2, 13))
    with torch.no_grad():
        ref = model(torch.tensor(ids), output_hidden_states=True)
    out = module.apply({"params": params}, ids, output_hidden_states=True)
    assert out["logits"].shape == (2, 13, vocab)
    # max abs err measured 1.8e-7 to 2.7e-7 (both configs, 3 seeds, AVX2 EPYC)
    np.testing.assert_allclose(np.asarray(out["logits"]), ref.logits.numpy(), atol=1.5e-6, rtol=0)
    assert len(out["hidden_states"]) == len(ref.hidden_states) == model.config.num_hidden_layers + 1
    for i, (ours, theirs) in enumerate(zip(out["hidden_states"], ref.hidden_states)):
        np.testing.assert_allclose(  # measured 8.3e-7 to 1.2e-6 (|h| <= 4.6)
            np.asarray(ours), theirs.numpy(), atol=6e-6, rtol=0, err_msg=f"hidden state {i}"
        )


@pytest.mark.parity
def test_left_padded_batch_matches_hf(hf_folder):
    model, path = hf_folder
    module, params = load_hf(path)
    ids = np.random.RandomState(1).randint(3, model.config.vocab_size, (2, 9))
    mask = np.ones((2, 9), np.int64)
    mask[1, :4] = 0
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    with torch.no_grad():
        ref = model(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)
        ).logits.numpy()
    ours = np.asarray(module.apply({"params": params}, ids, attention_mask=mask)["logits"])
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours[valid], ref[valid], atol=1.5e-6, rtol=0)  # measured 2.7e-7


@pytest.mark.slow
@pytest.mark.parity
def test_round_trip_is_exact_and_scan_layout_matches(hf_folder):
    model, path = hf_folder
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    module, params = load_hf(path)
    # export_hf(module, params) dispatches to this function for LlamaConfig.
    assert hf_llama.handles(module.config)
    back = hf_llama.params_to_hf(params, module.config)
    expected = {
        k: v
        for k, v in sd.items()
        if not (model.config.tie_word_embeddings and k == "lm_head.weight")
    }
    assert sorted(back) == sorted(expected)
    for k, v in expected.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    cfg_scan = dataclasses.replace(module.config, scan_layers=True, remat_policy="full")
    params_scan = hf_llama.params_from_hf(sd, cfg_scan)
    assert params_scan["model"]["layers"]["self_attn"]["q_proj"]["kernel"].shape[0] == (
        model.config.num_hidden_layers
    )
    for k, v in hf_llama.params_to_hf(params_scan, cfg_scan).items():
        np.testing.assert_array_equal(v, expected[k], err_msg=k)
    ids = np.random.RandomState(2).randint(0, model.config.vocab_size, (2, 7))
    loop = module.apply({"params": params}, ids, output_hidden_states=True)
    scan = hf_llama.module_from_config(cfg_scan).apply(
        {"params": params_scan}, ids, output_hidden_states=True
    )
    # scan vs loop, measured max abs err: logits 1.5e-7, hidden states 7.2e-7
    np.testing.assert_allclose(
        np.asarray(scan["logits"]), np.asarray(loop["logits"]), atol=1e-6, rtol=0
    )
    for a, b in zip(scan["hidden_states"], loop["hidden_states"]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=4e-6, rtol=0)
    hf_cfg = hf_llama.config_to_hf(module.config)
    assert hf_llama.config_from_hf(json.loads(json.dumps(hf_cfg))) == module.config
    # the exported config + state dict rebuild an HF model with the same outputs
    rebuilt = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**{k: v for k, v in hf_cfg.items() if k != "model_type"})
    ).eval()
    missing, unexpected = rebuilt.load_state_dict(
        {k: torch.from_numpy(v) for k, v in back.items()}, strict=False
    )
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    if model.config.tie_word_embeddings:
        rebuilt.tie_weights()
    with torch.no_grad():
        np.testing.assert_array_equal(
            rebuilt(torch.tensor(ids)).logits.numpy(), model(torch.tensor(ids)).logits.numpy()
        )


def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    model = _hf_model("gqa_untied", seed=0)
    model.save_pretrained(tmp_path, safe_serialization=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 100  # weights are 96 wide
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError) as err:
        load_hf(str(tmp_path))
    msg = str(err.value)
    assert "model/layers_0/mlp/gate_proj/kernel" in msg
    assert "(64, 100)" in msg and "(64, 96)" in msg
    assert os.fspath(tmp_path) in msg
