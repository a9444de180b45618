"""Question-answering metrics: Yes/No accuracy, multiple-choice Total / Temporal accuracy,
temporal IoU and recall at IoU thresholds.

Multiple choice (VA-GPT, DESIGN section 5): each question has options, each an (anomaly
type, time interval) pair, exactly one correct. **Total Acc** = the chosen option is the
correct one. **Temporal Acc** = the chosen option's interval equals the correct option's
interval (so a wrong type with the right interval still counts). An answer that cannot be
parsed counts as wrong for both.

Answer parsing (:func:`parse_choice`), first rule that applies wins:

1. the whole answer is a letter, optionally in brackets and/or followed by ``.``/``:``/``)``:
   ``"B"``, ``"(B)"``, ``"B."``, ``"b)"``;
2. it starts with such a letter followed by text: ``"B. Fighting from 3s to 7s"``,
   ``"(C) ..."`` (upper-case letter only, so the word "A" in a sentence is not a choice);
3. an explicit marker: ``"Answer: B"``, ``"the answer is (B)"``, ``"option C"``;
4. the option's text: the normalised answer (lower case, punctuation and extra spaces
   removed) equals one option's normalised text, or contains exactly one option's text
   (if several are contained, the longest wins when it contains all the others).

Letters beyond the number of options are not accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ALONE = re.compile(r"^\(?\s*([A-Za-z])\s*\)?\s*[.:)]?$")
_LEADING = re.compile(r"^(?:\(([A-Z])\)[.:]?|([A-Z])[.:)])\s+\S")
_MARKER = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s*)?[:\-]?\s*\(?((?-i:[A-Z]))\)?(?![A-Za-z])",
    re.IGNORECASE,
)
_OPENING = re.compile(r"^\(?\s*[A-Za-z]\s*\)?\s*[.:)]?\s*")
_PUNCT = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACES.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def parse_choice(answer: str, options: Sequence[str]) -> int | None:
    """Index of the option ``answer`` chooses, or ``None`` when it cannot be parsed."""
    n = len(options)
    text = answer.strip()

    def letter(ch: str) -> int | None:
        i = LETTERS.find(ch.upper())
        return i if 0 <= i < n else None

    for pattern in (_ALONE, _LEADING):
        m = pattern.match(text)
        if m:
            return letter(next(g for g in m.groups() if g))
    m = _MARKER.search(text)
    if m:
        return letter(m.group(1))
    norm = _norm(text)
    if not norm:
        return None
    opts = [_norm(o) for o in options]
    exact = [i for i, o in enumerate(opts) if o and o == norm]
    if len(exact) == 1:
        return exact[0]
    padded = f" {norm} "
    found = [i for i, o in enumerate(opts) if o and f" {o} " in padded]
    if len(found) == 1:
        return found[0]
    if found:
        longest = max(found, key=lambda i: len(opts[i]))
        if all(opts[i] in opts[longest] for i in found):
            return longest
    return None


def letter_and_text(answer: str, options: Sequence[str]) -> tuple[int | None, int | None]:
    """An answer that opens with an option letter (rules 1-2 of :func:`parse_choice`), read
    twice: the letter's option, and the option the text after the letter names (rule 4 on
    that text alone; ``None`` when it names none). An answer without an opening letter gives
    ``(None, None)``. For diagnostics only: :func:`parse_choice` reads the letter."""
    text = answer.strip()
    for pattern in (_ALONE, _LEADING):
        if pattern.match(text):
            letter = parse_choice(text, options)
            rest = _OPENING.sub("", text, count=1)
            return letter, (parse_choice(rest, options) if _norm(rest) else None)
    return None, None


def parse_yes_no(answer: str) -> bool | None:
    """``True`` for yes, ``False`` for no, ``None`` when unclear.

    The first word decides (``"Yes, there is..."``, ``"No."``); otherwise the answer must
    contain exactly one of the words "yes" / "no".
    """
    words = _norm(answer).split()
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes != has_no:
        return has_yes
    return None


def yes_no_accuracy(answers: Sequence[str], truths: Sequence[str | bool]) -> float:
    """Fraction of answers whose parsed yes/no equals the truth (unparsed = wrong)."""
    if len(answers) != len(truths):
        raise ValueError(f"{len(answers)} answers but {len(truths)} ground-truth labels")
    if not answers:
        raise ValueError("no answers to score")
    correct = 0
    for a, t in zip(answers, truths):
        truth = t if isinstance(t, bool) else parse_yes_no(t)
        if truth is None:
            raise ValueError(f"ground truth {t!r} is neither yes nor no")
        correct += parse_yes_no(a) == truth
    return correct / len(answers)


def mcqa_accuracy(
    chosen: Sequence[int | None],
    correct: Sequence[int],
    intervals: Sequence[Sequence[Sequence[float]]],
) -> dict[str, float]:
    """``{"Total_Acc", "Temporal_Acc"}`` (fractions in [0, 1]).

    Args:
      chosen: per question the chosen option index, or ``None`` (unparsed = wrong).
      correct: per question the correct option index.
      intervals: per question, per option ``(start, end)`` (seconds) or ``None`` (the
        "no anomaly" option of a normal video; equal only to another ``None``).
    """
    _check_questions(chosen, correct, intervals)
    total = temporal = 0
    for c, t, iv in zip(chosen, correct, intervals):
        if c is None:
            continue
        total += c == t
        temporal += _as_interval(iv[c]) == _as_interval(iv[t])
    return {"Total_Acc": total / len(chosen), "Temporal_Acc": temporal / len(chosen)}


def mcqa_by_truth(
    chosen: Sequence[int | None],
    correct: Sequence[int],
    intervals: Sequence[Sequence[Sequence[float] | None]],
) -> dict[str, float]:
    """Total Acc on each half of a benchmark and how often "no anomaly" is chosen.

    A question is *normal* when its correct option has no interval (the "no anomaly"
    option), else *anomalous*. On a balanced benchmark an answerer that always chooses "no
    anomaly" scores ``Total_Acc = 0.5``; these split it: ``{"Total_Acc_normal",
    "Total_Acc_anomalous", "No_Anomaly_Rate"}`` (fractions; ``nan`` for a half with no
    question). Arguments as :func:`mcqa_accuracy`.
    """
    _check_questions(chosen, correct, intervals)
    hits: dict[bool, list[bool]] = {True: [], False: []}
    no_anomaly = 0
    for c, t, iv in zip(chosen, correct, intervals):
        hits[iv[t] is None].append(c == t)
        no_anomaly += c is not None and iv[c] is None
    mean = lambda h: float(np.mean(h)) if h else float("nan")  # noqa: E731
    return {
        "Total_Acc_normal": mean(hits[True]),
        "Total_Acc_anomalous": mean(hits[False]),
        "No_Anomaly_Rate": no_anomaly / len(chosen),
    }


def _check_questions(chosen: Sequence, correct: Sequence, intervals: Sequence) -> None:
    """Raises unless the three per-question lists are equally long and not empty."""
    if not (len(chosen) == len(correct) == len(intervals)):
        raise ValueError("chosen, correct and intervals must have the same length")
    if not chosen:
        raise ValueError("no questions to score")


def _as_interval(value: Sequence[float] | None) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of paired intervals ``[N, 2]`` (start, end; continuous, e.g. seconds) -> ``[N]``.

    Empty or inverted intervals have zero length; two empty intervals have IoU 0.
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    gt = np.asarray(gt, np.float64).reshape(-1, 2)
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predicted but {gt.shape[0]} ground-truth intervals")
    inter = np.clip(np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]), 0, None)
    union = (
        np.clip(pred[:, 1] - pred[:, 0], 0, None) + np.clip(gt[:, 1] - gt[:, 0], 0, None) - inter
    )
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def recall_at_iou(
    pred: np.ndarray, gt: np.ndarray, thresholds: Sequence[float] = (0.3, 0.5, 0.7)
) -> dict[str, float]:
    """``{"mIoU", "R@0.3", ...}``: mean IoU and the fraction of pairs with IoU >= each threshold."""
    iou = temporal_iou(pred, gt)
    if iou.size == 0:
        raise ValueError("no intervals to score")
    out = {"mIoU": float(iou.mean())}
    for t in thresholds:
        out[f"R@{t:g}"] = float(np.mean(iou >= t))
    return out
