"""Shared scoring: row trimming, option splitting and packing, fixed-shape batches, and a
Scorer whose functions trace once per shape."""

import chex
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vau_jax.data.datasets import Video
from vau_jax.eval import scoring as S
from vau_jax.methods.vagpt import data as D


class _Bytes:
    """Byte-level toy tokenizer: id = byte + 3; 0 pad, 1 bos, 2 eos."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return ([1] if add_bos else []) + [b + 3 for b in text.encode()]


@pytest.fixture
def rows():
    c = ml_collections.ConfigDict(
        dict(max_length=400, max_query_length=8, chat_format="vicuna_v1", system_prompt="")
    )
    video = Video(
        id="v0",
        split="test",
        label="fire",
        fps=8.0,
        n_frames=40,
        frame_intervals=((8, 20),),
        info={"anomaly_type": "fire"},
    )
    q = D.questions(video, 1, ("fire", "running", "falling", "fighting"))[0]
    human = D.human_text(q, None)
    tok = _Bytes()
    full = [
        D.chat_row(tok, c, human, q.question, f"{o.letter}. {o.text}", 0, 4, "v0")
        for o in q.options
    ]
    gen = D.chat_row(tok, c, human, q.question, None, 0, 4, "v0")
    return c, tok, q, human, full, gen


def test_rows_trim_exactly(rows):
    _, _, _, _, full, gen = rows
    b = S.stack_rows(full)
    n = max(int(r["attention_mask"].sum()) for r in full)
    assert b["input_ids"].shape == (4, -(-n // 16) * 16) and b["video"].shape == (4,)
    np.testing.assert_array_equal(
        b["input_ids"], np.stack([r["input_ids"] for r in full])[:, : b["input_ids"].shape[1]]
    )
    assert not np.stack([r["attention_mask"] for r in full])[:, b["input_ids"].shape[1] :].any()
    # Generation prompts are left-padded: the cut keeps the right end.
    m = int(gen["attention_mask"].sum())
    g = S.stack_rows([gen, gen])
    assert g["attention_mask"][:, -1].all() and g["input_ids"].shape[1] == -(-m // 16) * 16
    np.testing.assert_array_equal(g["input_ids"][0], gen["input_ids"][-g["input_ids"].shape[1] :])
    assert S.stack_rows([gen], min_length=n)["input_ids"].shape[1] == n


def test_options_split_into_prompt_and_answers(rows):
    c, tok, q, human, full, _ = rows
    sp = S.split_options(full, "v0")
    p = len(sp["prefix_ids"])
    for r, o, cont, score in zip(full, q.options, sp["cont_ids"], sp["score"]):
        assert bytes(x - 3 for x in cont[score] if x > 2).decode() == f"{o.letter}. {o.text}"
        np.testing.assert_array_equal(r["input_ids"][:p], sp["prefix_ids"])
    assert set(sp) >= {"query_ids", "query_mask", "video"}
    packed = S.pack_options([sp, sp], p + 3, 40, tok.pad_id)
    assert (
        packed["prefix_mask"].sum(1).tolist() == [p, p] and not packed["prefix_mask"][:, :3].any()
    )
    assert packed["cont_ids"].shape == (2, 4, 40) and packed["query_ids"].shape == (2, 8)
    bad = [full[0], D.chat_row(tok, c, human + "!", q.question, "A. x", 0, 4, "v0")]
    with pytest.raises(ValueError, match="v0: the option rows do not share one prompt"):
        S.split_options(bad, "v0")


def test_batches_have_one_shape(rows):
    _, tok, _, _, full, gen = rows
    shapes = {b["cont_ids"].shape for _, b in S.option_batches(full * 5, 4, 2, tok.pad_id)}
    assert len(shapes) == 1  # 5 questions in batches of 2: the last is repeated, not smaller
    counts = [n for n, _ in S.option_batches(full * 5, 4, 2, tok.pad_id)]
    assert counts == [2, 2, 1]
    width = S.stack_rows([gen])["input_ids"].shape[1]
    assert {b["input_ids"].shape for _, b in S.prompt_batches([gen] * 5, 2)} == {(2, width)}
    with pytest.raises(ValueError, match="whole number"):
        list(S.option_batches(full[:3], 4, 2, tok.pad_id))


def test_scorer_traces_once_per_shape(rows):
    _, tok, _, _, full, gen = rows

    def option_logprob(params, b):  # a stand-in model: sums the scored continuation ids
        return (b["cont_ids"] * b["score_mask"]).sum(-1).astype(jnp.float32) * params

    scorer = S.Scorer(
        option_logprob, lambda p, b: b["input_ids"], wrap=lambda f: chex.assert_max_traces(f, n=1)
    )
    a = scorer.options(jnp.float32(1.0), full * 3, 4, tok.pad_id, batch_size=2)
    b = scorer.options(jnp.float32(1.0), full * 3, 4, tok.pad_id, batch_size=2)  # no retrace
    np.testing.assert_array_equal(a, b)
    chex.assert_shape(a, (3, 4))
    chex.assert_tree_all_finite(a)
    with pytest.raises(AssertionError, match="traced > 1 times"):  # a new shape, a new trace
        scorer.options(jnp.float32(1.0), full * 3, 4, tok.pad_id, batch_size=3)
    # The prefix embedding too: 5 prompts in 3 batches of one shape trace it once.
    width = S.stack_rows([gen])["input_ids"].shape[1]
    for _, batch in S.prompt_batches([gen] * 5, 2):
        chex.assert_shape(scorer.prefix_embeds(jnp.float32(1.0), batch), (2, width))
    with pytest.raises(AssertionError, match="traced > 1 times"):  # a new batch size
        scorer.prefix_embeds(jnp.float32(1.0), S.stack_rows([gen] * 3))
