"""BLEU against nltk and sacrebleu where the definitions coincide."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import sacrebleu
from nltk.translate import bleu_score as nltk_bleu

from vau_jax.eval.metrics import bleu

VOCAB = "a man the car red runs walks left right street person falls fire near".split()


def _corpus(seed, n=20, multi_ref=False):
    """Random hypotheses (>= 4 tokens) and references sharing a small vocabulary."""
    rng = random.Random(seed)
    hyps, refs = [], []
    for _ in range(n):
        ref = [rng.choice(VOCAB) for _ in range(rng.randint(4, 14))]
        hyp = [w if rng.random() < 0.7 else rng.choice(VOCAB) for w in ref]
        hyp = hyp[: rng.randint(4, len(hyp))] + [rng.choice(VOCAB)] * rng.randint(0, 3)
        hyps.append(" ".join(hyp))
        extra = [" ".join(rng.sample(VOCAB, rng.randint(4, 9)))] if multi_ref else []
        refs.append([" ".join(ref), *extra])
    return hyps, refs


def _nltk_weights(n):
    return tuple([1.0 / n] * n)


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("multi_ref", [False, True])
def test_corpus_bleu_matches_nltk(seed, multi_ref):
    hyps, refs = _corpus(seed, multi_ref=multi_ref)
    ours = bleu.bleu_scores(hyps, refs, tokenize_mode="none")
    for n in range(1, 5):
        ref = nltk_bleu.corpus_bleu(
            [[r.split() for r in rs] for rs in refs], [h.split() for h in hyps], _nltk_weights(n)
        )
        assert ours[f"BLEU-{n}"] == pytest.approx(ref, abs=1e-14)


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(4))
def test_corpus_bleu_matches_sacrebleu(seed):
    hyps, refs = _corpus(seed)
    for n in range(1, 5):
        metric = sacrebleu.metrics.BLEU(
            tokenize="none", smooth_method="none", max_ngram_order=n, force=True
        )
        ref = metric.corpus_score(hyps, [[r[0] for r in refs]]).score / 100.0
        ours = bleu.corpus_bleu(hyps, [r[0] for r in refs], n, tokenize_mode="none")
        assert ours == pytest.approx(ref, abs=1e-9)


@pytest.mark.parity
@pytest.mark.parametrize(
    "ours_smoothing,nltk_method", [("none", "method0"), ("floor", "method1"), ("exp", "method3")]
)
def test_sentence_bleu_matches_nltk(ours_smoothing, nltk_method):
    hyps, refs = _corpus(7, n=30)
    smoother = getattr(nltk_bleu.SmoothingFunction(), nltk_method)
    ref_scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about zero counts without smoothing
        for h, rs in zip(hyps, refs):
            ref_scores.append(
                nltk_bleu.sentence_bleu(
                    [r.split() for r in rs], h.split(), smoothing_function=smoother
                )
            )
    ours = [
        bleu.sentence_bleu(h, rs, smoothing=ours_smoothing, tokenize_mode="none")
        for h, rs in zip(hyps, refs)
    ]
    np.testing.assert_allclose(ours, ref_scores, atol=1e-14)
    avg = bleu.bleu_scores(hyps, refs, sentence_smoothing=ours_smoothing, tokenize_mode="none")
    assert avg["BLEU-4_sentence_avg"] == pytest.approx(np.mean(ref_scores), abs=1e-14)


def test_hand_computed_example():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat":
    # p1 = 5/6, p2 = 3/5 (the cat, on the, the mat), p3 = 1/4 (on the mat), p4 = 0/3
    hyp, ref = "the cat sat on the mat", "the cat is on the mat"
    assert bleu.sentence_bleu(hyp, ref, 1) == pytest.approx(5 / 6)
    assert bleu.sentence_bleu(hyp, ref, 2) == pytest.approx(np.sqrt(5 / 6 * 3 / 5))
    assert bleu.sentence_bleu(hyp, ref, 3) == pytest.approx((5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3))
    assert bleu.sentence_bleu(hyp, ref, 4) == 0.0
    # floor smoothing: p4 = 0.1 / 3
    assert bleu.sentence_bleu(hyp, ref, 4, smoothing="floor") == pytest.approx(
        (5 / 6 * 3 / 5 * 1 / 4 * 0.1 / 3) ** 0.25
    )
    # brevity penalty: "the cat" vs 6-token reference: BP = exp(1 - 6/2), p1 = p2 = 1
    assert bleu.sentence_bleu("the cat", ref, 2) == pytest.approx(np.exp(-2.0))


def test_clipping_and_tokenisation():
    # "the the the the" vs "the cat": unigram matches clipped to 1 -> p1 = 1/4
    assert bleu.sentence_bleu("the the the the", "the cat", 1) == pytest.approx(0.25)
    assert bleu.tokenize("A Car's RED.") == ["a", "car", "'", "s", "red", "."]
    assert bleu.tokenize("A Car's RED.", "none") == ["A", "Car's", "RED."]
    # default tokenisation ignores case and splits punctuation
    assert bleu.sentence_bleu("The man, walks left.", "the man , walks left .", 4) == 1.0
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu.bleu_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="smoothing"):
        bleu.sentence_bleu("a b", "a b", 1, smoothing="add7")
