"""VAD-LLaMA's data: frame tokens from the feature store -> clip tokens, per video.

Per frame the frozen encoder gives ``M`` tokens (tiny: the CLIP class token + the patch grid
pooled to ``pool × pool``, so ``M = 1 + pool²``; paper: the image Q-Former's 32 queries);
each token is standardised (:func:`vau_jax.methods.base.standardise`). ``F`` consecutive
frames form a clip: ``[F*M, D]`` tokens, the video Q-Former's input. A video of ``T`` frames
has ``ceil(T / F)`` clips; the last is zero-padded.

Pre-extracted snippet features (I3D ``[T, 10, 2048]``, VadCLIP ``[T, 512]``; the
``features`` config) are already one vector per 16-frame snippet: each snippet is a clip of
one token (``F = M = 1``); crops are averaged (``feature_crop = -1``) or one is selected.

Training (weak supervision): one example per video, ``tokens [max_clips, F*M, D]``,
``mask [max_clips]`` and the video-level ``label`` (0/1) only. A video with more than
``max_clips`` clips is represented by ``max_clips`` clips spread uniformly over it. The
examples are read through grain from the store's ArrayRecord shards (:class:`ClipSource`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vau_jax.methods.base import standardise


def frame_tokens(record: dict[str, np.ndarray]) -> np.ndarray:
    """A feature-store record -> standardised frame tokens ``[T, M, D]`` float32.

    ``queries`` (paper: image Q-Former outputs) when present, else ``cls`` (+ ``patches``).
    """
    if "queries" in record:
        return standardise(record["queries"])
    parts = [record["cls"][:, None]]
    if "patches" in record:
        parts.append(record["patches"])
    return standardise(np.concatenate([np.asarray(p, np.float32) for p in parts], 1))


def snippet_tokens(features: np.ndarray, crop: int) -> np.ndarray:
    """Pre-extracted snippet features ``[T, C, D]`` or ``[T, D]`` -> ``[T, 1, D]`` (crops
    averaged when ``crop < 0``, else crop ``crop``), standardised."""
    x = np.asarray(features, np.float32)
    if x.ndim == 3:
        x = x.mean(1) if crop < 0 else x[:, crop]
    if x.ndim != 2:
        raise ValueError(f"snippet features must be [T, D] or [T, C, D], got {features.shape}")
    return standardise(x)[:, None]


def to_clips(tokens: np.ndarray, frames_per_clip: int) -> np.ndarray:
    """Frame tokens ``[T, M, D]`` -> clip tokens ``[ceil(T/F), F*M, D]`` (last clip padded)."""
    t, m, d = tokens.shape
    nc = -(-t // frames_per_clip)
    buf = np.zeros((nc * frames_per_clip, m, d), np.float32)
    buf[:t] = tokens
    return buf.reshape(nc, frames_per_clip * m, d)


def pad_clips(clips: np.ndarray, max_clips: int) -> tuple[np.ndarray, np.ndarray]:
    """``[nc, F*M, D]`` -> ``[max_clips, F*M, D]`` + bool mask ``[max_clips]``; a longer video
    keeps ``max_clips`` clips spread uniformly over it (training only)."""
    nc = len(clips)
    if nc > max_clips:
        clips = clips[np.round(np.linspace(0, nc - 1, max_clips)).astype(int)]
        nc = max_clips
    out = np.zeros((max_clips, *clips.shape[1:]), np.float32)
    out[:nc] = clips
    return out, np.arange(max_clips) < nc


def clips_from_frames(
    tokens: np.ndarray, n_frames: int, frames_per_clip: int, max_clips: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame tokens ``[T, M, D]`` (first ``n_frames`` real) -> padded clips + mask.

    Raises ``ValueError`` when the video has more than ``max_clips`` clips (evaluation never
    subsamples: stream it in chunks instead).
    """
    nc = -(-n_frames // frames_per_clip)
    if nc > max_clips:
        raise ValueError(f"video has {nc} clips > max_clips={max_clips}; raise config.max_clips")
    return pad_clips(to_clips(tokens[:n_frames], frames_per_clip), max_clips)


def with_motion_tokens(tokens: np.ndarray) -> np.ndarray:
    """``[T, M, D]`` -> ``[T, 2M, D]``: each frame's tokens and their change since the
    previous frame (zero for the first), a causal motion cue."""
    prev = np.concatenate([tokens[:1], tokens[:-1]], 0)
    return np.concatenate([tokens, tokens - prev], 1)


class ClipSource:
    """A grain random-access source of training examples over per-video frame features.

    Args:
      features: random-access per-video records (a :class:`~vau_jax.data.features.FeatureSet`
        or a list of pre-extracted arrays wrapped by :class:`SnippetFeatures`).
      labels: video-level labels (0 normal, 1 anomalous), one per video.
      frames_per_clip, max_clips, motion: the clip layout (module docstring).
    """

    def __init__(
        self,
        features: Any,
        labels: Sequence[int],
        frames_per_clip: int,
        max_clips: int,
        motion: bool = False,
    ):
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature records for {len(labels)} labels")
        self.features, self.labels = features, [int(x) for x in labels]
        self.frames_per_clip, self.max_clips, self.motion = frames_per_clip, max_clips, motion

    def __len__(self) -> int:
        return len(self.labels)

    def tokens(self, i: int) -> np.ndarray:
        """Video ``i``'s frame tokens ``[T, M, D]`` (motion tokens appended when set)."""
        rec = self.features[i]
        tok = rec if isinstance(rec, np.ndarray) else frame_tokens(rec)
        return with_motion_tokens(tok) if self.motion else tok

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        clips = to_clips(self.tokens(int(i)), self.frames_per_clip)
        tokens, mask = pad_clips(clips, self.max_clips)
        return {"tokens": tokens, "mask": mask, "label": np.int32(self.labels[int(i)])}


class SnippetFeatures:
    """Pre-extracted snippet features of a list of videos as ``[T, 1, D]`` token arrays."""

    def __init__(self, records: Sequence[Any], crop: int, width: int | None = None):
        self.records, self.crop, self.width = list(records), int(crop), width

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> np.ndarray:
        from vau_jax.data.formats.features import load_features
        from vau_jax.data.formats.record import FormatError

        rec = self.records[int(i)]
        x = load_features(rec)
        if self.width is not None and x.shape[-1] != self.width:
            raise FormatError(
                f"{rec.path}: feature width {x.shape[-1]}, expected {self.width} "
                f"(shape {tuple(x.shape)})"
            )
        return snippet_tokens(x, self.crop)


# ------------------------------------------------------------- pre-extracted snippet features

SNIPPET_FRAMES = 16  # native frames per pre-extracted snippet (I3D / VadCLIP convention)
#: dataset -> its test annotation files (any one present), relative to ``dataset_dir``.
TEST_ANNOTATIONS = {
    "ucf_crime": (
        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
        "Temporal_Anomaly_Annotation.txt",
    ),
    "tad": ("vals.txt", "Temporal_Anomaly_Annotation.txt"),
    "xd_violence": ("annotations.txt",),
}


def feature_dataset(config: Any) -> Any:
    """A :class:`~vau_jax.data.datasets.Dataset` of pre-extracted snippet features.

    ``features_dir`` (default ``<dataset_dir>/features``) holds ``train/`` and ``test/``,
    each a feature layout :func:`vau_jax.data.formats.read_features` knows (``features``:
    ``i3d`` ``<name>_i3d.npy [T, 10, D]`` or ``vadclip`` ``<Class>/<name>__<k>.npy [T, D]``).
    Train videos get their video-level label from the class folder or name; test videos
    their frame intervals from the dataset's test annotation in ``dataset_dir``
    (:data:`TEST_ANNOTATIONS`). Every file's width must be ``feature_width`` (checked on
    the ``.npy`` headers, before anything is trained).
    """
    from vau_jax.data.datasets import Dataset, Video
    from vau_jax.data.formats import read_features, read_tad, read_ucf_crime, read_xd_violence
    from vau_jax.data.formats.record import NORMAL, FormatError, format_error

    name, layout = str(config.dataset), str(config.features)
    if name not in TEST_ANNOTATIONS:
        raise FormatError(
            f"--config.features={layout}: pre-extracted features are read for "
            f"{sorted(TEST_ANNOTATIONS)}, not {name!r}"
        )
    root = str(config.get("dataset_dir", ""))
    feats_root = str(config.get("features_dir", "")) or os.path.join(root, "features")
    ann = next(
        (
            os.path.join(root, a)
            for a in TEST_ANNOTATIONS[name]
            if os.path.isfile(os.path.join(root, a))
        ),
        None,
    )
    if ann is None:
        raise format_error(os.path.join(root, TEST_ANNOTATIONS[name][0]), None, "missing")
    width = int(config.feature_width)
    splits: dict[str, list[Any]] = {}
    records: dict[str, list[Any]] = {}
    for split in ("train", "test"):
        recs = read_features(os.path.join(feats_root, split), layout)
        for r in recs:
            if width and r.extra["feature_shape"][-1] != width:
                raise format_error(
                    r.path,
                    None,
                    f"feature width {r.extra['feature_shape'][-1]}"
                    f", expected {width} (shape {r.extra['feature_shape']})",
                )
        records[split] = recs
    if name == "xd_violence":
        truth = read_xd_violence(ann, test_videos=[r.id for r in records["test"]])
    elif name == "tad":
        truth = read_tad(ann)
    else:
        truth = read_ucf_crime(ann)
    by_id = {t.id: t for t in truth}
    for split, recs in records.items():
        vids = []
        for r in recs:
            gt = by_id.get(r.id) if split == "test" else None
            if split == "test" and gt is None:
                raise format_error(r.path, None, f"test video {r.id!r} has no row in {ann}")
            label = gt.label if gt is not None else r.label
            vids.append(
                Video(
                    id=r.id,
                    split=split,
                    label=label,
                    frame_intervals=tuple(gt.intervals) if gt is not None else (),
                    n_frames=SNIPPET_FRAMES * int(r.extra["n_snippets"]),
                    info={"features": r.path, "feature_record": r},
                )
            )
        splits[split] = vids
    classes = sorted({v.label for vs in splits.values() for v in vs if v.label != NORMAL})
    return Dataset(name, root, splits, tuple(classes), feature_layout=layout)


def snippet_feature_records(config: Any, dataset: Any, split: str) -> list[Any]:
    """The feature records of a split of :func:`feature_dataset` (in video order)."""
    del config
    return [v.info["feature_record"] for v in dataset.split(split)]


def snippet_records(videos: Sequence[Any], feats: Any) -> list[Any]:
    """Ground truth on native frames, ``16·T`` per video (the snippet protocol)."""
    from vau_jax.data.formats.record import VideoRecord

    return [
        VideoRecord(
            id=v.id,
            n_frames=SNIPPET_FRAMES * len(feats[i]),
            label=v.label,
            intervals=[(int(a), int(b)) for a, b in v.frame_intervals],
        )
        for i, v in enumerate(videos)
    ]
