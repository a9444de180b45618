"""VA-GPT's instruction data from clip captions (its supplementary, §1.1), template-based.

The supplementary cuts every UCF-Crime training video into clips with their UCA captions,
has GPT-4 write three questions per clip — the last always "Are there any anomalies?" —
and their answers, in LLaVA's conversation format, and mixes them with text dialogue,
single-frame QA and video QA. Here a :class:`QAGenerator` writes those conversations; the
default :class:`TemplateQA` fills templates (deterministic from a seed), and an LLM annotator
can replace it by implementing the same four methods.

Kinds of conversation (LLaVA turns ``{"from": "human"|"gpt", "value": ...}``):

* **clip** (:meth:`QAGenerator.clip`): three turns about one caption segment ``[s, e)`` of
  the video: when a described event happens (temporal grounding), what happens in that span
  (description), and "Are there any anomalies?";
* **video** (:meth:`QAGenerator.video`): whole-video questions: a description, and whether
  there is an anomaly, what and when (answered in sentences, never as lettered options);
* **frame** (:meth:`QAGenerator.frame`): what is visible at one moment (the caption of the
  segment covering it);
* **text** (:meth:`QAGenerator.text`): text-only dialogue about a caption (no ``<video>``).

Nothing here writes a multiple-choice question about a video: the evaluation's format never
appears in training.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.instruct import Conversation, format_time, type_phrase

ANOMALY_QUESTION = "Are there any anomalies?"

WHEN_QUESTIONS = (
    "When does this happen in the video: {sentence}",
    "At what time can the following be seen? {sentence}",
    "Find the moment in the video: {sentence}",
)
SPAN_QUESTIONS = (
    "What happens in the video from {start} to {end}?",
    "Describe what can be seen between {start} and {end}.",
    "What is going on from {start} to {end}?",
)
FRAME_QUESTIONS = ("What is visible at {t}?", "Describe the frame at {t}.")
VIDEO_ANOMALY_QUESTIONS = (
    "Is there an anomaly in this video? If so, what is it and when does it happen?",
    "Does anything abnormal happen in this video? Say what and when.",
)
TEXT_QUESTIONS = (
    'Here is a report from a surveillance camera: "{sentence}" Does it describe an anomaly?',
    'A guard wrote: "{sentence}" Is this normal activity or an anomaly?',
)


@dataclasses.dataclass(frozen=True)
class Clip:
    """One caption segment of a video.

    Attributes:
      start, end: seconds, half-open.
      sentence: its caption.
      anomalous: whether the segment overlaps the video's anomaly.
    """

    start: float
    end: float
    sentence: str
    anomalous: bool


def clips_from_captions(
    captions: Sequence[tuple[float, float, str]],
    anomaly: Sequence[tuple[float, float]],
    min_overlap: float = 0.5,
) -> list[Clip]:
    """Caption segments -> :class:`Clip` s; a clip is anomalous when at least
    ``min_overlap`` of it lies inside the anomaly intervals (seconds)."""
    out = []
    for s, e, sentence in captions:
        length = max(float(e) - float(s), 1e-9)
        inside = sum(max(0.0, min(e, b) - max(s, a)) for a, b in anomaly)
        out.append(Clip(float(s), float(e), str(sentence), inside / length >= min_overlap))
    return out


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(kind.encode())])


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sec(t: float) -> str:
    return format_time(t)


def _lower(sentence: str) -> str:
    s = sentence.strip()
    return s[:1].lower() + s[1:] if s else s


class QAGenerator(Protocol):
    """Writes the instruction conversations (module docstring)."""

    def clip(self, clip: Clip, anomaly_type: str, seed: int) -> Conversation: ...

    def video(
        self,
        description: str,
        anomaly_type: str,
        intervals: Sequence[tuple[float, float]],
        seed: int,
    ) -> Conversation: ...

    def frame(self, t: float, caption: str, seed: int) -> Conversation: ...

    def text(
        self, sentence: str, anomalous: bool, anomaly_type: str, seed: int
    ) -> Conversation: ...


class TemplateQA:
    """The default generator: fixed question paraphrases, answers from the captions."""

    def clip(self, clip: Clip, anomaly_type: str, seed: int) -> Conversation:
        """Three turns: when, what, "Are there any anomalies?" (always last)."""
        rng = _rng(seed, "clip")
        span = {"start": _sec(clip.start), "end": _sec(clip.end)}
        when = _pick(rng, WHEN_QUESTIONS).format(sentence=clip.sentence)
        what = _pick(rng, SPAN_QUESTIONS).format(**span)
        if clip.anomalous:
            verdict = f"Yes. It is {type_phrase(anomaly_type)}: {_lower(clip.sentence)}"
        else:
            verdict = "No. What happens in this part is normal activity."
        return [
            {"from": "human", "value": f"{T.VIDEO_MARKER}\n{when}"},
            {"from": "gpt", "value": f"From {span['start']} to {span['end']}."},
            {"from": "human", "value": what},
            {"from": "gpt", "value": clip.sentence},
            {"from": "human", "value": ANOMALY_QUESTION},
            {"from": "gpt", "value": verdict},
        ]

    def video(
        self,
        description: str,
        anomaly_type: str,
        intervals: Sequence[tuple[float, float]],
        seed: int,
    ) -> Conversation:
        """A description and the anomaly verdict of the whole video (sentences, no options)."""
        rng = _rng(seed, "video")
        if intervals:
            times = " and ".join(f"between {_sec(a)} and {_sec(b)}" for a, b in intervals)
            verdict = f"Yes: {type_phrase(anomaly_type)}, {times}."
        else:
            verdict = "No, nothing abnormal happens in this video."
        return [
            {"from": "human", "value": f"{T.VIDEO_MARKER}\n{_pick(rng, T.DESCRIBE_QUESTIONS)}"},
            {"from": "gpt", "value": description},
            {"from": "human", "value": _pick(rng, VIDEO_ANOMALY_QUESTIONS)},
            {"from": "gpt", "value": verdict},
        ]

    def frame(self, t: float, caption: str, seed: int) -> Conversation:
        """What is visible at one moment."""
        rng = _rng(seed, "frame")
        q = _pick(rng, FRAME_QUESTIONS).format(t=_sec(t))
        return [
            {"from": "human", "value": f"{T.VIDEO_MARKER}\n{q}"},
            {"from": "gpt", "value": caption},
        ]

    def text(self, sentence: str, anomalous: bool, anomaly_type: str, seed: int) -> Conversation:
        """Text-only dialogue: is a written report about an anomaly? (no video)."""
        rng = _rng(seed, "text")
        q = _pick(rng, TEXT_QUESTIONS).format(sentence=sentence)
        a = (
            f"Yes, it describes {type_phrase(anomaly_type)}."
            if anomalous
            else "No, it describes normal activity."
        )
        return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


def caption_at(captions: Sequence[tuple[float, float, str]], t: float) -> str | None:
    """The caption of the segment covering time ``t`` (seconds), if any."""
    for s, e, sentence in captions:
        if s <= t < e:
            return sentence
    return None
