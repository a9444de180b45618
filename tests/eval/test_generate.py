"""Generation: greedy equals HF ``generate``; top-p -> 0 equals greedy; seeded; eos handling."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vau_jax.convert import load_hf  # noqa: E402
from vau_jax.eval.generate import generate, top_p_filter  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(3)
    cfg = transformers.LlamaConfig(
        vocab_size=89,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=1000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper distributions than the 0.02 init, so greedy paths vary
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(2.0)
    path = tmp_path_factory.mktemp("gen")
    model.save_pretrained(path, safe_serialization=True)
    module, params = load_hf(str(path))
    return model, module, params


@pytest.mark.parity
def test_greedy_equals_hf_generate_left_padded(tiny):
    model, module, params = tiny
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 89, (2, 6))
    mask = np.ones((2, 6), np.int64)
    ids[1, :2], mask[1, :2] = 0, 0  # left padding
    with torch.no_grad():
        ref = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=20,
            min_new_tokens=20,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[:, 6:].numpy()
    tokens, lengths = generate(
        module, params, input_ids=ids, attention_mask=mask, max_new_tokens=20, eos_id=None
    )
    np.testing.assert_array_equal(np.asarray(tokens), ref)
    np.testing.assert_array_equal(np.asarray(lengths), [20, 20])
    assert min(len(set(r)) for r in ref.tolist()) > 3  # non-degenerate continuations


@pytest.mark.parity
def test_eos_stops_each_row_like_hf(tiny):
    model, module, params = tiny
    ids = np.random.RandomState(1).randint(3, 89, (2, 6))
    tokens, _ = generate(module, params, input_ids=ids, max_new_tokens=20, eos_id=None)
    eos = int(np.asarray(tokens)[0, 4])  # pretend the 5th token of row 0 is the eos
    with torch.no_grad():
        ref = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.ones(2, 6, dtype=torch.long),
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=0,
        )[:, 6:].numpy()
    tokens, lengths = generate(
        module, params, input_ids=ids, max_new_tokens=20, eos_id=eos, pad_id=0
    )
    tokens = np.asarray(tokens)
    first_eos = list(tokens[0]).index(eos)
    assert int(lengths[0]) == first_eos + 1 <= 5
    np.testing.assert_array_equal(tokens[:, : ref.shape[1]], ref)
    assert (tokens[0, first_eos + 1 :] == 0).all()


def test_top_p_to_zero_is_greedy_and_sampling_is_seeded(tiny):
    _, module, params = tiny
    ids = np.random.RandomState(2).randint(3, 89, (2, 6))
    greedy, _ = generate(module, params, input_ids=ids, max_new_tokens=20)
    near_zero, _ = generate(
        module,
        params,
        input_ids=ids,
        max_new_tokens=20,
        greedy=False,
        top_p=1e-6,
        temperature=0.7,
        rng=jax.random.key(5),
    )
    np.testing.assert_array_equal(np.asarray(near_zero), np.asarray(greedy))
    kw = dict(input_ids=ids, max_new_tokens=20, greedy=False, top_p=0.9, temperature=1.5)
    a, _ = generate(module, params, rng=jax.random.key(7), **kw)
    b, _ = generate(module, params, rng=jax.random.key(7), **kw)
    c, _ = generate(module, params, rng=jax.random.key(8), **kw)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_inputs_embeds_prefix_generates_like_ids(tiny):
    _, module, params = tiny
    ids = np.random.RandomState(3).randint(3, 89, (2, 6))
    emb = module.apply({"params": params}, jnp.asarray(ids), method="embed")
    a, _ = generate(module, params, input_ids=ids, max_new_tokens=20)
    b, _ = generate(module, params, inputs_embeds=emb, max_new_tokens=20)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_top_p_filter_keeps_the_nucleus():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = np.isfinite(np.asarray(top_p_filter(logits, 0.75)))
    np.testing.assert_array_equal(kept, [[True, True, False, False], [False, False, True, True]])
    chex.assert_trees_all_equal(
        np.isfinite(np.asarray(top_p_filter(logits, 1e-9))).sum(axis=1), np.asarray([1, 1])
    )
