"""Text-only rows about VA-GPT's temporal prior (ours): TETG-style sentences for the text
pretraining's reports, and multiple choice whose only evidence is such a sentence.

VA-GPT puts TETG's sentence ("Known common crime types are: ... There is one of the
crime types occurring from 4.9s to 8.9s.") before its question; every anomalous question's
options differ in their intervals, so reading the sentence's interval and matching it among
the options answers it. The tiny LLM trained from scratch learns that as a text skill here,
on reports of SynthVAD's ``pretrain`` split (``text_llm``'s ``prior_mc`` kind and VA-GPT's
``train_data.text_replay_prior_mc``), never on a video or a train / test video's report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.benchmark import MCQuestion, mc_answer_text, multiple_choice
from vau_jax.data.instruct import NORMAL, format_time, tetg_text


def prior_interval(report: Any, rng: np.random.Generator) -> tuple[float, float] | None:
    """The interval a TETG-style prior gives for a text report: the span of the report's
    anomaly intervals with each end moved by up to ±1 s (as TETG's predicted interval is only
    roughly right), rounded to 0.1 s; None for a normal report."""
    iv = report.facts.intervals
    if report.facts.anomaly_type == NORMAL or not iv:
        return None
    dur = float(report.facts.duration)
    s = min(a for a, _ in iv) + float(rng.uniform(-1.0, 1.0))
    e = max(b for _, b in iv) + float(rng.uniform(-1.0, 1.0))
    s, e = max(0.0, round(s, 1)), min(dur, round(e, 1))
    return s, max(e, min(dur, s + 0.1))


def prior_sentence(
    report: Any,
    class_names: Sequence[str],
    rng: np.random.Generator,
    types_word: str = T.TETG_TYPES_WORD,
) -> str:
    """A TETG-style prior for a text report (``text_llm.Report``): the class list (called
    ``types_word`` types) and :func:`prior_interval`, or the "no anomaly" sentence for a
    normal report."""
    return tetg_text(class_names, prior_interval(report, rng), types_word)


#: The questions of prior-only multiple-choice rows (:func:`prior_mc_conversation`): about
#: the prior sentence, never the wording of a video method's evaluation questions.
PRIOR_MC_QUESTIONS = (
    "Which option agrees with the temporal prior above?",
    "Going by the prior, which option gives the anomaly and its time?",
)

#: What a reasoned prior-only answer restates (:func:`prior_mc_conversation`).
PRIOR_SAID = "The prior places the anomaly between {start} and {end}."
PRIOR_SAID_NONE = "The prior finds no anomaly."


def prior_mc_conversation(
    report: Any,
    seed: int,
    class_names: Sequence[str],
    answer_style: str = "letter",
    types_word: str = T.TETG_TYPES_WORD,
) -> tuple[list[dict[str, str]], MCQuestion]:
    """A text-only multiple-choice row whose only evidence is a TETG-style prior
    (:func:`prior_sentence`: the report's anomaly span with each end moved by up to ±1 s, or
    the "no anomaly" sentence), ours: the answer is the option whose interval the prior
    points at (the options' intervals differ, and the distractors overlap the true one by at
    most 30% IoU), or the "no anomaly" option. It teaches a text skill, reading an interval
    off a sentence and matching it among options, on pretrain-split reports; the questions
    are worded from :data:`PRIOR_MC_QUESTIONS`, not the evaluation's. ``answer_style`` is
    text pretraining's ``mc_answer``: ``"letter"`` (``"C. A fire from 2.1s to 4.5s"``),
    ``"option"`` (``"A fire from 2.1s to 4.5s. Answer: C."``) or ``"evidence"``, the prior
    restated first (``"The prior places the anomaly between 2.3s and 4.4s. Answer: C."``).
    ``types_word`` names the prior's class list, as VA-GPT's ``tetg.types_word``."""
    rng = np.random.default_rng([int(seed), 31])
    q = multiple_choice(report.facts, class_names, seed, questions=PRIOR_MC_QUESTIONS)
    interval = prior_interval(report, rng)
    o = q.options[q.answer_index]
    said = PRIOR_SAID_NONE
    if interval is not None:
        said = PRIOR_SAID.format(start=format_time(interval[0]), end=format_time(interval[1]))
    answer = mc_answer_text(o.letter, o.text, answer_style, evidence=said)
    return [
        {"from": "human", "value": f"{tetg_text(class_names, interval, types_word)}\n{q.prompt()}"},
        {"from": "gpt", "value": answer},
    ], q


#: The questions of lookup rows (:func:`lookup_conversation`); ``{text}`` is one option's text.
LOOKUP_QUESTIONS = (
    "Which option reads exactly: {text}?",
    'Find the option that says "{text}".',
)


def lookup_conversation(
    report: Any,
    seed: int,
    class_names: Sequence[str],
    answer_style: str = "letter",
) -> tuple[list[dict[str, str]], MCQuestion]:
    """A text-only row that asks which lettered option repeats a quoted line (ours): the four
    options :func:`~vau_jax.data.benchmark.multiple_choice` draws for ``report``, the
    question quoting one of them verbatim (uniform over the four, whatever the report says),
    the answer that option's letter and text (``answer_style`` as in
    :func:`prior_mc_conversation`, but not ``"evidence"``).

    The skill reading VA-GPT's prior rests on, alone: finding the option line that matches a
    string and giving its letter. The 4-layer LLM does not learn it from prior-only rows,
    not even when the prior's interval is written exactly as the right option's (README,
    VA-GPT). Returns the conversation and the question with the quoted option as its answer.
    """
    rng = np.random.default_rng([int(seed), 37])
    q = multiple_choice(report.facts, class_names, seed)
    k = int(rng.integers(len(q.options)))
    o = q.options[k]
    question = LOOKUP_QUESTIONS[int(rng.integers(len(LOOKUP_QUESTIONS)))].format(text=o.text)
    asked = MCQuestion(q.video_id, question, q.options, k)
    return [
        {"from": "human", "value": asked.prompt()},
        {"from": "gpt", "value": mc_answer_text(o.letter, o.text, answer_style)},
    ], asked


#: ``text_pretrain.time_embedding`` values: how the time tokens' input rows start.
TIME_EMBEDDINGS = ("random", "sinusoid")


def sinusoid_time_rows(
    params: Any, tok: Any, min_period: float = 0.5, max_period: float = 64.0
) -> Any:
    """``params`` with the time tokens' input embedding rows started from their value (ours;
    ``text_pretrain.time_embedding="sinusoid"``): half of each ``[D]`` row is cos / sin of the
    time at ``D/4`` periods spaced geometrically from ``min_period`` to ``max_period`` seconds,
    the other half keeps the random init, and each row keeps about the random rows' mean
    norm. Nearby times then start with similar rows, so the nearest interval among options
    need not be learned from scratch (README, VA-GPT, *Times as single tokens*).

    Args:
      params: a LLaMA's params (``model/embed_tokens/embedding``: ``[V, D]``, D divisible by 4).
      tok: its tokenizer; it must hold every :data:`vau_jax.data.corpus.TIME_TOKENS` piece
        (``synthvad_times``), else ValueError.
    Returns the params with a new embedding array; every other row and leaf unchanged.
    """
    import jax.numpy as jnp

    from vau_jax.data.corpus import TIME_TOKENS

    emb = jnp.asarray(params["model"]["embed_tokens"]["embedding"])  # may be traced (jit init)
    d = emb.shape[1]
    if d % 4:
        raise ValueError(f"sinusoid time rows need a width divisible by 4, got {d}")
    found = [tok.token_to_id(p) for p in TIME_TOKENS]
    for i, piece in zip(found, TIME_TOKENS):
        if i is None:
            raise ValueError(
                f"time_embedding='sinusoid' needs a tokenizer with time tokens "
                f"(synthvad_times); this one has no {piece!r}"
            )
    ids = np.array(found)
    t = np.array([float(p[1:-1]) for p in TIME_TOKENS])[:, None]
    periods = np.geomspace(min_period, max_period, d // 4)[None]
    f = np.concatenate([np.cos(2 * np.pi * t / periods), np.sin(2 * np.pi * t / periods)], 1)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)  # [201, D/2], unit rows
    norm = jnp.linalg.norm(emb, axis=1).mean()
    rows = jnp.concatenate([f.astype(emb.dtype) * norm, emb[ids, d // 2 :] * np.sqrt(2.0)], 1)
    emb = emb.at[ids].set(rows / np.sqrt(2.0))
    out = dict(params)
    out["model"] = dict(params["model"])
    out["model"]["embed_tokens"] = dict(params["model"]["embed_tokens"], embedding=emb)
    return out
