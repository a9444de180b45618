"""The decoding layout: the same logits and caches as ``llama.decode_step``, the same tokens as
``generate`` on the model's layout, in every config variant the copy has to handle."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.eval.generate import extend, generate
from vau_jax.models import llama, llama_decode

BASE = llama.LlamaConfig(
    vocab_size=97,
    hidden_size=48,
    intermediate_size=80,
    num_hidden_layers=3,
    num_attention_heads=6,
    num_key_value_heads=2,
    head_dim=8,
    rope_theta=500.0,
)

VARIANTS = {
    "plain": BASE,
    "tied": dataclasses.replace(BASE, tie_word_embeddings=True),
    "biases": dataclasses.replace(BASE, attention_bias=True, mlp_bias=True),
    "scan_layout": dataclasses.replace(BASE, scan_layers=True),
    "llama3_rope_gelu": dataclasses.replace(
        BASE, rope_type="llama3", rope_factor=8.0, hidden_act="gelu"
    ),
}


def _model(cfg: llama.LlamaConfig, seed: int = 0):
    module = llama.LlamaForCausalLM(cfg)
    ids = jnp.zeros((1, 4), jnp.int32)
    params = nn.meta.unbox(module.init(jax.random.key(seed), ids)["params"])
    # scale the random init up so that logits differ clearly between tokens and biases matter
    params = jax.tree.map(lambda x: x * 3.0 if x.ndim >= 1 else x, params)
    return module, params


def _prompt_cache(module, params, batch: int, prompt: int, slots: int):
    rng = np.random.default_rng(1)
    ids = rng.integers(3, module.config.vocab_size, (batch, prompt)).astype(np.int32)
    mask = np.ones((batch, prompt), np.int32)
    if batch > 1:
        mask[1, :2] = 0  # a left-padded row
    cache = llama.init_cache(module.config, batch, slots)
    logits, cache = llama.prefill(
        module, params, cache, input_ids=ids, attention_mask=mask, fresh=True
    )
    return jnp.argmax(logits, -1).astype(jnp.int32), cache


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_steps_match_the_model_layout(name):
    module, params = _model(VARIANTS[name])
    weights = llama_decode.prepare(module.config, params)
    tok, cache = _prompt_cache(module, params, batch=2, prompt=5, slots=12)
    ref_step = jax.jit(lambda p, t, c: llama.decode_step(module, p, t, c))
    new_step = jax.jit(lambda w, t, c: llama_decode.decode_step(module.config, w, t, c))
    ref_cache = new_cache = cache
    worst = 0.0
    for _ in range(6):
        ref_logits, ref_cache = ref_step(params, tok, ref_cache)
        new_logits, new_cache = new_step(weights, tok, new_cache)
        worst = max(worst, float(jnp.max(jnp.abs(ref_logits - new_logits))))
        for key in ("mask", "pos", "index"):
            np.testing.assert_array_equal(np.asarray(new_cache[key]), np.asarray(ref_cache[key]))
        # measured up to 2e-6 on the AVX2 EPYC and 3.3e-6 on an AVX-512/AMX Xeon (entries up
        # to ~3: fused and separate products round differently)
        np.testing.assert_allclose(new_cache["k"], ref_cache["k"], atol=4e-6, rtol=0)
        np.testing.assert_allclose(new_cache["v"], ref_cache["v"], atol=4e-6, rtol=0)
        tok = jnp.argmax(ref_logits, -1).astype(jnp.int32)
    scale = float(jnp.max(jnp.abs(ref_logits)))
    assert scale > 1.0  # logits far from zero: the bound below is relative to something
    # measured up to 2.7e-7 of the scale on the AVX2 EPYC, 1.2e-6 on an AVX-512/AMX Xeon
    assert worst < 2e-6 * scale, (worst, scale)


def test_layout_is_rows_of_the_kernels():
    module, params = _model(VARIANTS["biases"])
    w = llama_decode.prepare(module.config, params)
    blk = params["model"]["layers_1"]
    cfg = module.config
    nq, nkv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    qkv = np.asarray(w["blocks"][1]["qkv"])
    assert qkv.shape == (nq + 2 * nkv, cfg.hidden_size)
    np.testing.assert_array_equal(
        qkv[nq : nq + nkv], np.asarray(blk["self_attn"]["k_proj"]["kernel"]).T
    )
    gate_up = np.asarray(w["blocks"][1]["gate_up"])
    np.testing.assert_array_equal(
        gate_up[cfg.intermediate_size :], np.asarray(blk["mlp"]["up_proj"]["kernel"]).T
    )
    assert w["head"].shape == (cfg.vocab_size, cfg.hidden_size)


@pytest.mark.slow
def test_bfloat16_compute_copies_in_the_compute_dtype():
    cfg = dataclasses.replace(BASE, dtype="bfloat16")
    module, params = _model(cfg)
    w = llama_decode.prepare(cfg, params)
    assert w["blocks"][0]["qkv"].dtype == jnp.bfloat16
    tok, cache = _prompt_cache(module, params, batch=1, prompt=4, slots=8)
    ref, _ = llama.decode_step(module, params, tok, cache)
    new, _ = llama_decode.decode_step(cfg, w, tok, cache)
    scale = float(jnp.max(jnp.abs(ref)))
    # measured 0 here; bf16 products summed in another order may part by an ulp (2^-8)
    assert float(jnp.max(jnp.abs(ref - new))) <= 2.0**-8 * scale


@pytest.mark.slow
@pytest.mark.parametrize("name", ["plain", "scan_layout"])
def test_generate_and_extend_give_the_same_tokens(name):
    module, params = _model(VARIANTS[name], seed=2)
    weights = llama_decode.prepare(module.config, params)
    ids = np.random.default_rng(3).integers(3, 97, (1, 7)).astype(np.int32)
    kw = dict(input_ids=ids, max_new_tokens=12, eos_id=None, return_cache=True)
    ref_tokens, _, ref_cache = generate(module, params, cache_len=40, **kw)
    new_tokens, _, new_cache = generate(module, params, cache_len=40, decode_weights=weights, **kw)
    np.testing.assert_array_equal(np.asarray(new_tokens), np.asarray(ref_tokens))
    assert len(set(np.asarray(ref_tokens)[0].tolist())) > 3  # not one repeated token
    turn = np.random.default_rng(4).integers(3, 97, (1, 5)).astype(np.int32)
    ref_next = extend(module, params, ref_cache, turn, max_new_tokens=8)[0]
    new_next = extend(module, params, new_cache, turn, max_new_tokens=8, decode_weights=weights)[0]
    np.testing.assert_array_equal(np.asarray(new_next), np.asarray(ref_next))


@pytest.mark.slow
def test_batches_of_several_rows_decode_on_the_model_layout():
    module, params = _model(BASE, seed=5)
    weights = llama_decode.prepare(module.config, params)
    ids = np.random.default_rng(6).integers(3, 97, (3, 6)).astype(np.int32)
    ref = generate(module, params, input_ids=ids, max_new_tokens=9)[0]
    # wrong weights would change the tokens if a 3-row batch read them
    wrong = jax.tree.map(jnp.zeros_like, weights)
    got = generate(module, params, input_ids=ids, max_new_tokens=9, decode_weights=wrong)[0]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    one = generate(module, params, input_ids=ids[:1], max_new_tokens=9, decode_weights=wrong)[0]
    assert not np.array_equal(np.asarray(one), np.asarray(ref)[:1])  # one row does read them


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the layout is made on the CPU only")
def test_for_backend_makes_the_copy_once_per_loaded_model_and_only_where_it_pays():
    import gc

    small, small_params = _model(BASE)
    assert llama_decode.for_backend(small.config, small_params) is None  # 48 wide: loses
    wide_cfg = dataclasses.replace(
        BASE,
        hidden_size=llama_decode.MIN_HIDDEN_SIZE,
        num_hidden_layers=1,
        head_dim=64,
        num_attention_heads=8,
        num_key_value_heads=2,
    )
    wide, params = _model(wide_cfg)
    first = llama_decode.for_backend(wide_cfg, params)
    assert first is not None and first["blocks"][0]["qkv"].shape == (768, 512)
    assert llama_decode.for_backend(wide_cfg, params) is first  # reused, not made again
    other = jax.tree.map(lambda x: x + 0.0, params)  # another loaded copy: its own layout
    assert llama_decode.for_backend(wide_cfg, other) is not first
    n = len(llama_decode._MADE)
    del params, other
    gc.collect()
    assert len(llama_decode._MADE) == n - 2  # freed with the weights they were made from


@pytest.mark.slow
def test_one_row_scorer_generation_decodes_on_the_layout(monkeypatch):
    """``Scorer`` reads the decoding layout for one-row batches only, with the same tokens."""
    import types

    from vau_jax.eval.scoring import Scorer

    module, params = _model(BASE, seed=7)
    calls = []
    real = llama_decode.for_backend

    def counted(cfg, p):
        calls.append(cfg)
        return real(cfg, p)

    monkeypatch.setattr(llama_decode, "MIN_HIDDEN_SIZE", 0)  # the 48-wide model qualifies
    monkeypatch.setattr(llama_decode, "for_backend", counted)
    tok = types.SimpleNamespace(eos_id=-1, pad_id=0)
    embed = lambda p, b: module.apply({"params": p["llm"]}, b["input_ids"], method="embed")  # noqa: E731
    fake = types.SimpleNamespace(prefix_embeds=embed)
    ids = np.random.default_rng(8).integers(3, 97, (2, 6)).astype(np.int32)
    for rows in (ids[:1], ids):
        batch = {"input_ids": rows, "attention_mask": np.ones_like(rows)}
        got = Scorer._generate_batch(fake, {"llm": params}, module, batch, tok, 10)[0]
        ref = generate(module, params, input_ids=rows, max_new_tokens=10, eos_id=-1)[0]
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
        assert len(calls) == 1  # consulted for the one-row batch, not for the two-row one
