"""VA-GPT data: the frozen encoders' features (feature store) and the instruction rows.

Per video, from three feature stores (:mod:`vau_jax.data.features`, encoded once, cached):

* ``cls`` ``[T, Dc]``: the CLIP class token of every frame at the run's frame rate (of the
  frames as the tower was trained to see them: pixels or background-subtracted), TETG's
  input ``z``;
* ``visual`` ``[S, N, Dc]``: the CLIP patch tokens of ``S`` frames sampled uniformly over
  the video, what SETS selects from and the LLaMA-VID tokens pool;
* ``dino`` ``[S, N, Dd]``: the frozen DINOv2 patch embeddings of the same frames (pixels),
  SETS's inter-frame L1 distance.

CLIP tokens are standardised per token when read (:func:`vau_jax.methods.base.standardise`).

Training rows (:func:`instruction_rows`) are conversations about the train videos' caption
clips, never a multiple-choice question about anomalies (the only lettered video questions
are about objects, ``train_data.object_mc``); evaluation rows (:func:`chat_row`) put
``<video>`` + (TETG's sentence) + a lettered benchmark question. ``video`` indexes the
split's features, attached per batch (:class:`AttachVisual`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from vau_jax.data.benchmark import MCQuestion, human_turn, multiple_choice
from vau_jax.data.chat import TooLongError, letter_weighted_row
from vau_jax.data.instruct import NORMAL, VideoFacts
from vau_jax.methods.base import standardise  # noqa: F401
from vau_jax.methods.pretrain.video_llm import (  # noqa: F401 - VA-GPT's rows and features
    AttachVisual,
    SplitFeatures,
    attach_batch,
    chat_row,
    conversation_row,
    encode_query,
    frame_specs,
    make_encoders,
    replay_rows,
)


def anomaly_intervals(videos: Sequence[Any]) -> list[tuple[tuple[float, float], ...]]:
    """Per video of a split its anomalous intervals in seconds (``()`` for normal videos).

    Annotated videos give theirs. A weakly labelled anomalous video (a UCF-Crime training
    video: a class, no times) takes them from its UCA captions, as the supplementary labels
    TETG's training frames with "video-level captions (with temporal information)": its
    caption segments are anomalous except those whose sentence also describes a normal
    video of the split (normal activity), adjacent segments merged.

    Raises ``ValueError`` naming the video when neither source gives a time.
    """
    normal = {text for v in videos if not v.is_anomalous for _, _, text in v.captions}
    out = []
    for v in videos:
        if not v.is_anomalous or v.has_frame_truth:
            out.append(tuple(video_seconds(v)) if v.is_anomalous else ())
            continue
        spans: list[list[float]] = []
        for s, e, text in v.captions:
            if text in normal:
                continue
            if spans and abs(spans[-1][1] - s) < 1e-6:
                spans[-1][1] = e
            else:
                spans.append([s, e])
        if not spans:
            raise ValueError(
                f"video {v.id!r} ({v.split}): anomalous, but no frame annotation and no UCA "
                "caption that places the anomaly in time (VA-GPT needs one of them)"
            )
        out.append(tuple((float(s), float(e)) for s, e in spans))
    return out


def video_seconds(video: Any) -> list[tuple[float, float]]:
    """``video.anomaly_seconds()``, after reading the frame rate from the file when the
    layout gives none (frame annotations count native frames)."""
    if video.fps is None and hasattr(video, "load_meta"):
        video.load_meta()
    return video.anomaly_seconds()


def interval_labels(timestamps: np.ndarray, intervals: Sequence[tuple[float, float]]) -> np.ndarray:
    """uint8 ``[T]``: 1 where a timestamp (seconds) falls in a half-open interval."""
    t = np.asarray(timestamps, np.float64)
    out = np.zeros(len(t), bool)
    for s, e in intervals:
        out |= (t >= s - 1e-6) & (t < e - 1e-6)
    return out.astype(np.uint8)


def facts(
    video: Any,
    n_frames: int | None = None,
    fps: float | None = None,
    intervals: Sequence[tuple[float, float]] | None = None,
) -> VideoFacts:
    """The :class:`VideoFacts` of a dataset video (type and intervals for MC questions);
    ``intervals`` (seconds) replace the video's own (:func:`anomaly_intervals`). A layout's
    file video without frame count or rate reads them from the file."""
    if not ((n_frames or video.n_frames) and (fps or video.fps)) and hasattr(video, "load_meta"):
        video.load_meta()
    fps = fps or video.fps
    n = n_frames or video.n_frames
    kind = NORMAL if not video.is_anomalous else video.info.get("anomaly_type", video.label)
    if intervals is None:
        intervals = video_seconds(video) if video.is_anomalous else ()
    return VideoFacts(
        video_id=video.id,
        duration=float(n) / float(fps),
        anomaly_type=kind,
        intervals=tuple(intervals),
    )


def questions(
    video: Any,
    count: int,
    class_names: Sequence[str],
    intervals: Sequence[tuple[float, float]] | None = None,
) -> list[MCQuestion]:
    """``count`` MC questions of a video (different distractors and option orders), seeded by
    the video id and the question number (``intervals``: see :func:`facts`)."""
    f = facts(video, intervals=intervals)
    base = zlib.crc32(f.video_id.encode())
    return [multiple_choice(f, class_names, seed=base * 16 + q) for q in range(count)]


def human_text(question: MCQuestion, tetg_sentence: str | None) -> str:
    """The human turn: the video marker, TETG's sentence (when used) and the options."""
    return human_turn(question.prompt(), tetg_sentence)


def synth_of(video: Any) -> Any:
    """The :class:`~vau_jax.data.synthvad.types.SynthVideo` of a SynthVAD dataset video (its
    record decoded: frames, tracks, captions), or None for a video without one."""
    if not hasattr(video, "record"):
        return None
    from vau_jax.data.synthvad import from_record

    return from_record(video.record())


def captions_of(video: Any, synth: Any = None) -> tuple[tuple[float, float, str], ...]:
    """A video's caption segments: its UCA captions, or for a SynthVAD record the per-clip
    captions SynthVAD writes as UCA (:func:`vau_jax.data.synthvad.captions.uca_segments`).
    ``synth``: the video's :func:`synth_of`, when the caller has it (else decoded here)."""
    if video.captions:
        return tuple(video.captions)
    synth = synth_of(video) if synth is None else synth
    if synth is not None:
        from vau_jax.data.synthvad.captions import uca_segments

        return tuple(uca_segments(synth))
    return ()


def _with_prior(conv: list[dict[str, str]], prior: str | None) -> list[dict[str, str]]:
    """TETG's sentence after the video marker of the first human turn (as at evaluation)."""
    from vau_jax.data import templates as T

    if not prior or T.VIDEO_MARKER not in conv[0]["value"]:
        return conv
    first = conv[0]["value"].replace(f"{T.VIDEO_MARKER}\n", f"{T.VIDEO_MARKER}\n{prior}\n", 1)
    return [{**conv[0], "value": first}, *conv[1:]]


def instruction_rows(method: Any) -> list[dict[str, np.ndarray]]:
    """VA-GPT's stage 1-2 training rows (its supplementary §1.1), from the train videos'
    caption clips: per clip a three-turn conversation ending with "Are there any anomalies?"
    (:mod:`vau_jax.data.caption_qa`), mixed per video with video QA, single-frame QA and
    text-only dialogue (``config.train_data``: how many of each per video / per clip). TETG's
    sentence precedes the first question of every video conversation. The generator is
    ``config.train_data.generator`` (``"template"``; pluggable). No multiple-choice question
    about anomalies or times; ``train_data.object_mc`` adds lettered questions about the
    video's objects (:func:`object_choices`); ``train_data.mc_letter_weight`` weights the
    letter token of every lettered answer (:func:`vau_jax.data.chat.letter_weighted_row`)."""
    from vau_jax.data.caption_qa import TemplateQA, caption_at, clips_from_captions
    from vau_jax.data.formats.record import FormatError

    c, mix = method.config, method.config.train_data
    gens = {"template": TemplateQA}
    if str(mix.generator) not in gens:
        raise ValueError(f"train_data.generator={mix.generator!r}; choose from {sorted(gens)}")
    gen = gens[str(mix.generator)]()
    videos = method.dataset.split("train")
    rows, too_long, total = [], [], 0
    objects_per_video = int(mix.get("object_mc", 0))
    # ours: the letter token of every lettered answer (object questions, replayed text
    # multiple choice) weighted, as text pretraining's mc_letter_weight; 1 = unweighted
    weight = float(mix.get("mc_letter_weight", 1.0))
    for i, (v, iv) in enumerate(zip(videos, anomaly_intervals(videos))):
        # a SynthVAD record is decoded once, for its captions and its object questions
        synth = synth_of(v) if objects_per_video or not v.captions else None
        caps = captions_of(v, synth)
        if not caps:
            raise FormatError(
                f"video {v.id!r}: no captions; VA-GPT trains from clip captions (UCA JSON "
                "UCFCrime_Train.json beside the dataset, or SynthVAD's own)"
            )
        f = facts(v, intervals=iv)
        prior, _ = method.tetg_sentence("train", i)
        seed = zlib.crc32(v.id.encode())
        rng = np.random.default_rng(seed)
        convs: list[list[dict[str, str]]] = []
        for k, clip in enumerate(clips_from_captions(caps, f.intervals)):
            convs += [gen.clip(clip, f.anomaly_type, seed * 64 + k)] * int(mix.clip)
        description = v.info.get("event_description") or " ".join(s for _, _, s in caps)
        for k in range(int(mix.video)):
            convs.append(gen.video(description, f.anomaly_type, f.intervals, seed * 64 + 30 + k))
        for k in range(int(mix.frame)):
            t = float(rng.uniform(0.0, f.duration))
            convs.append(gen.frame(t, caption_at(caps, t) or caps[-1][2], seed * 64 + 40 + k))
        for k in range(int(mix.text)):
            s, e, sentence = caps[int(rng.integers(len(caps)))]
            inside = any(min(e, b) > max(s, a) for a, b in f.intervals)
            convs.append(gen.text(sentence, inside, f.anomaly_type, seed * 64 + 50 + k))
        convs = [_with_prior(conv, prior) for conv in convs]
        if objects_per_video:
            objects = object_choices(v, objects_per_video, seed * 64 + 60, answer_style(c), synth)
            keep = bool(mix.get("object_mc_prior", True))
            convs += [_with_prior(conv, prior if keep else None) for conv in objects]
        for k, conv in enumerate(convs):
            total += 1
            try:
                row = conversation_row(
                    method.tok,
                    c,
                    conv,
                    i,
                    method.num_video_tokens,
                    f"{v.id} instruction {k}",
                    method.query_tok,
                )
            except TooLongError as e:
                too_long.append(e)
                continue
            if weight != 1.0:
                row = letter_weighted_row(method.tok, row, conv, weight)
            rows.append(row)
    _check_dropped(too_long, total)
    if c.llm == "tiny" and c.base_llm.enabled:  # the tiny LLM's general skills (replay_rows)
        prior = float(mix.get("text_replay_prior", 0.0)) if c.use_tetg else 0.0
        prior_mc = float(mix.get("text_replay_prior_mc", 0.0)) if c.use_tetg else 0.0
        fraction = float(mix.get("text_replay", 0.0))
        rows += replay_rows(method, len(rows), fraction, prior, prior_mc, weight)
    return rows


def answer_style(config: Any) -> str:
    """How object questions are answered: as the tiny LLM's base video LLM learnt them
    (:func:`vau_jax.methods.pretrain.text_llm.object_answer_style`); ``"letter"`` for
    other LLMs."""
    from vau_jax.methods.pretrain.text_llm import object_answer_style

    base = config.get("base_llm", None)
    text = base.get("text_pretrain", None) if base is not None else None
    if config.get("llm", "tiny") != "tiny" or text is None:
        return "letter"
    return object_answer_style(text)


def check_object_mc(config: Any, dataset: Any) -> None:
    """Raises :class:`~vau_jax.cli.ConfigError` when ``train_data.object_mc`` asks for object
    questions on a dataset whose train videos have no object tracks (only SynthVAD has
    them), before anything is built."""
    n = int(config.get("train_data", {}).get("object_mc", 0))
    train = dataset.split("train") if n else []
    if train and not hasattr(train[0], "record"):
        from vau_jax.cli import ConfigError

        raise ConfigError(
            f"--config.train_data.object_mc={n}: object questions need SynthVAD's object "
            f"tracks, and dataset {dataset.name!r} has none; set it to 0"
        )


def object_choices(
    video: Any, n: int, seed: int, style: str, synth: Any = None
) -> list[list[dict[str, str]]]:
    """``train_data.object_mc`` (ours): up to ``n`` four-option questions about ``video``'s
    objects, their place and motion (:func:`vau_jax.data.object_qa.choice_conversations`, the
    base video LLM's general video multiple choice, as the A-OKVQA rows of LLaMA-VID's
    instruction data), asked about a *train* video. Never about anomalies or times, so no
    form of the evaluation's questions. Needs SynthVAD videos (their object tracks); raises
    :class:`~vau_jax.data.formats.record.FormatError` for a video without them. ``synth``:
    the video's :func:`synth_of`, when the caller has it (else decoded here)."""
    from vau_jax.data.formats.record import FormatError
    from vau_jax.data.object_qa import choice_conversations

    synth = synth_of(video) if synth is None else synth
    if synth is None:
        raise FormatError(
            f"video {video.id!r}: train_data.object_mc asks about object tracks, which only "
            "SynthVAD videos have; set --config.train_data.object_mc=0 for this dataset"
        )
    return choice_conversations(synth, seed, answer_style=style)[:n]


#: The largest fraction of training conversations that may be left out for exceeding
#: ``max_length`` before :func:`instruction_rows` refuses (raise ``max_length`` instead).
MAX_DROPPED_FRACTION = 0.02


def _check_dropped(too_long: list[Any], total: int) -> None:
    """Logs the conversations left out for length; raises when more than
    :data:`MAX_DROPPED_FRACTION` of ``total`` are."""
    if not too_long:
        return
    worst = max(too_long, key=lambda e: e.length)
    msg = (
        f"{len(too_long)} of {total} training conversations are longer than max_length="
        f"{worst.max_length} tokens (longest: {worst.source}, {worst.length})"
    )
    if len(too_long) > MAX_DROPPED_FRACTION * total:
        raise ValueError(f"{msg}; raise max_length")
    logging.warning("%s: left out", msg)
