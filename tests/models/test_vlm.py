"""The LLaMA-VID-style video LLM: token splicing, context/content tokens, loss, cached decoding."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.models import registry
from vau_jax.models.llama import init_cache, prefill
from vau_jax.models.vlm import (
    VideoLLM,
    VLMConfig,
    lm_loss,
    lm_loss_at,
    sequence_logprob,
    target_positions,
)


def _cfg(projector_hidden=0):
    llm = dataclasses.replace(registry.get_config("tiny-llama"), vocab_size=64)
    q = dataclasses.replace(
        registry.get_config("tiny-qformer"),
        encoder_hidden_size=16,
        vocab_size=64,
        hidden_dropout_prob=0.0,
    )
    return VLMConfig(llm=llm, qformer=q, vision_width=16, projector_hidden=projector_hidden)


def _inputs(b=2, t=3, k=5, L=20, seed=0):
    rng = np.random.default_rng(seed)
    visual = jnp.asarray(rng.normal(size=(b, t, k, 16)), jnp.float32)
    ids = rng.integers(3, 64, size=(b, L)).astype(np.int32)
    video = np.zeros((b, L), bool)
    video[:, 4 : 4 + 2 * t] = True
    ids[video] = 0
    query = rng.integers(3, 64, size=(b, 6)).astype(np.int32)
    return visual, jnp.asarray(ids), jnp.asarray(video), jnp.asarray(query)


def _init(cfg, visual, ids, video, query):
    m = VideoLLM(cfg)
    mask = jnp.ones(ids.shape, bool)
    params = nn.unbox(m.init(jax.random.key(0), ids, mask, video, visual, query)["params"])
    return m, params, mask


@pytest.mark.slow
def test_parameter_names_and_splicing_order():
    cfg = _cfg()
    visual, ids, video, query = _inputs()
    m, params, _ = _init(cfg, visual, ids, video, query)
    assert set(params) == {"qformer", "query_proj", "context_proj", "content_proj", "llm"}
    vis = m.apply({"params": params}, visual, query, method=VideoLLM.visual_embeds)
    assert vis.shape == (2, 6, cfg.llm.hidden_size)
    emb = m.apply({"params": params}, ids, video, vis, method=VideoLLM.embed)
    text = m.apply({"params": params}, ids, method=lambda mdl, i: mdl.llm.embed(i))
    np.testing.assert_array_equal(np.asarray(emb[:, 4:10]), np.asarray(vis))
    np.testing.assert_array_equal(np.asarray(emb[:, :4]), np.asarray(text[:, :4]))
    np.testing.assert_array_equal(np.asarray(emb[:, 10:]), np.asarray(text[:, 10:]))


@pytest.mark.slow
def test_context_token_follows_the_text_and_content_token_is_pooled():
    cfg = _cfg(projector_hidden=32)
    visual, ids, video, query = _inputs()
    m, params, _ = _init(cfg, visual, ids, video, query)
    # Sharpen the query->token attention (at init it is nearly uniform).
    params = {
        **params,
        "query_proj": {**params["query_proj"], "kernel": params["query_proj"]["kernel"] * 300},
    }
    f = lambda v, q: m.apply({"params": params}, v, q, method=VideoLLM.visual_embeds)
    a, b = f(visual, query), f(visual, (query + 7) % 64)
    # Content tokens (odd slots) ignore the instruction; context tokens (even) follow it.
    # |token| <= 7e-3 here, so the f32 floors below are scaled to it (measured 0)
    np.testing.assert_allclose(np.asarray(a[:, 1::2]), np.asarray(b[:, 1::2]), atol=1e-8)
    assert np.abs(np.asarray(a[:, 0::2] - b[:, 0::2])).max() > 1e-4
    # Content token = content_proj(mean of the frame's tokens): permuting tokens keeps it.
    perm = visual[:, :, ::-1]
    np.testing.assert_allclose(np.asarray(f(perm, query)), np.asarray(a), atol=1.5e-8)  # 2.6e-9
    # Manual content token of frame 1 of video 0.
    x = visual[0, 1].mean(0)
    manual = m.apply({"params": params}, x, method=lambda mdl, v: mdl.content_proj(v))
    np.testing.assert_allclose(np.asarray(a[0, 3]), np.asarray(manual), atol=1e-8)  # measured 0


class ScoringTest(chex.TestCase):
    """The loss and the option score against numpy, eagerly and under ``jax.jit``."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_lm_loss_and_sequence_logprob_match_numpy(self):
        rng = np.random.default_rng(1)
        logits = rng.normal(size=(2, 7, 11)).astype(np.float32)
        ids = rng.integers(0, 11, size=(2, 7))
        mask = np.zeros((2, 7), bool)
        mask[0, 4:] = True
        mask[1, 2:5] = True
        loss, aux = self.variant(lm_loss)(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask))
        chex.assert_shape([loss, aux["token_accuracy"], aux["target_tokens"]], ())
        chex.assert_tree_all_finite((loss, aux))
        lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        terms = [-lp[b, i - 1, ids[b, i]] for b in range(2) for i in range(1, 7) if mask[b, i]]
        np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-6)  # measured 8.0e-8
        assert float(aux["target_tokens"]) == len(terms)
        seq = self.variant(sequence_logprob)(
            jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask)
        )
        chex.assert_shape(seq, (2,))
        chex.assert_tree_all_finite(seq)
        for b in range(2):
            ref = sum(lp[b, i - 1, ids[b, i]] for i in range(1, 7) if mask[b, i])
            np.testing.assert_allclose(float(seq[b]), ref, rtol=1e-6)  # measured 1.3e-7


def test_loss_at_target_positions_equals_the_full_loss():
    # target_positions + lm_loss_at (logits of the target positions only) against lm_loss on
    # all positions; rows with no target, a full row, and the width check.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(3, 9, 13)).astype(np.float32)
    ids = rng.integers(0, 13, size=(3, 9))
    mask = np.zeros((3, 9), bool)
    mask[0, 5:] = True
    mask[1, 1:] = True  # every token after the first: 8 targets
    pos, w = target_positions(mask)
    assert pos.shape == w.shape == (3, 8) and pos.dtype == np.int32
    np.testing.assert_array_equal(w.sum(1), [4, 8, 0])
    np.testing.assert_array_equal(pos[0, :4], [4, 5, 6, 7])
    assert target_positions(mask, bucket=16)[0].shape == (3, 16)
    with pytest.raises(ValueError, match="8 target tokens, more than width=4"):
        target_positions(mask, width=4)
    full, aux_full = lm_loss(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask))
    at = np.take_along_axis(logits, pos[..., None], axis=1)
    loss, aux = jax.jit(lm_loss_at)(jnp.asarray(at), jnp.asarray(ids), pos, w)
    np.testing.assert_allclose(float(loss), float(full), rtol=2e-7)  # measured 0
    assert float(aux["target_tokens"]) == float(aux_full["target_tokens"]) == 12
    assert float(aux["token_accuracy"]) == float(aux_full["token_accuracy"])


@pytest.mark.slow
def test_cached_prefill_from_multimodal_prefix_equals_full_forward():
    cfg = _cfg()
    visual, ids, video, query = _inputs()
    m, params, mask = _init(cfg, visual, ids, video, query)
    mask = mask.at[1, :3].set(False)  # left padding in row 1
    full = m.apply({"params": params}, ids, mask, video, visual, query)["logits"]
    emb = m.apply({"params": params}, ids, video, visual, query, method=VideoLLM.prefix_embeds)
    llm = m.apply({"params": params}, method=lambda mdl: mdl.llm.clone())
    cache = init_cache(cfg.llm, 2, 32)
    nxt, _ = prefill(llm, params["llm"], cache, inputs_embeds=emb, attention_mask=mask)
    chex.assert_trees_all_close(nxt, full[:, -1], atol=2e-6, rtol=0)  # measured 1.9e-7 to 4.2e-7


@pytest.mark.slow
def test_shared_prefix_logprob_equals_full_sequences():
    """Options scored as continuations of one cached multimodal prefix == each option scored as
    its own full right-padded sequence (different prefix lengths, padded continuations)."""
    from vau_jax.models.vlm import shared_prefix_logprob

    cfg = _cfg(projector_hidden=32)
    visual, ids, video, query = _inputs(L=20)
    m, params, _ = _init(cfg, visual, ids, video, query)
    rng = np.random.default_rng(1)
    prefix_len = [14, 11]  # row 1's prompt is shorter: left-padded in the prefix batch
    conts = [[rng.integers(3, 64, size=n) for n in (3, 5, 2)] for _ in range(2)]
    o, c, p, full_len = 3, 6, 16, 24
    pre = np.zeros((2, p), np.int32)
    pre_mask = np.zeros((2, p), bool)
    pre_video = np.zeros((2, p), bool)
    cont = np.zeros((2, o, c), np.int32)
    cont_mask = np.zeros((2, o, c), bool)
    full_ids = np.zeros((2 * o, full_len), np.int32)
    full_att = np.zeros((2 * o, full_len), bool)
    full_loss = np.zeros((2 * o, full_len), bool)
    full_video = np.zeros((2 * o, full_len), bool)
    for i in range(2):
        n = prefix_len[i]
        pre[i, p - n :] = np.asarray(ids[i, :n])
        pre_mask[i, p - n :] = True
        pre_video[i, p - n :] = np.asarray(video[i, :n])
        for j, tok in enumerate(conts[i]):
            cont[i, j, : len(tok)] = tok
            cont_mask[i, j, : len(tok)] = True
            r = i * o + j
            full_ids[r, :n] = np.asarray(ids[i, :n])
            full_ids[r, n : n + len(tok)] = tok
            full_att[r, : n + len(tok)] = True
            full_loss[r, n : n + len(tok)] = True
            full_video[r, :n] = np.asarray(video[i, :n])
    score = cont_mask.copy()
    score[:, :, 0] = False  # only the tokens after the first count (as a loss mask may say)
    full_loss_scored = full_loss.copy()
    for i in range(2):
        for j in range(o):
            full_loss_scored[i * o + j, prefix_len[i]] = False
    got = shared_prefix_logprob(
        m, params, pre, pre_mask, pre_video, visual, query, None, cont, cont_mask, score
    )
    vis_rep = jnp.repeat(visual, o, axis=0)
    q_rep = jnp.repeat(query, o, axis=0)
    logits = m.apply({"params": params}, full_ids, full_att, full_video, vis_rep, q_rep, None)[
        "logits"
    ]
    want = sequence_logprob(logits, jnp.asarray(full_ids), jnp.asarray(full_loss_scored))
    chex.assert_shape(got, (2, o))
    # |log p| reaches 17 (1 ulp = 1.9e-6); measured max abs err 2.4e-7 to 1.9e-6
    np.testing.assert_allclose(np.asarray(got).reshape(-1), np.asarray(want), atol=1e-5, rtol=0)
    # And the options differ (the check is not vacuous).
    assert np.ptp(np.asarray(got)) > 1e-3


@pytest.mark.slow
def test_packed_rows_give_each_conversation_its_own_logits():
    """Two video conversations and a text-only one packed into one row
    (:func:`vau_jax.data.packing.pack_rows`, videos and Q-Former queries beside them): each
    conversation's logits equal its own padded row's, whatever the packing order."""
    from vau_jax.data.packing import pack_rows

    cfg = _cfg(projector_hidden=32)
    t, L = 3, 20
    visual, ids, video, query = _inputs(b=3, t=t, L=L, seed=4)
    m, params, _ = _init(cfg, visual, ids, video, query)
    lengths = (14, 7, 12)
    rows = []
    for i, n in enumerate(lengths):
        vm = np.asarray(video[i]).copy()
        if i == 1:  # text only: no video positions
            vm[:] = False
        row = {
            "input_ids": np.where(vm, 0, np.asarray(ids[i])).astype(np.int32),
            "attention_mask": np.arange(L) < n,
            "loss_mask": np.arange(L) >= 10,
            "video_mask": vm & (np.arange(L) < n),
            "video": np.int32(i),
            "query_ids": np.asarray(query[i]),
            "query_mask": np.ones(query.shape[1], np.int32),
        }
        rows.append(row)
    (packed,) = pack_rows(
        rows,
        sum(lengths),
        sequence_keys=("input_ids", "loss_mask", "video_mask"),
        side_keys=("video", "query_ids", "query_mask"),
        max_segments=3,
        side_mask_key="video_mask",
    )
    assert sorted(packed["video"][:2].tolist()) == [0, 2]  # the text row holds no video slot
    vis = visual[jnp.asarray(packed["video"])][None]  # [1, K, T, P, Dv]
    got = m.apply(
        {"params": params},
        jnp.asarray(packed["input_ids"])[None],
        None,
        jnp.asarray(packed["video_mask"])[None],
        vis,
        jnp.asarray(packed["query_ids"])[None],
        jnp.asarray(packed["query_mask"])[None],
        segment_ids=jnp.asarray(packed["segment_ids"])[None],
    )["logits"][0]
    for i, n in enumerate(lengths):
        r = rows[i]
        want = m.apply(
            {"params": params},
            jnp.asarray(r["input_ids"])[None],
            jnp.asarray(r["attention_mask"])[None],
            jnp.asarray(r["video_mask"])[None],
            visual[i : i + 1],
            jnp.asarray(r["query_ids"])[None],
            jnp.asarray(r["query_mask"])[None],
        )["logits"][0, :n]
        seg = next(k for k in range(1, 4) if (packed["segment_ids"] == k).sum() == n)
        np.testing.assert_allclose(
            np.asarray(got)[packed["segment_ids"] == seg], np.asarray(want), rtol=0, atol=2e-6
        )
