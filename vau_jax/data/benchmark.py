"""VA-GPT's multiple-choice benchmark: questions, prompts, and benchmark files.

Each question has four options, each an (anomaly type, time interval) pair or "no anomaly",
exactly one correct. The options are drawn so that **Total and Temporal chance are both
0.25**: every option has a different interval (``None`` for "no anomaly"), so a uniform
random choice hits the true interval with probability 1/4, the same as the correct option.
For an anomalous video the distractors are the true type at another time, another type at
another time, and "no anomaly"; for a normal video the correct option is "no anomaly" and the
distractors are anomaly types at random times. Intervals are rounded to 0.1 s, the precision
they are written with; with several ground-truth intervals the longest is the true one.
:func:`chance` computes the exact chance values of a question set.

**Total Acc**: the chosen option is the correct one. **Temporal Acc**: the chosen option's
interval equals the correct option's interval.

Benchmark files (:func:`write_benchmark`, read by
:func:`vau_jax.data.formats.mcqa.read_mc_questions` and ``python -m vau_jax.evaluate
--metric=mcqa``) are JSONL, one question per line:
``{"id", "video", "question", "options": [str], "answer_index", "intervals": [[s, e] | null]}``.
VA-GPT's training never sees these questions nor any lettered-option prompt about a video's
anomalies or times; the lettered questions it answers are about objects only (which, where,
how they move: :mod:`vau_jax.data.object_qa`), in the base video LLM's pretraining
(``base_llm.object_mc``, *pretrain*-split videos) and in stages 1-2
(``train_data.object_mc``, train-split videos).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.instruct import (
    NORMAL,
    Conversation,
    Interval,
    VideoFacts,
    _conversation,
    _pick,
    _rng,
    _round_interval,
    format_interval,
    type_phrase,
)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclasses.dataclass(frozen=True)
class MCOption:
    """One option: its letter, anomaly type, interval in seconds (None = no anomaly), text."""

    letter: str
    anomaly_type: str
    interval: Interval | None
    text: str


@dataclasses.dataclass(frozen=True)
class MCQuestion:
    """A 4-option multiple-choice question with exactly one correct option."""

    video_id: str
    question: str
    options: tuple[MCOption, ...]
    answer_index: int

    @property
    def answer_letter(self) -> str:
        """Letter of the correct option."""
        return self.options[self.answer_index].letter

    def prompt(self) -> str:
        """The question with its lettered options, as put to the model."""
        return mc_prompt(self.question, self.options)

    def conversation(self) -> Conversation:
        """Training conversation: the prompt and the correct option "A. text"."""
        o = self.options[self.answer_index]
        return _conversation(self.prompt(), T.MC_OPTION_LINE.format(letter=o.letter, text=o.text))

    def is_correct(self, chosen: int) -> bool:
        """Total Acc hit: the chosen option is the correct one."""
        return chosen == self.answer_index

    def is_temporally_correct(self, chosen: int) -> bool:
        """Temporal Acc hit: the chosen option's interval equals the true interval."""
        return self.options[chosen].interval == self.options[self.answer_index].interval


#: How a multiple-choice row of a training corpus is answered (text pretraining's
#: ``mc_answer``): ``"letter"``, the letter and the option's text (``"C. A fire from 2.1s to
#: 4.5s"``); ``"evidence"``, the evidence restated, then the letter
#: (``text_llm.reported_anomaly``); ``"option"``, the option's text, then its letter (``"A
#: fire from 2.1s to 4.5s. Answer: C."``), so that the letter is looked up after the text.
MC_ANSWER_STYLES = ("letter", "evidence", "option")


def mc_answer_text(letter: str, text: str, style: str, evidence: str | None = None) -> str:
    """The answer choosing option ``letter``, whose text is ``text``, in ``style`` of
    :data:`MC_ANSWER_STYLES`; an ``"evidence"`` answer restates ``evidence`` (a sentence
    only the caller knows: the report's anomaly, the prior's interval) before the letter,
    the other styles ignore it. Raises ValueError for another style, or for ``"evidence"``
    without ``evidence``."""
    if style == "option":
        return T.MC_OPTION_ANSWER.format(text=text, letter=letter)
    if style == "letter":
        return T.MC_OPTION_LINE.format(letter=letter, text=text)
    if style == "evidence":
        if evidence is None:
            raise ValueError("an 'evidence' multiple-choice answer needs the evidence it restates")
        return T.MC_REASONED_ANSWER.format(evidence=evidence, letter=letter)
    raise ValueError(f"multiple-choice answer style {style!r}: choose from {MC_ANSWER_STYLES}")


_LETTER_FIRST = re.compile(r"^([A-H])\. \S")
_LETTER_LAST = re.compile(r"Answer: ([A-H])\.$")


def lettered_answer(answer: str) -> tuple[str, bool] | None:
    """The option letter a training answer written by :func:`mc_answer_text` gives, in any
    of :data:`MC_ANSWER_STYLES`, and whether it ends the answer: ``("C", False)`` for
    ``"C. A fire ..."``, ``("C", True)`` for ``"... Answer: C."``; None for an answer that is
    not a lettered choice."""
    text = answer.strip()
    m = _LETTER_FIRST.match(text)
    if m:
        return m.group(1), False
    m = _LETTER_LAST.search(text)
    return (m.group(1), True) if m else None


def mc_prompt(question: str, options: Sequence[MCOption]) -> str:
    """The question with its lettered option lines (each option's own letter)."""
    lines = "\n".join(T.MC_OPTION_LINE.format(letter=o.letter, text=o.text) for o in options)
    return T.MC_PROMPT.format(question=question, options=lines)


def human_turn(prompt: str, tetg_sentence: str | None) -> str:
    """VA-GPT's human turn: the ``<video>`` marker, TETG's sentence (when used), the prompt."""
    prior = f"{tetg_sentence}\n" if tetg_sentence else ""
    return f"{T.VIDEO_MARKER}\n{prior}{prompt}"


def relettered(options: Sequence[MCOption]) -> list[MCOption]:
    """The options lettered A, B, ... in their order."""
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options > {len(LETTERS)} letters")
    return [dataclasses.replace(o, letter=LETTERS[i]) for i, o in enumerate(options)]


def rotated(question: MCQuestion, shift: int) -> MCQuestion:
    """``question`` with its options in cyclic order ``shift`` (the option shown at position
    ``p`` is the original option ``(p + shift) % n``), relettered A, B, ... in that order;
    ``answer_index`` follows the correct option. ``shift = 0`` gives the question as it is."""
    n = len(question.options)
    order = [(p + shift) % n for p in range(n)]
    return dataclasses.replace(
        question,
        options=tuple(relettered([question.options[o] for o in order])),
        answer_index=order.index(question.answer_index),
    )


def unrotated(choice: int | None, shift: int, n: int) -> int | None:
    """The original option index of position ``choice`` in :func:`rotated` order ``shift``."""
    return None if choice is None else (int(choice) + shift) % n


def vote(choices: Sequence[Sequence[int | None]]) -> list[int | None]:
    """Per question the option chosen most often over several option orders (permutation
    voting; ``choices [orders][questions]``, original option indices, ``None`` = unparsed and
    not counted). A tie goes to the first order's choice when it is among the tied, else to
    the lowest tied index; a question no order answered stays ``None``."""
    if not choices:
        raise ValueError("no option order to vote over")
    out: list[int | None] = []
    for per_q in zip(*choices):
        counts = Counter(c for c in per_q if c is not None)
        if not counts:
            out.append(None)
            continue
        top = max(counts.values())
        tied = sorted(c for c, k in counts.items() if k == top)
        out.append(per_q[0] if per_q[0] in tied else tied[0])
    return out


def candidate_options(
    class_names: Sequence[str], interval: Interval | None, duration: float
) -> list[MCOption]:
    """Options for an unlabelled video: every anomaly type with ``interval`` (the whole video
    when None), then "no anomaly"; lettered A, B, ...; texts written as
    :func:`multiple_choice` writes them."""
    iv = interval if interval is not None else (0.0, round(float(duration), 1))
    out = []
    for kind in class_names:
        if kind == "normal":
            continue
        text = T.MC_OPTION.format(type=type_phrase(kind), interval=format_interval(iv))
        out.append(MCOption("", kind, (float(iv[0]), float(iv[1])), text[:1].upper() + text[1:]))
    out.append(MCOption("", "normal", None, T.MC_NORMAL_OPTION))
    return relettered(out)


def _wrong_intervals(
    rng: np.random.Generator, true: Interval | None, duration: float, count: int
) -> list[Interval]:
    """``count`` distinct intervals (rounded to 0.1 s) inside the video that differ from
    ``true``; preferably overlapping it by at most 30% IoU, with a similar length."""
    out: list[Interval] = []
    taken = {true} if true is not None else set()
    if true is not None:
        length = true[1] - true[0]
    for attempt in range(400):
        if true is None or attempt >= 200:  # free length once same-length placement failed
            length = duration * float(rng.uniform(0.1, 0.5))
        length = min(max(length, 0.1), duration)
        start = float(rng.uniform(0.0, max(duration - length, 0.0)))
        cand = _round_interval((start, min(start + length, duration)))
        if cand[1] <= cand[0] or cand in taken:
            continue
        if true is not None and attempt < 300:
            inter = max(0.0, min(cand[1], true[1]) - max(cand[0], true[0]))
            union = (cand[1] - cand[0]) + (true[1] - true[0]) - inter
            if inter / union > 0.3:
                continue
        out.append(cand)
        taken.add(cand)
        if len(out) == count:
            return out
    # Degenerate durations: shift by 0.1 s steps (still distinct, maybe outside the video).
    base = true or (0.0, 0.1)
    step = 1
    while len(out) < count:
        cand = _round_interval((base[0] + 0.1 * step, base[1] + 0.1 * step))
        if cand not in taken:
            out.append(cand)
            taken.add(cand)
        step += 1
    return out


def multiple_choice(
    facts: VideoFacts,
    type_vocab: Sequence[str],
    seed: int,
    questions: Sequence[str] = T.MC_QUESTIONS,
) -> MCQuestion:
    """VA-GPT multiple-choice question with equal Total and Temporal chance (module docstring).

    Args:
      facts: the video's ground truth.
      type_vocab: the dataset's anomaly class names (``"normal"`` is ignored); wrong types
        are drawn from it, so it needs a type other than the true one.
      seed: the example's seed; options are shuffled with it.
      questions: question paraphrases.
    """
    rng = _rng(seed, "multiple_choice")
    others = [t for t in dict.fromkeys(type_vocab) if t not in (NORMAL, facts.anomaly_type)]
    if not others:
        raise ValueError(
            f"video {facts.video_id!r}: type_vocab {tuple(type_vocab)} has no type other "
            f"than {facts.anomaly_type!r} to build distractors from"
        )
    order = [others[i] for i in rng.permutation(len(others))]
    wrong_types = [order[i % len(order)] for i in range(3)]
    true = facts.main_interval
    if true is not None:
        true = _round_interval(true)
        wrong = _wrong_intervals(rng, true, facts.duration, 2)
        picks = [
            (facts.anomaly_type, true),  # correct
            (facts.anomaly_type, wrong[0]),  # true type, another time
            (wrong_types[0], wrong[1]),  # another type, another time
            (NORMAL, None),  # no anomaly
        ]
    else:
        wrong = _wrong_intervals(rng, None, facts.duration, 3)
        picks = [(NORMAL, None)] + list(zip(wrong_types, wrong))
    perm = rng.permutation(4)
    options = []
    for slot, src in enumerate(perm):
        kind, interval = picks[int(src)]
        options.append(MCOption(T.MC_LETTERS[slot], kind, interval, option_text(kind, interval)))
    answer = int(np.flatnonzero(perm == 0)[0])
    return MCQuestion(facts.video_id, _pick(rng, questions), tuple(options), answer)


def option_text(kind: str, interval: Interval | None) -> str:
    """An option's text: "A fire from 1.0s to 2.5s" or the "no anomaly" sentence."""
    if interval is None:
        return T.MC_NORMAL_OPTION
    text = T.MC_OPTION.format(type=type_phrase(kind), interval=format_interval(interval))
    return text[:1].upper() + text[1:]


def chance(questions: Sequence[MCQuestion]) -> dict[str, float]:
    """Expected Total / Temporal Acc of a uniform random choice over each question's options:
    ``{"total_acc_chance", "temporal_acc_chance"}``."""
    if not questions:
        raise ValueError("no questions")
    total = np.mean([1.0 / len(q.options) for q in questions])
    temporal = np.mean(
        [
            sum(o.interval == q.options[q.answer_index].interval for o in q.options)
            / len(q.options)
            for q in questions
        ]
    )
    return {"total_acc_chance": float(total), "temporal_acc_chance": float(temporal)}


def to_json(q: MCQuestion, qid: str) -> dict:
    """The benchmark JSON object of a question (``python -m vau_jax.evaluate --metric=mcqa``'s
    ground truth plus the video): ``{"id", "video", "question", "options": [str],
    "answer_index", "intervals": [[s, e] | null, ...]}``."""
    return {
        "id": qid,
        "video": q.video_id,
        "question": q.question,
        "options": [o.text for o in q.options],
        "answer_index": int(q.answer_index),
        "intervals": [None if o.interval is None else list(o.interval) for o in q.options],
    }


def write_benchmark(path: str, questions: Sequence[MCQuestion], prefix: str = "q") -> str:
    """Writes a benchmark JSONL (one :func:`to_json` object per line, ids ``<prefix><n>``)
    atomically; returns ``path``."""
    import json
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for n, q in enumerate(questions):
            f.write(json.dumps(to_json(q, f"{prefix}{n}")) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def prior_reader_choice(question: MCQuestion, prior: Interval | None) -> int:
    """The option an exact reader of a temporal prior (TETG's interval) chooses: "no
    anomaly" when the prior finds none, otherwise the anomalous option whose interval overlaps
    the prior's most (temporal IoU; the first among equals).

    A diagnostic of what the prior alone can score: VA-GPT reports its accuracy beside the
    model's generated answers (``tetg_reader_acc``), so that the share lost in reading the
    prior shows apart from the share the prior itself gets wrong.
    """
    from vau_jax.eval.metrics.qa import temporal_iou

    ivs = [o.interval for o in question.options]
    if prior is None:
        return next(k for k, iv in enumerate(ivs) if iv is None)
    overlaps = [
        -1.0 if iv is None else float(temporal_iou(np.array(prior), np.array(iv))[0]) for iv in ivs
    ]
    return int(np.argmax(overlaps))


def prior_reader_accuracy(
    questions: Sequence[MCQuestion], priors: Sequence[Interval | None]
) -> float:
    """Total Acc of :func:`prior_reader_choice` over ``questions``, question ``k`` read with
    ``priors[k]`` (TETG's interval for its video, or None)."""
    from vau_jax.eval.metrics import mcqa_accuracy

    if not questions:
        raise ValueError("prior_reader_accuracy: no question")
    if len(priors) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(priors)} priors")
    chosen = [prior_reader_choice(q, iv) for q, iv in zip(questions, priors)]
    intervals = [[o.interval for o in q.options] for q in questions]
    return mcqa_accuracy(chosen, [q.answer_index for q in questions], intervals)["Total_Acc"]


def reading_breakdown(
    questions: Sequence[MCQuestion],
    priors: Sequence[Interval | None],
    chosen: Sequence[int | None],
) -> dict[str, Counter]:
    """Where a model's answers part from an exact reader of the temporal prior
    (:func:`prior_reader_choice`): the diagnostic behind ``scripts/vagpt_reading.py``.

    Args:
      questions: the benchmark's questions.
      priors: per question, TETG's interval for its video (seconds) or None.
      chosen: per question, the option index parsed from the model's answer, or None.

    Returns:
      ``{"cells": ..., "lost": ...}``. ``cells`` counts questions by ``(half, prior, reader,
      model)``: ``half`` "normal" / "anomalous" (the correct option's interval), ``prior``
      "none" / "interval" (what the prior says), ``reader`` "right" / "wrong", ``model``
      "agrees" / "differs" (its choice against the reader's). ``lost`` counts, over the
      questions the reader gets right and the model does not, what the model chose: "no
      anomaly", "same type" (another option of the correct option's anomaly type), "other
      type" or "unparsed"; and ``letter <X>`` for the letter it gave there.
    """
    if not len(questions) == len(priors) == len(chosen):
        raise ValueError(
            f"{len(questions)} questions, {len(priors)} priors and {len(chosen)} answers"
        )
    cells: Counter = Counter()
    lost: Counter = Counter()
    for q, prior, c in zip(questions, priors, chosen):
        truth = q.options[q.answer_index]
        reader = prior_reader_choice(q, prior)
        key = (
            "normal" if truth.interval is None else "anomalous",
            "none" if prior is None else "interval",
            "right" if reader == q.answer_index else "wrong",
            "agrees" if c == reader else "differs",
        )
        cells[key] += 1
        if reader != q.answer_index or c == reader:
            continue
        if c is None:
            lost["unparsed"] += 1
            continue
        o = q.options[c]
        if o.interval is None:
            lost["no anomaly"] += 1
        elif o.anomaly_type == truth.anomaly_type:
            lost["same type"] += 1
        else:
            lost["other type"] += 1
        lost[f"letter {o.letter}"] += 1
    return {"cells": cells, "lost": lost}


def letter_text_breakdown(
    questions: Sequence[MCQuestion], answers: Sequence[str]
) -> dict[tuple[str, str], int]:
    """How often a generated answer's letter and the option text written after it name
    different options, and which of the two is right (a diagnostic beside Total Acc, which
    reads the letter: :func:`vau_jax.eval.metrics.qa.parse_choice`).

    Args:
      questions: the benchmark's questions.
      answers: per question, the model's generated answer.

    Returns:
      counts keyed ``(half, kind)``: ``half`` "normal" / "anomalous" (the correct option's
      interval); ``kind`` "agree" (the text after the letter names the letter's option, or
      nothing else), "letter right" / "text right" / "neither right" (they name different
      options), "no letter" (the answer does not open with a letter).
    """
    from vau_jax.eval.metrics.qa import letter_and_text

    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions and {len(answers)} answers")
    out: Counter = Counter()
    for q, a in zip(questions, answers):
        half = "normal" if q.options[q.answer_index].interval is None else "anomalous"
        letter, text = letter_and_text(a, [o.text for o in q.options])
        if letter is None:
            kind = "no letter"
        elif text is None or text == letter:
            kind = "agree"
        elif letter == q.answer_index:
            kind = "letter right"
        elif text == q.answer_index:
            kind = "text right"
        else:
            kind = "neither right"
        out[(half, kind)] += 1
    return dict(out)
