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
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.instruct import spatial_word_from_box, trajectory_key, trajectory_phrase

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

    def conv(q: str, a: str) -> list[dict[str, str]]:
        return [{"from": "human", "value": f"{T.VIDEO_MARKER}\n{q}"}, {"from": "gpt", "value": a}]

    out = []
    if objects:
        listed = _join([_count(k, n) for k, n in sorted(counts.items())])
        out.append(conv(OBJECTS_QUESTIONS[int(rng.integers(2))], f"I can see {listed}."))
    present = rng.random() < 0.5 and objects
    pool = sorted(counts) if present else [k for k in KINDS if k not in counts]
    if pool:
        kind = pool[int(rng.integers(len(pool)))]
        article = "an" if kind[0] in "aeiou" else "a"
        answer = f"Yes, there is {article} {kind}." if present else f"No, there is no {kind}."
        out.append(conv(PRESENCE_QUESTION.format(article=article, kind=kind), answer))
    named = _names(objects)
    for k in rng.permutation(len(named))[:max_named]:
        o, name = named[int(k)]
        if name == o["kind"]:  # a name with the place in it would give the answer away
            q = POSITION_QUESTIONS[int(rng.integers(2))].format(name=name)
            out.append(conv(q, f"The {o['kind']} is {T.SPATIAL_PHRASES[o['where']]}."))
        q = MOTION_QUESTIONS[int(rng.integers(2))].format(name=name)
        out.append(conv(q, f"The {name} {trajectory_phrase(o['motion'])}."))
    return out
