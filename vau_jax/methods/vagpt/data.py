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

Rows are tokenised chats (:func:`chat_row`): the human turn is ``<video>`` + (TETG's
sentence) + the lettered options of a multiple-choice question; the answer is the correct
option line ("B. A person running from 2.0s to 4.5s"); ``video`` indexes the split's
features, attached per batch (:class:`AttachVisual`).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from vau_jax.data.chat import tokenize_chat
from vau_jax.data.frames import FrameSpec
from vau_jax.data.benchmark import MCQuestion, human_turn, multiple_choice
from vau_jax.data.instruct import NORMAL, VideoFacts
from vau_jax.methods.base import standardise


def frame_specs(config: Any) -> dict[str, FrameSpec]:
    """The frame specs of the three stores: ``cls`` (every frame), ``visual`` and ``dino``
    (``frames_per_video`` uniform samples; DINOv2 sees pixels, CLIP what it was trained on)."""
    fps = float(config.get("fps", None) or config.synthvad.fps)
    size = int(config.frame_size)
    mode = "rgb" if config.preset == "paper" else str(config.clip_pretrain.get("input", "rgb"))
    s = int(config.frames_per_video)
    return {
        "cls": FrameSpec(fps=fps, size=size, input=mode),
        "visual": FrameSpec(fps=fps, size=size, input=mode, count=s),
        "dino": FrameSpec(fps=fps, size=size, input="rgb", count=s),
    }


def make_encoders(config: Any, inference: bool = False) -> dict[str, Any]:
    """The frozen encoders of the three stores: the CLIP (tiny: pretrained when missing,
    unless ``inference``; paper: the converted ``vision`` checkpoint) for ``cls`` and
    ``visual``, and the DINOv2 for ``dino`` (tiny: seeded random weights on the CLIP's
    patch grid; paper: the converted ``patch_encoder``)."""
    from vau_jax import encoders

    c = config
    if c.preset == "paper":
        ck = c.paper_checkpoints
        clip_cls = encoders.from_checkpoint(str(ck.vision), outputs=("cls",), batch_size=32)
        clip_vis = encoders.from_checkpoint(str(ck.vision), outputs=("patches",), batch_size=32)
        dino = encoders.from_checkpoint(str(ck.patch_encoder), outputs=("patches",), batch_size=32)
        return {"cls": clip_cls, "visual": clip_vis, "dino": dino}
    from vau_jax.methods.pretrain import clip

    if inference:
        path = clip.checkpoint_dir(c.clip_pretrain)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: the run's frozen tiny CLIP is missing")
    size = int(c.frame_size)
    dino = encoders.from_registry(
        c.patch_encoder,
        seed=int(c.patch_encoder_seed),
        overrides={"image_size": size, "patch_size": size // int(c.patch_encoder_grid)},
        outputs=("patches",),
        batch_size=64,
    )
    return {
        "cls": clip.frozen_clip(c.clip_pretrain, ("cls",), batch_size=128),
        "visual": clip.frozen_clip(c.clip_pretrain, ("patches",), batch_size=64),
        "dino": dino,
    }


@dataclasses.dataclass
class SplitFeatures:
    """The three feature sets of one split (random access per video)."""

    cls: Any
    visual: Any
    dino: Any

    def __len__(self) -> int:
        return len(self.cls)

    def video(self, i: int) -> dict[str, np.ndarray]:
        """Video ``i``: ``cls [T, Dc]``, ``visual [S, N, Dc]`` (standardised, float32),
        ``dino [S, N, Dd]`` float32, ``timestamps [T]``, ``indices [T]``, ``sample_times [S]``."""
        c, v, d = self.cls[i], self.visual[i], self.dino[i]
        return {
            "cls": standardise(c["cls"]),
            "timestamps": c["timestamps"],
            "indices": c["indices"],
            "visual": standardise(v["patches"]),
            "dino": np.asarray(d["patches"], np.float32),
            "sample_times": v["timestamps"],
        }


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


def encode_query(tok: Any, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The Q-Former's instruction text: ids ``[length]`` int32 (truncated) + mask bool."""
    ids = list(tok.encode(text))[:length]
    out = np.full((length,), tok.pad_id, np.int32)
    out[: len(ids)] = ids
    mask = np.zeros((length,), bool)
    mask[: len(ids)] = True
    return out, mask


def chat_row(
    tok: Any,
    config: Any,
    human: str,
    query: str,
    answer: str | None,
    video: int,
    num_video_tokens: int,
    source: str,
    max_length: int | None = None,
    query_tok: Any = None,
) -> dict[str, np.ndarray]:
    """One tokenised VA-GPT row, shared by training, evaluation and prediction.

    Args:
      human: the human turn (``<video>`` marker, TETG's sentence, the lettered prompt).
      query: the Q-Former's instruction text (the question).
      answer: the assistant's line; ``None`` -> a left-padded generation prompt.
      video: index of the video's features in its split.
      max_length: padded length ``S`` (default ``config.max_length``); a longer row raises a
        ``ValueError`` naming ``source``.
      query_tok: the Q-Former's tokenizer (default ``tok``; the paper preset's BERT vocab).

    Returns: ``input_ids``, ``attention_mask``, ``loss_mask``, ``video_mask`` ``[S]``;
    ``query_ids``, ``query_mask`` ``[config.max_query_length]``; ``video`` int32 scalar.
    """
    conv = [{"from": "human", "value": human}]
    if answer is not None:
        conv.append({"from": "gpt", "value": answer})
    ex = tokenize_chat(
        tok,
        conv,
        int(config.max_length if max_length is None else max_length),
        str(config.chat_format),
        num_video_tokens=num_video_tokens,
        add_generation_prompt=answer is None,
        left_pad=answer is None,
        system=config.system_prompt,
        source=source,
    )
    ex["query_ids"], ex["query_mask"] = encode_query(
        query_tok or tok, query, int(config.max_query_length)
    )
    ex["video"] = np.int32(video)
    return ex


def training_example(
    tok: Any,
    config: Any,
    question: MCQuestion,
    tetg_sentence: str | None,
    video: int,
    num_video_tokens: int,
    query_tok: Any = None,
) -> dict[str, np.ndarray]:
    """One tokenised training example (answer = the correct option line)."""
    return chat_row(
        tok,
        config,
        human_text(question, tetg_sentence),
        question.question,
        question.conversation()[1]["value"],
        video,
        num_video_tokens,
        source=f"{question.video_id} (MC training example)",
        query_tok=query_tok,
    )


class AttachVisual(grain.transforms.Map):
    """Adds the example's video features ``visual [S, N, Dc]`` and ``dino [S, N, Dd]``
    (float32) read by its ``video`` index from the split's feature stores (ArrayRecord)."""

    def __init__(self, feats: SplitFeatures):
        self.feats = feats

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        v = int(element["video"])
        return {
            **element,
            "visual": standardise(self.feats.visual[v]["patches"]),
            "dino": np.asarray(self.feats.dino[v]["patches"], np.float32),
        }


def attach_batch(batch: dict[str, np.ndarray], feats: SplitFeatures) -> dict[str, np.ndarray]:
    """A row batch with each row's ``visual`` / ``dino`` features added (``video`` indexes
    ``feats``)."""
    vids = [int(v) for v in batch["video"]]
    return {
        **batch,
        "visual": np.stack([standardise(feats.visual[v]["patches"]) for v in vids]),
        "dino": np.stack([np.asarray(feats.dino[v]["patches"], np.float32) for v in vids]),
    }
