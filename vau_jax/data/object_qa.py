"""Generic object questions about a video: which objects, is there a X, where is it, how does
it move. Part of the base video LLM's pretraining (general video-QA skills, as a real LVLM
has them from its instruction data), asked about videos of SynthVAD's ``pretrain`` split.

Never about anomalies: no question or answer says "anomaly", "abnormal" or "unusual", and
anomalous and normal objects are asked about alike. Objects are named by kind
(:data:`vau_jax.data.templates.TARGET_PHRASES`: person, vehicle, bag, fire, explosion); when a
kind occurs several times, an object is named with its place in the frame if that is unique
among its kind (``"the person at the top of the frame"``), otherwise it is not asked about.
Positions and motions use :func:`vau_jax.data.instruct.spatial_word_from_box` (mean box
centre) and :func:`vau_jax.data.instruct.trajectory_key` (first to last box).

:func:`choice_conversations` asks the same things as four-option multiple choice answered with
the option's letter (LLaVA's wording, "Answer with the option's letter from the given
choices."), as LLaMA-VID's instruction data (LLaVA-665K: A-OKVQA, ScienceQA) asks about images:
answering a question about what is seen with a letter is a general skill of a real LVLM. The
questions are about objects, their place and their motion, never about anomalies or times,
so none is a form of VA-GPT's evaluation questions (anomaly type and interval).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.benchmark import LETTERS, mc_answer_text
from vau_jax.data.instruct import (
    _conversation,
    spatial_word_from_box,
    trajectory_key,
    trajectory_phrase,
)

OBJECTS_QUESTIONS = ("Which objects appear in this video?", "What can you see in this video?")
PRESENCE_QUESTION = "Is there {article} {kind} in this video?"
MOTION_QUESTIONS = ("In which direction does the {name} go?", "How is the {name} moving?")
POSITION_QUESTIONS = ("Where is the {name}?", "In which part of the frame is the {name}?")
KINDS = ("person", "vehicle", "bag", "fire", "explosion")
_PLURAL = {"person": "people"}
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _count(kind: str, n: int) -> str:
    if n == 1:
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
    word = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    return f"{word} {_PLURAL.get(kind, kind + 's')}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def objects_of(video: Any) -> list[dict[str, Any]]:
    """Per track of a :class:`~vau_jax.data.synthvad.types.SynthVideo`: ``kind`` (phrase),
    ``where`` (spatial word of its mean box centre) and ``motion`` (trajectory key)."""
    h, w = video.frames.shape[1:3]
    out = []
    for tr in video.tracks:
        if not len(tr.boxes):
            continue
        box = np.asarray(tr.boxes, np.float64).mean(0)
        out.append(
            {
                "kind": T.TARGET_PHRASES.get(tr.kind, tr.kind),
                "where": spatial_word_from_box(box, w, h),
                "motion": trajectory_key(tr.boxes, w, h),
            }
        )
    return out


def _listing(counts: Counter) -> str:
    """The answer listing the objects of ``counts`` (kind -> number)."""
    return f"I can see {_join([_count(k, n) for k, n in sorted(counts.items())])}."


def _place(name: str, where: str) -> str:
    """The answer saying where ``name`` is (a spatial word)."""
    return f"The {name} is {T.SPATIAL_PHRASES[where]}."


def _moves(name: str, motion: str) -> str:
    """The answer saying how ``name`` moves (a trajectory key or phrase)."""
    return f"The {name} {trajectory_phrase(motion)}."


def _names(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """The objects that can be named unambiguously, with their names."""
    by_kind = Counter(o["kind"] for o in objects)
    by_place = Counter((o["kind"], o["where"]) for o in objects)
    out = []
    for o in objects:
        if by_kind[o["kind"]] == 1:
            out.append((o, o["kind"]))
        elif by_place[o["kind"], o["where"]] == 1:
            out.append((o, f"{o['kind']} {T.SPATIAL_PHRASES[o['where']]}"))
    return out


def conversations(video: Any, seed: int, max_named: int = 2) -> list[list[dict[str, str]]]:
    """LLaVA conversations (``<video>`` marker first) about ``video``'s objects: one listing
    them, one presence question (present or absent kind, even odds), and a position and a
    motion question about up to ``max_named`` nameable objects."""
    rng = np.random.default_rng(seed)
    objects = objects_of(video)
    counts = Counter(o["kind"] for o in objects)
    out = []
    if objects:
        out.append(_conversation(OBJECTS_QUESTIONS[int(rng.integers(2))], _listing(counts)))
    present = rng.random() < 0.5 and objects
    pool = sorted(counts) if present else [k for k in KINDS if k not in counts]
    if pool:
        kind = pool[int(rng.integers(len(pool)))]
        article = "an" if kind[0] in "aeiou" else "a"
        answer = f"Yes, there is {article} {kind}." if present else f"No, there is no {kind}."
        out.append(_conversation(PRESENCE_QUESTION.format(article=article, kind=kind), answer))
    named = _names(objects)
    for k in rng.permutation(len(named))[:max_named]:
        o, name = named[int(k)]
        if name == o["kind"]:  # a name with the place in it would give the answer away
            q = POSITION_QUESTIONS[int(rng.integers(2))].format(name=name)
            out.append(_conversation(q, _place(name, o["where"])))
        q = MOTION_QUESTIONS[int(rng.integers(2))].format(name=name)
        out.append(_conversation(q, _moves(name, o["motion"])))
    return out


def _mc(
    rng: np.random.Generator,
    question: str,
    truth: str,
    distractors: list[str],
    answer_style: str = "letter",
):
    """A four-option conversation: ``truth`` and three of ``distractors`` (distinct, shuffled,
    the right letter uniform), answered "B. text" (``answer_style="option"``: "text. Answer:
    B."); None when fewer than three distractors."""
    pool = sorted({d for d in distractors if d != truth})
    if len(pool) < 3:
        return None
    picked = [pool[int(k)] for k in rng.choice(len(pool), 3, replace=False)]
    options = [truth, *picked]
    order = rng.permutation(4)
    lines = [
        T.MC_OPTION_LINE.format(letter=LETTERS[i], text=options[int(k)])
        for i, k in enumerate(order)
    ]
    answer = mc_answer_text(LETTERS[int(np.flatnonzero(order == 0)[0])], truth, answer_style)
    return _conversation(T.MC_PROMPT.format(question=question, options="\n".join(lines)), answer)


def _listing_distractors(counts: Counter) -> list[str]:
    """Answers listing objects that differ from ``counts``: one kind swapped for an absent one, one
    count moved by one, one kind dropped or added."""
    out = []
    kinds = sorted(counts)
    absent = [k for k in KINDS if k not in counts]
    for k in kinds:
        for other in absent:
            c = Counter(counts)
            c[other] = c.pop(k)
            out.append(c)
        for d in (-1, 1):
            c = Counter(counts)
            c[k] += d
            if c[k] <= 0:
                del c[k]
            out.append(c)
    for other in absent:
        out.append(Counter(counts) + Counter({other: 1}))
    return [_listing(c) for c in out if c]


def choice_conversations(
    video: Any, seed: int, max_named: int = 2, answer_style: str = "letter"
) -> list[list[dict[str, str]]]:
    """Four-option multiple-choice conversations (module docstring) about ``video``'s objects:
    which objects appear, and the place and motion of up to ``max_named`` nameable objects.
    The right letter is uniform over A-D; ``answer_style`` words the answers
    (:func:`vau_jax.data.benchmark.mc_answer_text`)."""
    rng = np.random.default_rng([seed, 2])
    objects = objects_of(video)
    counts = Counter(o["kind"] for o in objects)
    out = []
    if objects:
        q = OBJECTS_QUESTIONS[int(rng.integers(2))]
        out.append(_mc(rng, q, _listing(counts), _listing_distractors(counts), answer_style))
    named = _names(objects)
    for k in rng.permutation(len(named))[:max_named]:
        o, name = named[int(k)]
        if name == o["kind"]:
            q = POSITION_QUESTIONS[int(rng.integers(2))].format(name=name)
            places = [_place(name, w) for w in T.SPATIAL_PHRASES]
            out.append(_mc(rng, q, _place(name, o["where"]), places, answer_style))
        q = MOTION_QUESTIONS[int(rng.integers(2))].format(name=name)
        motions = [_moves(name, m) for m in T.TRAJECTORY_PHRASES]
        out.append(_mc(rng, q, _moves(name, o["motion"]), motions, answer_style))
    return [c for c in out if c is not None]
