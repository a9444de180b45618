"""Instruction data for the three methods, built from ground-truth facts or clip scores.

Pure Python/numpy and deterministic: the same facts and seed give the same text. All
wording comes from :mod:`vau_jax.data.templates`.

Generic use: fill a :class:`VideoFacts` from any dataset's annotation (type, intervals in
seconds, spatial word, descriptions) and call the builders or :func:`build_instructions`;
for SynthVAD, :func:`facts_from_synth` / :func:`synth_instructions` read a ``SynthVideo``.

A conversation is LLaVA's format, a list of turns
``[{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}]``.

VA-GPT's multiple-choice questions live in :mod:`vau_jax.data.benchmark`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vau_jax.data import templates as T

if TYPE_CHECKING:
    from vau_jax.data.benchmark import MCQuestion
    from vau_jax.data.synthvad.types import SynthVideo

NORMAL = "normal"
# SynthVAD track kinds that do not travel: their box grows or flickers, so "stays in place".
STATIC_KINDS = ("object", "fire", "explosion")
Conversation = list[dict[str, str]]
Interval = tuple[float, float]


@dataclasses.dataclass(frozen=True)
class VideoFacts:
    """What the instruction builders need to know about one video (any dataset).

    Attributes:
      video_id: identifier, used in error messages.
      duration: video length in seconds.
      anomaly_type: ``"normal"`` or the dataset's class name of the anomaly.
      intervals: anomalous intervals in seconds ``(start, end)``; empty iff normal.
      spatial_word: top/bottom/left/right/centre of the anomaly ("" if unknown or normal).
      description: description of the scene.
      event_description: appearance and trajectory of the event (or the normal activity).
      target: the anomalous object, e.g. "person" ("" if unknown or normal).
      trajectory: a key of ``templates.TRAJECTORY_PHRASES`` or a free verb phrase
        ("moves to the left"); "" if unknown.
    """

    video_id: str
    duration: float
    anomaly_type: str
    intervals: tuple[Interval, ...] = ()
    spatial_word: str = ""
    description: str = ""
    event_description: str = ""
    target: str = ""
    trajectory: str = ""

    def __post_init__(self) -> None:
        where = f"video {self.video_id!r}"
        if not self.duration > 0:
            raise ValueError(f"{where}: duration must be > 0 seconds, got {self.duration}")
        for start, end in self.intervals:
            if not 0 <= start < end:
                raise ValueError(f"{where}: bad interval ({start}, {end}) seconds")
        if (self.anomaly_type == NORMAL) != (len(self.intervals) == 0):
            raise ValueError(
                f"{where}: anomaly_type {self.anomaly_type!r} with {len(self.intervals)} "
                "intervals (normal videos have none, anomalous videos at least one)"
            )
        if self.spatial_word and self.spatial_word not in T.SPATIAL_PHRASES:
            raise ValueError(
                f"{where}: spatial_word {self.spatial_word!r} not in {tuple(T.SPATIAL_PHRASES)}"
            )

    @property
    def is_anomalous(self) -> bool:
        """True iff the video contains an anomaly."""
        return self.anomaly_type != NORMAL

    @property
    def main_interval(self) -> Interval | None:
        """The longest ground-truth interval (seconds), ``None`` for normal videos."""
        if not self.intervals:
            return None
        return max(self.intervals, key=lambda iv: (iv[1] - iv[0], -iv[0]))


# --- small text helpers ---------------------------------------------------------------------


def _rng(seed: int, kind: str) -> np.random.Generator:
    """A generator seeded by (seed, kind): each builder draws from its own stream."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(kind.encode())])


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def format_time(t: float) -> str:
    """Seconds as written in answers: ``1.5 -> "1.5s"``."""
    return T.TIME_FORMAT.format(t=float(t))


def format_interval(interval: Interval) -> str:
    """``(1.5, 2.0) -> "from 1.5s to 2.0s"``."""
    return T.INTERVAL_FORMAT.format(start=format_time(interval[0]), end=format_time(interval[1]))


def format_intervals(intervals: Sequence[Interval]) -> str:
    """Several intervals: ``"from 1.0s to 2.0s, from 3.0s to 4.0s and from 5.0s to 6.0s"``."""
    parts = [format_interval(iv) for iv in intervals]
    if len(parts) <= 1:
        return "".join(parts)
    return T.LIST_SEPARATOR.join(parts[:-1]) + T.LIST_LAST_SEPARATOR + parts[-1]


def type_phrase(anomaly_type: str) -> str:
    """Human phrase of a class name ("vehicle" -> "a vehicle on the walkway")."""
    return T.TYPE_PHRASES.get(anomaly_type, anomaly_type.replace("_", " "))


def _round_interval(interval: Interval) -> Interval:
    return (round(float(interval[0]), 1), round(float(interval[1]), 1))


def _conversation(question: str, answer: str) -> Conversation:
    human = {"from": "human", "value": f"{T.VIDEO_MARKER}\n{question}"}
    return [human, {"from": "gpt", "value": answer}]


# --- geometry helpers (for datasets with boxes) ---------------------------------------------


def spatial_word_from_box(box: Sequence[float], width: int, height: int) -> str:
    """Spatial word of an ``x1, y1, x2, y2`` box: "centre" when its centre lies within
    1/6 of the frame size from the frame centre, else the dominant direction."""
    cx = (box[0] + box[2]) / 2.0 / width - 0.5
    cy = (box[1] + box[3]) / 2.0 / height - 0.5
    if max(abs(cx), abs(cy)) < 1.0 / 6.0:
        return "centre"
    if abs(cx) >= abs(cy):
        return "right" if cx > 0 else "left"
    return "bottom" if cy > 0 else "top"


def trajectory_key(boxes: np.ndarray, width: int, height: int, min_shift: float = 0.1) -> str:
    """Key of ``templates.TRAJECTORY_PHRASES`` for a track's boxes ``[M, 4]`` (x1, y1, x2, y2).

    The displacement of the box centre from the first to the last box, in fractions of the
    frame size; below ``min_shift`` on both axes the object "stays in place". An axis counts
    when its shift is at least ``min_shift`` and at least half the other axis' shift.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0  # [M, 2] x, y
    dx, dy = (centre[-1] - centre[0]) / np.array([width, height], np.float64)
    vert = ("down" if dy > 0 else "up") if abs(dy) >= max(min_shift, abs(dx) / 2) else ""
    horiz = ("right" if dx > 0 else "left") if abs(dx) >= max(min_shift, abs(dy) / 2) else ""
    return "_".join(p for p in (vert, horiz) if p) or "static"


def trajectory_phrase(trajectory: str) -> str:
    """Phrase of a trajectory key; a free phrase is returned as is."""
    return T.TRAJECTORY_PHRASES.get(trajectory, trajectory)


# --- LLaVA-style conversations --------------------------------------------------------------


def description_conversation(facts: VideoFacts, seed: int) -> Conversation:
    """ "Describe this video." -> scene description + event description."""
    rng = _rng(seed, "describe")
    answer = " ".join(s for s in (facts.description, facts.event_description) if s)
    if not answer:
        raise ValueError(f"video {facts.video_id!r}: no description to build a caption from")
    return _conversation(_pick(rng, T.DESCRIBE_QUESTIONS), answer)


def anomaly_conversation(facts: VideoFacts, seed: int) -> Conversation:
    """Anomaly-focused description: the event, its type and its time intervals."""
    rng = _rng(seed, "anomaly")
    event = facts.event_description
    answer = T.NORMAL_DESCRIBE_ANSWER.format(event=event)
    if facts.is_anomalous:
        kind, intervals = type_phrase(facts.anomaly_type), format_intervals(facts.intervals)
        answer = T.ANOMALY_DESCRIBE_ANSWER.format(event=event, type=kind, intervals=intervals)
    return _conversation(_pick(rng, T.ANOMALY_DESCRIBE_QUESTIONS), answer.strip())


# --- T-VAU questions ------------------------------------------------------------------------


def yes_no_conversation(facts: VideoFacts, seed: int) -> Conversation:
    """ "Is there an anomaly in this video?" -> "Yes, ..." / "No, ..."."""
    rng = _rng(seed, "yes_no")
    answer = T.NO_ANSWER
    if facts.is_anomalous:
        answer = T.YES_ANSWER.format(type=type_phrase(facts.anomaly_type))
    return _conversation(_pick(rng, T.YES_NO_QUESTIONS), answer)


def target_conversation(facts: VideoFacts, seed: int) -> Conversation | None:
    """ "What is the anomalous object?"; ``None`` for an anomaly without a known target."""
    rng = _rng(seed, "target")
    if facts.is_anomalous and not facts.target:
        return None
    answer = T.TARGET_NONE_ANSWER
    if facts.is_anomalous:
        answer = T.TARGET_ANSWER.format(target=facts.target)
    return _conversation(_pick(rng, T.TARGET_QUESTIONS), answer)


def trajectory_conversation(facts: VideoFacts, seed: int) -> Conversation | None:
    """ "How does the <target> move?"; ``None`` when normal or target/trajectory unknown."""
    if not (facts.is_anomalous and facts.target and facts.trajectory):
        return None
    rng = _rng(seed, "trajectory")
    question = _pick(rng, T.TRAJECTORY_QUESTIONS).format(target=facts.target)
    answer = T.TRAJECTORY_ANSWER.format(
        target=facts.target, trajectory=trajectory_phrase(facts.trajectory)
    )
    return _conversation(question, answer)


def spatial_conversation(facts: VideoFacts, seed: int) -> Conversation | None:
    """ "Where in the frame does the anomaly happen?"; ``None`` when the location is unknown."""
    rng = _rng(seed, "spatial")
    if facts.is_anomalous and not facts.spatial_word:
        return None
    answer = T.SPATIAL_NONE_ANSWER
    if facts.is_anomalous:
        answer = T.SPATIAL_ANSWER.format(where=T.SPATIAL_PHRASES[facts.spatial_word])
    return _conversation(_pick(rng, T.SPATIAL_QUESTIONS), answer)


# --- VA-GPT multiple choice -----------------------------------------------------------------


def tetg_text(
    class_names: Sequence[str], interval: Interval | None, types_word: str = T.TETG_TYPES_WORD
) -> str:
    """VA-GPT's temporal prior sentence: the class list, then the predicted interval in
    seconds (or the "no anomaly" sentence when ``interval`` is None). ``types_word`` names
    the list ("Known common crime types are: ..."; the paper's word by default)."""
    types = ", ".join(f"'{c}'" for c in class_names)
    tail = T.TETG_NONE
    if interval is not None:
        tail = T.TETG_INTERVAL.format(
            word=types_word, start=format_time(interval[0]), end=format_time(interval[1])
        )
    return f"{T.TETG_CLASSES.format(word=types_word, types=types)} {tail}"


# --- VAD-LLaMA pseudo-instructions ----------------------------------------------------------


def scores_to_intervals(
    scores: np.ndarray, clip_seconds: float, threshold: float = 0.5
) -> list[Interval]:
    """Merge consecutive clips with ``score >= threshold`` into intervals in seconds.

    Args:
      scores: float [N] anomaly score per clip, clip i covering
        ``[i * clip_seconds, (i + 1) * clip_seconds)``.
      clip_seconds: clip duration in seconds.
      threshold: a clip is anomalous when its score is at least this.

    Returns:
      ``[(start, end), ...]`` in seconds, in time order.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    hot = np.concatenate([[False], scores >= threshold, [False]])
    edges = np.flatnonzero(np.diff(hot.astype(np.int8)))  # starts at even, ends at odd slots
    return [(float(s * clip_seconds), float(e * clip_seconds)) for s, e in edges.reshape(-1, 2)]


def pseudo_instruction(
    scores: np.ndarray,
    clip_seconds: float,
    threshold: float,
    seed: int,
    questions: Sequence[str] = T.VADLLAMA_QUESTIONS,
) -> Conversation:
    """VAD-LLaMA pseudo-instruction from clip scores: "Yes, there are anomalies from 1.5s
    to 2.0s." (all merged intervals listed) or "No, there is no anomaly in this video."."""
    rng = _rng(seed, "pseudo_instruction")
    intervals = scores_to_intervals(scores, clip_seconds, threshold)
    answer = T.VADLLAMA_NO
    if intervals:
        answer = T.VADLLAMA_YES.format(intervals=format_intervals(intervals))
    return _conversation(_pick(rng, questions), answer)


# --- everything for one video ---------------------------------------------------------------


def build_instructions(
    facts: VideoFacts, type_vocab: Sequence[str], seed: int
) -> dict[str, Conversation | MCQuestion]:
    """All ground-truth instruction items of a video.

    Keys: ``caption``, ``anomaly``, ``yes_no``, ``target``, ``trajectory``, ``spatial``
    (conversations; an item is left out when the facts do not support it, e.g. no
    trajectory for normal videos) and ``mcqa`` (an :class:`MCQuestion`).
    """
    has_text = bool(facts.description or facts.event_description)
    builders = {
        "caption": description_conversation if has_text else None,
        "anomaly": anomaly_conversation,
        "yes_no": yes_no_conversation,
        "target": target_conversation,
        "trajectory": trajectory_conversation,
        "spatial": spatial_conversation,
    }
    out: dict[str, Conversation | MCQuestion] = {}
    for name, build in builders.items():
        item = build(facts, seed) if build is not None else None
        if item is not None:
            out[name] = item
    from vau_jax.data.benchmark import multiple_choice

    out["mcqa"] = multiple_choice(facts, type_vocab, seed)
    return out


def facts_from_synth(video: SynthVideo) -> VideoFacts:
    """The :class:`VideoFacts` of a SynthVAD video; target and trajectory come from the
    first anomalous track (``STATIC_KINDS`` "stay in place")."""
    n_frames, height, width = video.frames.shape[:3]
    anomalous = [t for t in video.tracks if t.anomalous and len(t.frames)]
    target = trajectory = ""
    if video.anomaly_type != NORMAL and anomalous:
        track = anomalous[0]
        target = T.TARGET_PHRASES.get(track.kind, track.kind)
        static = track.kind in STATIC_KINDS
        trajectory = "static" if static else trajectory_key(track.boxes, width, height)
    return VideoFacts(
        video_id=video.video_id,
        duration=n_frames / float(video.fps),
        anomaly_type=video.anomaly_type,
        intervals=tuple((float(s), float(e)) for s, e in np.asarray(video.intervals)),
        spatial_word=video.spatial_word if video.anomaly_type != NORMAL else "",
        description=video.scene_description,
        event_description=video.event_description,
        target=target,
        trajectory=trajectory,
    )


def synth_instructions(
    video: SynthVideo, type_vocab: Sequence[str] | None = None
) -> dict[str, Conversation | MCQuestion]:
    """:func:`build_instructions` for a SynthVAD video, seeded by the video's seed; the
    type vocabulary defaults to SynthVAD's anomaly types."""
    if type_vocab is None:
        from vau_jax.data.synthvad.types import ANOMALY_TYPES

        type_vocab = ANOMALY_TYPES
    return build_instructions(facts_from_synth(video), type_vocab, video.seed)
