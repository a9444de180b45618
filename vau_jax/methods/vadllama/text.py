"""The text side of VAD-LLaMA phase 3: prompt layout, answer parsing and answer scoring.

Prompt layout (one LLM input token per clip, spliced at ``video_mask`` positions): the
human turn's ``<video>`` marker becomes a *timeline*, each clip's token preceded by its start
time and the video's end time at the end (the paper's "[Video Description]" of clip details)::

    0<video>1<video>2<video>3
    Is there any anomaly in this video? If so, when does it happen?

(times in seconds, ``{t:g}``: short, as every character of a number is a token of the tiny
tokenizer) so a stated interval is the times written around the anomalous clips, copied
(the tiny LLM does not have to count tokens). The frozen LLM learns to read such timelines in its
text-only pretraining (:mod:`vau_jax.methods.llm_pretrain`), where each clip slot holds a
word (``clip_words``: normal / abnormal clip); in phase 3 the slots hold the adaptor outputs.

Scoring (SynthVAD test split): an answer is parsed into yes/no and its stated intervals
(:func:`parse_answer`). **Yes/No accuracy**: parsed yes/no equals "the video has anomalous
frames" (unparsed = wrong). **Temporal IoU** (anomalous videos only): length of the
intersection over the length of the union of the *sets* of stated and ground-truth intervals
(seconds); an answer stating no interval (a "No", an unparsed answer, or a "Yes" without
times) scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.instruct import Conversation, Interval
from vau_jax.eval.generate import generate
from vau_jax.eval.metrics.qa import parse_yes_no

_NUM = r"(\d+(?:\.\d+)?)\s*(?:s\b|sec\b|secs\b|seconds?\b)?"
_INTERVAL = re.compile(rf"(?:from|between)\s+{_NUM}\s*(?:to|and|-|–|until)\s*{_NUM}", re.IGNORECASE)
_DASH = re.compile(r"(\d+(?:\.\d+)?)\s*s?\s*[-–]\s*(\d+(?:\.\d+)?)\s*s\b", re.IGNORECASE)


def timeline_text(num_clips: int, clip_seconds: float) -> str:
    """``"0<video>1<video>2"`` for 2 clips of 1 s (one marker per clip, times in seconds)."""
    parts = [f"{i * clip_seconds:g}{T.VIDEO_MARKER}" for i in range(num_clips)]
    return "".join([*parts, f"{num_clips * clip_seconds:g}"])


def with_timeline(conversation: Conversation, num_clips: int, clip_seconds: float) -> Conversation:
    """The conversation with its first human turn's ``<video>`` marker replaced by the
    timeline of ``num_clips`` clips (tokenise with ``num_video_tokens=1``)."""
    out = [dict(turn) for turn in conversation]
    first = out[0]["value"]
    if T.VIDEO_MARKER not in first:
        raise ValueError(f"first turn has no {T.VIDEO_MARKER} marker: {first!r}")
    out[0]["value"] = first.replace(T.VIDEO_MARKER, timeline_text(num_clips, clip_seconds), 1)
    return out


def question_conversation(question: str) -> Conversation:
    """A generation prompt: one human turn ``"<video>\\n{question}"``."""
    return [{"from": "human", "value": f"{T.VIDEO_MARKER}\n{question}"}]


def parse_answer(answer: str) -> tuple[bool | None, list[Interval]]:
    """``(yes/no or None, stated intervals in seconds)`` of a generated answer.

    Yes/No follows :func:`vau_jax.eval.metrics.qa.parse_yes_no`. Intervals: every
    "from A(s) to B(s)", "between A and B" or "A-Bs", numbers in seconds; inverted pairs are
    swapped and empty ones dropped. A "No" answer states no interval, whatever follows.
    """
    yes = parse_yes_no(answer)
    if yes is False:
        return False, []
    found: list[Interval] = []
    for m in list(_INTERVAL.finditer(answer)) or list(_DASH.finditer(answer)):
        a, b = float(m.group(1)), float(m.group(2))
        a, b = min(a, b), max(a, b)
        if b > a:
            found.append((a, b))
    return yes, found


def _union(intervals: Sequence[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in intervals if b > a):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def interval_set_iou(pred: Sequence[Interval], gt: Sequence[Interval]) -> float:
    """|∪pred ∩ ∪gt| / |∪pred ∪ ∪gt| over seconds; 0 when either set is empty."""
    p, g = _union(pred), _union(gt)
    if not p or not g:
        return 0.0
    inter = sum(max(0.0, min(b, d) - max(a, c)) for a, b in p for c, d in g)
    union = sum(b - a for a, b in p) + sum(d - c for c, d in g) - inter
    return inter / union if union > 0 else 0.0


def answer_metrics(
    answers: Sequence[str], gt_intervals: Sequence[Sequence[Interval]], prefix: str = ""
) -> dict[str, float]:
    """``{prefix}yes_no_accuracy``, ``{prefix}temporal_iou`` (anomalous videos, see the
    module docstring), ``{prefix}parsed`` (fraction with a parsed yes/no) and
    ``{prefix}recall_iou0.5`` (anomalous videos with IoU >= 0.5).

    Args:
      answers: generated answers, one per video.
      gt_intervals: per video its ground-truth anomalous intervals in seconds (empty = normal).
    """
    if len(answers) != len(gt_intervals) or not answers:
        raise ValueError(f"{len(answers)} answers for {len(gt_intervals)} videos")
    parsed = [parse_answer(a) for a in answers]
    truth = [bool(len(g)) for g in gt_intervals]
    acc = np.mean([yes == t for (yes, _), t in zip(parsed, truth)])
    ious = [interval_set_iou(iv, g) for (_, iv), g in zip(parsed, gt_intervals) if len(g)]
    out = {
        "yes_no_accuracy": float(acc),
        "parsed": float(np.mean([yes is not None for yes, _ in parsed])),
        "temporal_iou": float(np.mean(ious)) if ious else 0.0,
        "recall_iou0.5": float(np.mean(np.asarray(ious) >= 0.5)) if ious else 0.0,
    }
    return {prefix + k: v for k, v in out.items()}


def generate_answers(
    llm: Any,
    llm_params: Any,
    inputs_embeds: jax.Array,
    attention_mask: jax.Array,
    tok: Any,
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers of a left-padded prefix ``inputs_embeds [B, N, D]`` (mask ``[B, N]``)."""
    ids, lengths = generate(
        llm,
        llm_params,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
    )
    ids, lengths = np.asarray(ids), np.asarray(lengths)
    out = []
    for row, n in zip(ids, lengths):
        row = [int(t) for t in row[:n] if int(t) not in (tok.eos_id, tok.pad_id)]
        out.append(tok.decode(row).strip())
    return out


def fill_slots(example: Mapping[str, np.ndarray], words: np.ndarray) -> np.ndarray:
    """``input_ids [S]`` with the video positions set to ``words [V]`` (in order)."""
    ids = np.array(example["input_ids"], copy=True)
    pos = np.flatnonzero(example["video_mask"])
    if len(pos) != len(words):
        raise ValueError(f"{len(pos)} video positions but {len(words)} clip words")
    ids[pos] = words
    return ids
