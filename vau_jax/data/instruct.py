"""Instruction data for the three methods, built from ground-truth facts or clip scores.

Pure Python/numpy and deterministic: the same facts and seed give the same text. All
wording comes from :mod:`vau_jax.data.templates`.

Generic use: fill a :class:`VideoFacts` from any dataset's annotation (type, intervals in
seconds, spatial word, descriptions) and call the builders or :func:`build_instructions`;
for SynthVAD, :func:`facts_from_synth` / :func:`synth_instructions` read a ``SynthVideo``.

A conversation is LLaVA's format, a list of turns
``[{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}]``.

VA-GPT multiple choice (:func:`multiple_choice`): four options, each an (anomaly type,
interval) pair, exactly one correct. For an anomalous video the distractors are

* the true interval with a wrong type   (Temporal hit, Total miss),
* the true type with a wrong interval   (Temporal miss, Total miss),
* a wrong type with a wrong interval    (both miss),

so Total Acc (chosen option is the correct one) and Temporal Acc (chosen option's interval
equals the true interval) differ. With several ground-truth intervals the longest is the
true one. Intervals are compared after rounding to 0.1 s, the precision they are written
with. For a **normal** video the correct option is "No anomaly happens in this video"
(type ``"normal"``, interval ``None``) and the three distractors are anomaly types with
random intervals; there only the correct option has the true (``None``) interval, so a
Temporal hit equals a Total hit.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vau_jax.data import templates as T

if TYPE_CHECKING:
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


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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
    """VA-GPT multiple-choice question (see the module docstring for the option design).

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
            (wrong_types[0], true),  # true interval, wrong type
            (facts.anomaly_type, wrong[0]),  # true type, wrong interval
            (wrong_types[1], wrong[1]),  # both wrong
        ]
    else:
        wrong = _wrong_intervals(rng, None, facts.duration, 3)
        picks = [(NORMAL, None)] + list(zip(wrong_types, wrong))
    perm = rng.permutation(4)
    options = []
    for slot, src in enumerate(perm):
        kind, interval = picks[int(src)]
        if interval is None:
            text = T.MC_NORMAL_OPTION
        else:
            text = T.MC_OPTION.format(type=type_phrase(kind), interval=format_interval(interval))
        text = text[:1].upper() + text[1:]
        options.append(MCOption(T.MC_LETTERS[slot], kind, interval, text))
    answer = int(np.flatnonzero(perm == 0)[0])
    return MCQuestion(facts.video_id, _pick(rng, questions), tuple(options), answer)


def tetg_text(class_names: Sequence[str], interval: Interval | None) -> str:
    """VA-GPT's temporal prior sentence: the class list, then the predicted interval
    (or the "no anomaly" sentence when ``interval`` is None)."""
    types = ", ".join(f"'{c}'" for c in class_names)
    tail = T.TETG_NONE
    if interval is not None:
        tail = T.TETG_INTERVAL.format(start=format_time(interval[0]), end=format_time(interval[1]))
    return f"{T.TETG_CLASSES.format(types=types)} {tail}"


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
