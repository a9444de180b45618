"""SynthVAD: procedurally rendered surveillance-like videos with full anomaly ground truth.

    from vau_jax.data import synthvad
    video = synthvad.render_video(seed=3, config=synthvad.SynthConfig())   # one SynthVideo
    source = synthvad.SynthVADSource("train", 256)       # grain source, renders on the fly
    synthvad.prepare(data_dir, "test", 64, config)        # tfds ArrayRecord, built once
    ds = synthvad.data_source(data_dir, "test", 64, config)

Records (``source[i]``, ``ds[i]``) map back to videos with :func:`from_record`.
``python -m vau_jax.data.synthvad`` writes mp4 + UCF-Crime/XD-Violence/UBnormal annotations.
"""

from typing import Any

from vau_jax.data.synthvad.records import TRACK_KINDS, from_record, to_record
from vau_jax.data.synthvad.render import render_video
from vau_jax.data.synthvad.source import SynthVADSource, render_split_video
from vau_jax.data.synthvad.splits import anomaly_type_at, split_seeds, video_id
from vau_jax.data.synthvad.types import (
    ANOMALY_TYPES,
    NORMAL,
    SPATIAL_WORDS,
    SynthConfig,
    SynthVideo,
    Track,
)

_LAZY = {"prepare", "data_source", "SynthVAD", "builder_config"}  # need tensorflow_datasets


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from vau_jax.data.synthvad import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ANOMALY_TYPES",
    "NORMAL",
    "SPATIAL_WORDS",
    "TRACK_KINDS",
    "SynthConfig",
    "SynthVADSource",
    "SynthVideo",
    "Track",
    "anomaly_type_at",
    "from_record",
    "render_split_video",
    "render_video",
    "split_seeds",
    "to_record",
    "video_id",
    *sorted(_LAZY),
]
