"""BLEU-1..4 (Papineni et al. 2002), corpus-level and sentence-averaged; no Java, no sacrebleu.

Definitions (one hypothesis, one or more references per item):

* ``p_n`` = clipped n-gram matches / hypothesis n-grams. *Corpus* BLEU sums both counts over
  all items before dividing; *sentence-averaged* BLEU computes a BLEU per item and averages.
* ``BLEU-N = BP * exp(sum_{n<=N} log p_n / N)`` (uniform weights).
* Brevity penalty ``BP = 1 if c > r else exp(1 - r / c)``: ``c`` hypothesis length, ``r``
  the *closest* reference length (ties -> the shorter); summed over the corpus for corpus
  BLEU. This is what ``nltk.translate.bleu_score`` and sacrebleu (``"closest"``) use.
* Smoothing of zero counts (``smoothing=``): ``"none"`` - any ``p_n = 0`` gives BLEU 0;
  ``"floor"`` - a zero numerator becomes 0.1 (nltk ``method1``, sacrebleu ``floor``);
  ``"exp"`` - the k-th zero precision becomes ``1 / (2^k * denominator)`` (nltk
  ``method3``, sacrebleu ``exp``). A hypothesis with fewer than ``n`` tokens has no
  n-grams: its ``p_n`` is 0 (BLEU-n is 0 unless smoothed, and smoothing cannot help a
  zero denominator, so BLEU-n is 0 then).
* Tokenisation (``tokenize=``): ``"words"`` (default) lowercases and splits into runs of
  word characters and single punctuation marks (``"Car's red."`` -> ``car ' s red .``);
  ``"none"`` splits on whitespace only and keeps case (sacrebleu ``tokenize="none"``).

Scores are fractions in [0, 1] (multiply by 100 for the papers' convention).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

SMOOTHINGS = ("none", "floor", "exp")
TOKENIZERS = ("words", "none")
_WORDS = re.compile(r"\w+|[^\w\s]")
_FLOOR = 0.1


def tokenize(text: str, mode: str = "words") -> list[str]:
    """Split ``text`` into tokens with the named ``mode`` (module docstring)."""
    if mode == "words":
        return _WORDS.findall(text.lower())
    if mode == "none":
        return text.split()
    raise ValueError(f"unknown tokenize mode {mode!r}; choose one of {TOKENIZERS}")


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def sentence_stats(
    hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4
) -> np.ndarray:
    """Sufficient statistics of one item, int64 ``[2 * max_n + 2]``.

    Layout: ``matches[1..max_n], totals[1..max_n], hyp_len, closest_ref_len``.
    """
    if not references:
        raise ValueError("every hypothesis needs at least one reference")
    stats = np.zeros([2 * max_n + 2], np.int64)
    for n in range(1, max_n + 1):
        hyp = _ngrams(hypothesis, n)
        best: Counter = Counter()
        for ref in references:
            best |= _ngrams(ref, n)  # max count of each n-gram over references
        stats[n - 1] = sum(min(c, best[g]) for g, c in hyp.items())
        stats[max_n + n - 1] = max(len(hypothesis) - n + 1, 0)
    c = len(hypothesis)
    stats[2 * max_n] = c
    stats[2 * max_n + 1] = min((len(r) for r in references), key=lambda r: (abs(r - c), r))
    return stats


def bleu_from_stats(stats: np.ndarray, n: int, max_n: int = 4, smoothing: str = "none") -> float:
    """BLEU-``n`` from (summed) statistics laid out as in :func:`sentence_stats`."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
    matches, totals = stats[:n], stats[max_n : max_n + n]
    c, r = int(stats[2 * max_n]), int(stats[2 * max_n + 1])
    if c == 0 or np.any(totals == 0):
        return 0.0
    log_p = 0.0
    k = 0
    for m, t in zip(matches.tolist(), totals.tolist()):
        if m > 0:
            log_p += math.log(m / t)
        elif smoothing == "none":
            return 0.0
        elif smoothing == "floor":
            log_p += math.log(_FLOOR / t)
        else:
            k += 1
            log_p += math.log(1.0 / (2**k * t))
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return bp * math.exp(log_p / n)


def _prepare(
    hypotheses: Sequence[str], references: Sequence[str | Sequence[str]], tokenize_mode: str
):
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis")
    hyps = [tokenize(h, tokenize_mode) for h in hypotheses]
    refs = [
        [tokenize(r, tokenize_mode)]
        if isinstance(r, str)
        else [tokenize(x, tokenize_mode) for x in r]
        for r in references
    ]
    return hyps, refs


def bleu_scores(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    *,
    max_n: int = 4,
    smoothing: str = "none",
    sentence_smoothing: str | None = None,
    tokenize_mode: str = "words",
) -> dict[str, float]:
    """``{"BLEU-1".."BLEU-<max_n>"}`` (corpus) and ``"BLEU-<max_n>_sentence_avg"``.

    Args:
      hypotheses: generated texts ``[N]``.
      references: per item one reference string or a list of them ``[N]``.
      max_n: highest n-gram order.
      smoothing: smoothing of the corpus scores (module docstring).
      sentence_smoothing: smoothing of the per-sentence scores (defaults to ``smoothing``).
      tokenize_mode: ``"words"`` or ``"none"``.
    """
    hyps, refs = _prepare(hypotheses, references, tokenize_mode)
    stats = np.stack([sentence_stats(h, r, max_n) for h, r in zip(hyps, refs)])  # [N, 2M+2]
    total = stats.sum(axis=0)
    out = {f"BLEU-{n}": bleu_from_stats(total, n, max_n, smoothing) for n in range(1, max_n + 1)}
    s_smooth = smoothing if sentence_smoothing is None else sentence_smoothing
    out[f"BLEU-{max_n}_sentence_avg"] = float(
        np.mean([bleu_from_stats(s, max_n, max_n, s_smooth) for s in stats])
    )
    return out


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    n: int = 4,
    *,
    smoothing: str = "none",
    tokenize_mode: str = "words",
) -> float:
    """Corpus-level BLEU-``n``."""
    hyps, refs = _prepare(hypotheses, references, tokenize_mode)
    total = sum(sentence_stats(h, r, n) for h, r in zip(hyps, refs))
    return bleu_from_stats(total, n, n, smoothing)


def sentence_bleu(
    hypothesis: str,
    references: str | Sequence[str],
    n: int = 4,
    *,
    smoothing: str = "none",
    tokenize_mode: str = "words",
) -> float:
    """BLEU-``n`` of one hypothesis."""
    hyps, refs = _prepare([hypothesis], [references], tokenize_mode)
    return bleu_from_stats(sentence_stats(hyps[0], refs[0], n), n, n, smoothing)
