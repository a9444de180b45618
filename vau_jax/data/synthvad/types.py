"""SynthVAD record types: the configuration and one rendered video with its ground truth.

This is the shared interface other modules (formats, instruct, pipelines, methods) read.
Units: frame indices are 0-based; intervals are in seconds, half-open ``[start, end)``;
boxes are inclusive pixel boxes ``x1, y1, x2, y2``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ANOMALY_TYPES: tuple[str, ...] = (
    "running",
    "fighting",
    "falling",
    "explosion",
    "fire",
    "vehicle",
    "abandoned_object",
)
NORMAL = "normal"
SPATIAL_WORDS: tuple[str, ...] = ("top", "bottom", "left", "right", "centre")
DOMAINS: tuple[str, ...] = ("default", "shifted")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """How SynthVAD videos are rendered (frozen, hashable, JSON-able via ``asdict``).

    Attributes:
      height, width: frame size in pixels (64 tiny default; 224 option). Even numbers.
      fps: frames per second written into the metadata and used for timing.
      min_seconds, max_seconds: video length range in seconds (uniform per video).
      anomaly_prob: probability that a video contains an anomaly.
      anomaly_types: the anomaly types drawn from (uniformly).
      min_walkers, max_walkers: number of normal walkers in the scene.
      domain: ``"default"`` or ``"shifted"``: another look for cross-domain tests (other
        ground / paving / wall palettes, stronger ground texture, stronger camera noise,
        people 1.3 times larger and faster); the events themselves are drawn the same way.
    """

    height: int = 64
    width: int = 64
    fps: float = 8.0
    min_seconds: float = 6.0
    max_seconds: float = 16.0
    anomaly_prob: float = 0.5
    anomaly_types: tuple[str, ...] = ANOMALY_TYPES
    min_walkers: int = 3
    max_walkers: int = 6
    domain: str = "default"

    def __post_init__(self) -> None:
        if self.height % 2 or self.width % 2 or min(self.height, self.width) < 32:
            raise ValueError(
                f"SynthConfig: height/width must be even and >= 32, got {self.height}x{self.width}"
            )
        if not 0.0 < self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"SynthConfig: need 0 < min_seconds <= max_seconds, got "
                f"{self.min_seconds}, {self.max_seconds}"
            )
        if not 0.0 <= self.anomaly_prob <= 1.0:
            raise ValueError(
                f"SynthConfig: anomaly_prob must be in [0, 1], got {self.anomaly_prob}"
            )
        object.__setattr__(self, "anomaly_types", tuple(self.anomaly_types))  # stay hashable
        unknown = [t for t in self.anomaly_types if t not in ANOMALY_TYPES]
        if unknown or not self.anomaly_types:
            raise ValueError(
                f"SynthConfig: anomaly_types must be a non-empty subset of {ANOMALY_TYPES}, "
                f"got unknown {unknown}"
            )
        if self.domain not in DOMAINS:
            raise ValueError(f"SynthConfig: domain must be one of {DOMAINS}, got {self.domain!r}")
        if not 1 <= self.min_walkers <= self.max_walkers:
            raise ValueError(
                f"SynthConfig: need 1 <= min_walkers <= max_walkers, got "
                f"{self.min_walkers}, {self.max_walkers}"
            )


@dataclasses.dataclass
class Track:
    """One object's trajectory.

    Attributes:
      track_id: unique within the video (equals its index in ``SynthVideo.tracks``).
      kind: "person" | "vehicle" | "object" | "fire" | "explosion".
      frames: int32 [M] frame indices where the object is visible (sorted).
      boxes: int32 [M, 4] inclusive pixel boxes x1, y1, x2, y2 (its mask's bounding box).
      anomalous: this object is (part of) the anomaly.
    """

    track_id: int
    kind: str
    frames: np.ndarray
    boxes: np.ndarray
    anomalous: bool


@dataclasses.dataclass
class SynthVideo:
    """One rendered video and its ground truth.

    Attributes:
      video_id: e.g. "test_000012".
      seed: the seed it was rendered from.
      frames: uint8 [T, H, W, 3].
      fps: frames per second.
      labels: uint8 [T], 1 = anomalous frame.
      anomaly_type: "normal" or one of ``ANOMALY_TYPES``.
      intervals: float32 [K, 2] anomalous intervals in seconds, half-open [start, end);
        frame t is anomalous iff ``start <= t / fps < end`` for some interval.
      tracks: the objects; ``masks`` value ``1 + i`` is ``tracks[i]``.
      masks: uint8 [T, H, W], 0 background, else 1 + index into ``tracks``.
      spatial_word: "top" | "bottom" | "left" | "right" | "centre" ("" if normal), of the
        mean centre of the anomalous objects' boxes over anomalous frames (rule:
        ``text.spatial_word``: "centre" within the middle third, else the dominant side).
      scene_description: template description of the scene.
      event_description: appearance and trajectory of the event (or of normal activity).
      frame_captions: per-frame short caption, len T.
    """

    video_id: str
    seed: int
    frames: np.ndarray
    fps: float
    labels: np.ndarray
    anomaly_type: str
    intervals: np.ndarray
    tracks: list[Track]
    masks: np.ndarray
    spatial_word: str
    scene_description: str
    event_description: str
    frame_captions: list[str]

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    def frame_intervals(self) -> np.ndarray:
        """int32 [K, 2] anomalous intervals as 0-based half-open frame ranges ``[s, e)``."""
        return label_runs(self.labels)


def label_runs(labels: np.ndarray) -> np.ndarray:
    """int32 [K, 2] runs of non-zero entries of a [T] label vector, half-open ``[s, e)``."""
    edges = np.flatnonzero(np.diff(np.r_[0, (np.asarray(labels) != 0).astype(np.int8), 0]))
    return edges.reshape(-1, 2).astype(np.int32)
