"""SynthVAD videos as flat records: the tfds feature spec and the record <-> video mapping.

A record is what ``tfds.data_source`` returns for one example (numpy arrays, text as
``bytes``) and what :class:`~vau_jax.data.synthvad.source.SynthVADSource` yields. Tracks are
stored as a table ``track_rows`` int32 [R, 6] = ``track_id, frame, x1, y1, x2, y2`` (the
RBDC/TBDC ground-truth layout) plus per-track ``track_kind`` (index into ``TRACK_KINDS``) and
``track_anomalous``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vau_jax.data.synthvad.types import SynthConfig, SynthVideo, Track

TRACK_KINDS: tuple[str, ...] = ("person", "vehicle", "object", "fire", "explosion")
TEXT_KEYS = ("video_id", "anomaly_type", "spatial_word", "scene_description", "event_description")


def features(config: SynthConfig):
    """The ``tfds.features.FeaturesDict`` of one record at ``config``'s frame size."""
    import tensorflow_datasets as tfds  # imported lazily: heavy, only the builder needs it

    f = tfds.features
    h, w = config.height, config.width
    zlib = f.Encoding.ZLIB
    return f.FeaturesDict(
        {
            "video_id": f.Text(),
            "seed": f.Scalar(dtype=np.int64),
            # Raw bytes: camera noise leaves zlib 16% on frames for ~0.1 s per video, more
            # than rendering one; the masks (mostly zeros) shrink 60x and stay compressed.
            "frames": f.Tensor(shape=(None, h, w, 3), dtype=np.uint8, encoding=f.Encoding.BYTES),
            "fps": f.Scalar(dtype=np.float32),
            "labels": f.Tensor(shape=(None,), dtype=np.uint8),
            "anomaly_type": f.Text(),
            "intervals": f.Tensor(shape=(None, 2), dtype=np.float32),
            "track_kind": f.Tensor(shape=(None,), dtype=np.int32),
            "track_anomalous": f.Tensor(shape=(None,), dtype=np.uint8),
            "track_rows": f.Tensor(shape=(None, 6), dtype=np.int32),
            "masks": f.Tensor(shape=(None, h, w), dtype=np.uint8, encoding=zlib),
            "spatial_word": f.Text(),
            "scene_description": f.Text(),
            "event_description": f.Text(),
            "frame_captions": f.Sequence(f.Text()),
        }
    )


def to_record(video: SynthVideo) -> dict[str, Any]:
    """The record of ``video``, equal to what the tfds builder's data source returns."""
    rows = [
        np.concatenate(
            [np.full((len(tr.frames), 1), tr.track_id), tr.frames[:, None], tr.boxes], axis=1
        )
        for tr in video.tracks
    ]
    return {
        "video_id": video.video_id.encode(),
        "seed": int(video.seed),
        "frames": video.frames,
        "fps": float(np.float32(video.fps)),
        "labels": video.labels,
        "anomaly_type": video.anomaly_type.encode(),
        "intervals": video.intervals.astype(np.float32).reshape(-1, 2),
        "track_kind": np.array([TRACK_KINDS.index(tr.kind) for tr in video.tracks], np.int32),
        "track_anomalous": np.array([tr.anomalous for tr in video.tracks], np.uint8),
        "track_rows": np.concatenate(rows).astype(np.int32).reshape(-1, 6)
        if rows
        else np.zeros((0, 6), np.int32),
        "masks": video.masks,
        "spatial_word": video.spatial_word.encode(),
        "scene_description": video.scene_description.encode(),
        "event_description": video.event_description.encode(),
        "frame_captions": [c.encode() for c in video.frame_captions],
    }


def to_example(video: SynthVideo) -> dict[str, Any]:
    """The example given to the tfds writer (text as ``str``)."""
    rec = to_record(video)
    for k in TEXT_KEYS:
        rec[k] = rec[k].decode()
    rec["frame_captions"] = list(video.frame_captions)
    return rec


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def from_record(record: dict[str, Any]) -> SynthVideo:
    """Rebuild the :class:`SynthVideo` of a record (from the builder or the grain source)."""
    rows = np.asarray(record["track_rows"], np.int32).reshape(-1, 6)
    tracks = []
    for i, (kind, anomalous) in enumerate(zip(record["track_kind"], record["track_anomalous"])):
        mine = rows[rows[:, 0] == i]
        tracks.append(
            Track(i, TRACK_KINDS[int(kind)], mine[:, 1].copy(), mine[:, 2:].copy(), bool(anomalous))
        )
    return SynthVideo(
        video_id=_text(record["video_id"]),
        seed=int(record["seed"]),
        frames=np.asarray(record["frames"]),
        fps=float(record["fps"]),
        labels=np.asarray(record["labels"]),
        anomaly_type=_text(record["anomaly_type"]),
        intervals=np.asarray(record["intervals"], np.float32).reshape(-1, 2),
        tracks=tracks,
        masks=np.asarray(record["masks"]),
        spatial_word=_text(record["spatial_word"]),
        scene_description=_text(record["scene_description"]),
        event_description=_text(record["event_description"]),
        frame_captions=[_text(c) for c in record["frame_captions"]],
    )
