"""Text rows about VA-GPT's temporal prior (``methods/pretrain/prior_text.py``)."""

import numpy as np
import pytest

from tests.methods.test_pretrain_text_llm import _report
from vau_jax.data import templates as T
from vau_jax.data.instruct import NORMAL
from vau_jax.methods.pretrain import prior_text as PT
from vau_jax.methods.pretrain import text_llm as TL


def test_prior_only_multiple_choice_points_at_the_option_the_prior_gives():
    classes = ("running", "fighting", "explosion")
    rep = _report("running", ((4.0, 6.0),))
    for seed in range(12):
        conv, q = PT.prior_mc_conversation(rep, seed, classes)
        assert q.options[q.answer_index].interval == (4.0, 6.0)
        human, answer = conv[0]["value"], conv[1]["value"]
        assert not human.startswith("Report:")  # the prior is the only evidence
        assert human.startswith(
            T.TETG_CLASSES.format(word="crime", types="'running', 'fighting', 'explosion'")
        )
        assert any(q in human for q in PT.PRIOR_MC_QUESTIONS)
        assert not any(q in human for q in T.MC_QUESTIONS)  # never the evaluation's wording
        s, e = PT.prior_interval(rep, np.random.default_rng([seed, 31]))
        assert abs(s - 4.0) <= 1.0 + 1e-9 and abs(e - 6.0) <= 1.0 + 1e-9
        assert f"from {s:.1f}s to {e:.1f}s" in human
        # the answer is the option with the true interval: the one the prior overlaps most
        lines = [ln for ln in human.split("\n") if ln[:3] in ("A. ", "B. ", "C. ", "D. ")]
        assert len(lines) == 4 and answer in lines and "4.0s to 6.0s" in answer
        why, _ = PT.prior_mc_conversation(rep, seed, classes, "evidence")
        assert why[0] == conv[0]
        assert why[1]["value"] == f"{PT.PRIOR_SAID.format(start=f'{s:.1f}s', end=f'{e:.1f}s')} " + (
            f"Answer: {answer[0]}."
        )
        option, _ = PT.prior_mc_conversation(rep, seed, classes, "option")
        assert option[0] == conv[0] and option[1]["value"] == f"{answer[3:]}. Answer: {answer[0]}."
    with pytest.raises(ValueError, match="'letters'"):
        PT.prior_mc_conversation(rep, 0, classes, "letters")
    normal, _ = PT.prior_mc_conversation(_report(NORMAL, ()), 0, classes)
    assert TL.conversation(_report(NORMAL, ()), "prior_mc", 0, classes)[0] == normal
    assert normal[0]["value"].split("\n")[0].endswith(T.TETG_NONE)
    assert normal[1]["value"].endswith(T.MC_NORMAL_OPTION)
    why, _ = PT.prior_mc_conversation(_report(NORMAL, ()), 0, classes, "evidence")
    assert why[1]["value"].startswith(PT.PRIOR_SAID_NONE + " Answer: ")


def test_prior_sentence_is_tetgs_template_with_the_prior_interval():
    rep = _report("running", ((4.0, 6.0),))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    s, e = PT.prior_interval(rep, rng_a)
    assert PT.prior_sentence(rep, ("running",), rng_b).endswith(
        T.TETG_INTERVAL.format(word="crime", start=f"{s:.1f}s", end=f"{e:.1f}s")
    )
    # worded as VA-GPT's tetg.types_word says, in the sentence and in prior-only rows
    worded = PT.prior_sentence(rep, ("running",), np.random.default_rng(3), "anomaly")
    assert worded.startswith("Known common anomaly types are: 'running'.")
    assert "There is one of the anomaly types occurring from" in worded
    classes = ("running", "fighting", "explosion")
    conv, _ = PT.prior_mc_conversation(rep, 0, classes, "letter", "anomaly")
    assert conv[0]["value"].startswith("Known common anomaly types are:")
    assert TL.conversation(rep, "prior_mc", 0, classes, types_word="anomaly")[0] == conv
    assert PT.prior_interval(_report(NORMAL, ()), rng_a) is None
    assert PT.prior_sentence(_report(NORMAL, ()), ("running",), rng_a).endswith(T.TETG_NONE)


def test_lookup_rows_quote_one_option_and_answer_its_letter():
    from vau_jax.eval.metrics import parse_choice

    classes = ("running", "fighting", "explosion")
    picked = set()
    for seed in range(24):
        rep = _report("running", ((4.0, 6.0),)) if seed % 2 else _report(NORMAL, ())
        conv, q = PT.lookup_conversation(rep, seed, classes)
        human, answer = conv[0]["value"], conv[1]["value"]
        quoted = q.options[q.answer_index]
        assert any(p.format(text=quoted.text) == q.question for p in PT.LOOKUP_QUESTIONS)
        assert human == q.prompt() and not any(m in human for m in T.MC_QUESTIONS)
        assert sum(o.text in q.question for o in q.options) >= 1
        assert answer == f"{quoted.letter}. {quoted.text}"
        assert parse_choice(answer, [o.text for o in q.options]) == q.answer_index
        option, _ = PT.lookup_conversation(rep, seed, classes, "option")
        assert option[0] == conv[0]
        assert option[1]["value"] == f"{quoted.text}. Answer: {quoted.letter}."
        assert conv == TL.conversation(rep, "lookup", seed, classes)[0]
        picked.add(quoted.letter)
    assert picked == {"A", "B", "C", "D"}  # whatever the report says, any option is quoted


def test_sinusoid_time_rows_start_nearer_times_nearer(tmp_path):
    from vau_jax.data import corpus

    tok = corpus.ensure_tokenizer(str(tmp_path), 712, num_videos=3, name="synthvad_times")
    emb = np.random.default_rng(0).normal(0.0, 1.0, (tok.vocab_size, 128)).astype(np.float32)
    params = {"model": {"embed_tokens": {"embedding": emb.copy()}}, "lm_head": {"kernel": 1}}
    got = PT.sinusoid_time_rows(params, tok)
    out = np.asarray(got["model"]["embed_tokens"]["embedding"])
    assert got["lm_head"] == {"kernel": 1}
    np.testing.assert_array_equal(params["model"]["embed_tokens"]["embedding"], emb)  # a copy

    def row(t):
        return out[tok.sp.piece_to_id(f"▁{t:.1f}s")]

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    base = row(5.0)
    # the sinusoid half makes nearby times alike; the random half keeps each row its own
    assert cos(base, row(5.3)) > cos(base, row(7.0)) > cos(base, row(12.0))
    assert cos(base, row(5.1)) < 0.9
    assert abs(np.linalg.norm(base) / np.linalg.norm(emb, axis=1).mean() - 1.0) < 0.2
    times = {tok.sp.piece_to_id(p) for p in corpus.TIME_TOKENS}
    other = [i for i in range(tok.vocab_size) if i not in times]
    np.testing.assert_array_equal(out[other], emb[other])  # only the time rows change

    plain = corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="synthvad")
    with pytest.raises(ValueError, match="no '▁0.0s'"):
        PT.sinusoid_time_rows({"model": {"embed_tokens": {"embedding": emb[:512]}}}, plain)


def test_text_pretraining_starts_time_rows_as_configured(tmp_path):
    import jax
    import text_pretrain as text_pretrain_config

    c = text_pretrain_config.get_config("tiny")
    assert c.time_embedding == "random"
    c.data_dir, c.tokenizer, c.vocab_size = str(tmp_path), "synthvad_times", 712
    c.synthvad.min_seconds = c.synthvad.max_seconds = 2.0
    m = TL.TextPretrain(c, "")
    m.prepare()
    rand = m.init_params(jax.random.key(0))
    c.time_embedding = "sinusoid"
    sin = m.init_params(jax.random.key(0))
    jitted = jax.jit(m.init_params)(jax.random.key(0))  # as the trainer initialises
    np.testing.assert_allclose(
        jitted["model"]["embed_tokens"]["embedding"],
        sin["model"]["embed_tokens"]["embedding"],
        atol=1e-6,
    )
    i, j = m.tok.sp.piece_to_id("▁3.0s"), m.tok.sp.piece_to_id("▁3.2s")
    e0, e1 = (np.asarray(p["model"]["embed_tokens"]["embedding"]) for p in (rand, sin))
    assert not np.allclose(e0[i], e1[i])
    np.testing.assert_array_equal(e0[4], e1[4])  # not a time token

    def cos(e):
        return float(e[i] @ e[j] / np.linalg.norm(e[i]) / np.linalg.norm(e[j]))

    assert cos(e1) > cos(e0) + 0.2  # 0.32 against 0.08 when written
    c.time_embedding = "value"
    with pytest.raises(ValueError, match="time_embedding='value'"):
        m.init_params(jax.random.key(0))
