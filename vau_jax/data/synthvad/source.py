"""A grain ``RandomAccessDataSource`` that renders SynthVAD videos on the fly."""

from __future__ import annotations

from typing import Any

from vau_jax import timing
from vau_jax.data.synthvad.records import to_record
from vau_jax.data.synthvad.render import render_video
from vau_jax.data.synthvad.splits import anomaly_type_at, split_seeds, video_id
from vau_jax.data.synthvad.types import SynthConfig, SynthVideo


def render_split_video(split: str, index: int, config: SynthConfig) -> SynthVideo:
    """Video ``index`` of ``split``: its seed, id and type follow :mod:`splits`."""
    seed = split_seeds(split, index + 1)[index]
    with timing.phase("render"):
        return render_video(
            seed,
            config,
            anomaly_type=anomaly_type_at(index, config),
            video_id=video_id(split, index),
        )


class SynthVADSource:
    """``len(source) == num_videos``; ``source[i]`` is the record of video i of ``split``.

    Records equal the tfds builder's records read back with ``tfds.data_source`` (same keys,
    values and dtypes; text as ``bytes``). Rendering is deterministic, so grain workers and
    restarts see identical data.
    """

    def __init__(self, split: str, num_videos: int, config: SynthConfig | None = None):
        self.split = split
        self.num_videos = int(num_videos)
        self.config = SynthConfig() if config is None else config
        split_seeds(split, self.num_videos)  # validates split name and size

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self.num_videos:
            raise IndexError(
                f"SynthVADSource({self.split!r}): index {index} out of range [0, {self.num_videos})"
            )
        return to_record(render_split_video(self.split, index, self.config))

    def __repr__(self) -> str:
        return (
            f"SynthVADSource(split={self.split!r}, num_videos={self.num_videos}, "
            f"config={self.config})"
        )
