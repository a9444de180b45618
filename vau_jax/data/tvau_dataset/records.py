"""T-VAU stage-1 data: frame records, timelines, video inputs, annotations, and the
size/colour words of a record (package docstring: :mod:`vau_jax.data.tvau_dataset`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from vau_jax.data import instruct
from vau_jax.data.formats.record import VideoRecord

DATASETS = ("ubnormal", "shanghaitech")
SPLITS = ("train", "validation", "test", "all")  # validation: where the layout has one
DROP_REASONS = ("static_moves", "running_still")
SIZES = ("small", "medium", "large")
FORMAT = "vau_jax.tvau/1"


@dataclasses.dataclass(frozen=True)
class FrameRecord:
    """One object seen on one sampled frame (stage 1). ``box``: inclusive x1, y1, x2, y2."""

    frame: int
    object_id: int
    kind: str
    colour: str | None
    size: str
    action: str
    box: tuple[int, int, int, int]
    spatial: str
    anomalous: bool | None = None


@dataclasses.dataclass
class Timeline:
    """One object over the video (stage 2): ``frames`` int [M], ``boxes`` int [M, 4]."""

    object_id: int
    kind: str
    colour: str | None
    size: str
    action: str
    anomalous: bool | None
    frames: np.ndarray
    boxes: np.ndarray
    spatial_word: str
    trajectory: str
    displacement: float  # net centre shift, in frame sizes (robust ends)


@dataclasses.dataclass
class VideoInput:
    """A dataset video to annotate: its record, split, size, frame truth and SynthVAD meta."""

    record: VideoRecord
    split: str
    fps: float
    n_frames: int
    width: int
    height: int
    has_truth: bool
    synth: dict[str, Any] | None = None  # meta.json entry, plus "config" (SynthConfig dict)

    @property
    def labels(self) -> np.ndarray:
        """uint8 [n_frames] frame labels from the layout's intervals."""
        return self.record.frame_labels(self.n_frames)


@dataclasses.dataclass
class Annotation:
    """Stage-1 output of one video: records, type if the annotator knows it, injections."""

    records: list[FrameRecord]
    anomaly_type: str | None = None
    labels: np.ndarray | None = None  # uint8 [T] when the annotator knows them
    injected: dict[str, int] = dataclasses.field(default_factory=dict)


def size_word(box: tuple[int, ...], width: int, height: int) -> str:
    """small (< 1% of the frame), medium (< 4%) or large, by inclusive box area."""
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) / float(width * height)
    return SIZES[int(area >= 0.01) + int(area >= 0.04)]


def make_record(
    t: int, oid: int, kind: str, colour: str | None, action: str, box, w: int, h: int, **kw
) -> FrameRecord:
    """A :class:`FrameRecord` whose size and spatial words follow from ``box`` in a W x H frame."""
    b = tuple(int(v) for v in box)
    where = instruct.spatial_word_from_box(b, w, h)
    return FrameRecord(int(t), oid, kind, colour, size_word(b, w, h), action, b, where, **kw)


@functools.lru_cache(maxsize=1)
def _palette() -> tuple[list[str | None], np.ndarray]:
    """SynthVAD's named colours, then trousers and skin tones (no name: not counted)."""
    from vau_jax.data.synthvad.actors import BAGS, CARS, SHIRTS, SKINS, TROUSERS

    named = [*SHIRTS, *CARS, *BAGS, *((None, c) for c in (*TROUSERS, *SKINS))]
    return [n for n, _ in named], np.asarray([c for _, c in named], np.float32)


@functools.lru_cache(maxsize=1)
def _palette_words() -> tuple[list[str], np.ndarray]:
    """The palette's distinct colour words, and per palette entry its word's index (-1: no
    word)."""
    names, _ = _palette()
    words = list(dict.fromkeys(n for n in names if n is not None))
    return words, np.asarray([-1 if n is None else words.index(n) for n in names], np.int64)


def colour_word(pixels: np.ndarray, max_dist: float = 60.0) -> str | None:
    """Most frequent nearest named palette colour of uint8 [N, 3] pixels (within
    ``max_dist``; pixels nearest a trousers/skin tone are ignored; a tie goes to the word
    whose first pixel comes first), else ``None``."""
    _, rgb = _palette()
    words, word_of = _palette_words()
    d = np.linalg.norm(pixels.astype(np.float32)[:, None] - rgb[None], axis=-1)  # [N, P]
    nearest = d.argmin(1)
    ids = word_of[nearest[np.take_along_axis(d, nearest[:, None], 1)[:, 0] < max_dist]]
    ids = ids[ids >= 0]  # in pixel order
    if not len(ids):
        return None
    counts = np.bincount(ids, minlength=len(words))
    tied = np.flatnonzero(counts == counts.max())
    if len(tied) > 1:  # the first to appear among the tied words
        tied = tied[np.argsort([int(np.argmax(ids == t)) for t in tied], kind="stable")]
    return words[int(tied[0])]
