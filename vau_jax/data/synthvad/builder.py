"""The tfds builder that writes SynthVAD splits as ArrayRecord (no TensorFlow needed).

One builder config per ``(SynthConfig, split, num_videos)``, named from them, so preparing
another split or size never collides with an existing one::

    builder = prepare("/data/tfds", "test", 64, SynthConfig())   # builds once, then no-op
    ds = data_source("/data/tfds", "test", 64, SynthConfig())    # random access, numpy
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds

from vau_jax.data.synthvad.parallel import map_videos
from vau_jax.data.synthvad.records import features, to_example
from vau_jax.data.synthvad.source import render_split_video
from vau_jax.data.synthvad.splits import split_seeds, video_id
from vau_jax.data.synthvad.types import SynthConfig
from vau_jax.faults import kill_point


@dataclasses.dataclass(eq=False)
class SynthVADConfig(tfds.core.BuilderConfig):
    """A builder config holding the render config and which split to write."""

    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)
    split: str = "test"
    num_videos: int = 8


def builder_config(split: str, num_videos: int, config: SynthConfig) -> SynthVADConfig:
    """Config named ``<split><n>_<H>x<W>_<hash of the SynthConfig>``."""
    split_seeds(split, num_videos)  # validates
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    name = f"{split}{num_videos}_{config.height}x{config.width}_{digest.hexdigest()[:10]}"
    return SynthVADConfig(
        name=name,
        description=f"SynthVAD {split} x{num_videos}: {config}",
        synth=config,
        split=split,
        num_videos=num_videos,
    )


class _LocalInfo(tfds.core.DatasetInfo):
    """SynthVAD's ``DatasetInfo``: the dataset is rendered here and never published on the
    TFDS bucket, so the bucket look-up tfds runs while no split is prepared yet is skipped.
    (tfds' look-up makes a ``/tmp/tmp*tfds`` directory first and, finding nothing, leaves it
    behind: one empty directory per builder constructed before its data existed.)"""

    def initialize_from_bucket(self) -> None:
        """Nothing to fetch: SynthVAD's info comes from the code until a split is written."""


class SynthVAD(tfds.core.GeneratorBasedBuilder):
    """SynthVAD: rendered surveillance-like videos with anomaly ground truth (see ``records``)."""

    name = "synthvad"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "First release.",
        "1.1.0": "Frames stored as raw bytes instead of zlib (same values; faster to write).",
    }
    BUILDER_CONFIGS = [builder_config("test", 8, SynthConfig())]
    # Nothing is downloaded. Setting these skips tfds' look-up of checksum files next to the
    # code, which needs the `importlib_resources` backport for editable installs.
    code_path = None
    url_infos = None

    def _info(self) -> tfds.core.DatasetInfo:
        cfg: SynthVADConfig = self.builder_config
        return _LocalInfo(
            builder=self,
            description="Procedurally rendered surveillance-like videos with frame labels, "
            "anomaly intervals, object tracks, masks and template descriptions.",
            features=features(cfg.synth),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(synth_config=dataclasses.asdict(cfg.synth)),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        cfg: SynthVADConfig = self.builder_config
        return {cfg.split: self._generate_examples(cfg.split, cfg.num_videos, cfg.synth)}

    def _generate_examples(
        self, split: str, num_videos: int, config: SynthConfig
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, example in enumerate(render_examples(split, num_videos, config)):
            yield video_id(split, i), example
            kill_point("render")  # (tests) mid-split: tfds is still writing


def _render_example(split: str, index: int, config: SynthConfig) -> dict[str, Any]:
    return to_example(render_split_video(split, index, config))


def render_examples(
    split: str, num_videos: int, config: SynthConfig, workers: int | None = None
) -> Iterator[dict[str, Any]]:
    """The tfds examples of videos ``0 .. num_videos-1`` of ``split``, in order, rendered by
    :func:`map_videos` (``workers`` processes; the bytes are identical for any number)."""
    return map_videos(_render_example, split, num_videos, config, workers)


def prepare(
    data_dir: str, split: str, num_videos: int, config: SynthConfig | None = None
) -> SynthVAD:
    """Write ``split`` (``num_videos`` videos) as ArrayRecord under ``data_dir`` once.

    A no-op when that dataset is already complete there. Returns the builder.
    """
    config = SynthConfig() if config is None else config
    builder = SynthVAD(
        config=builder_config(split, num_videos, config),
        data_dir=data_dir,
        file_format="array_record",
    )
    builder.download_and_prepare()
    return builder


def data_source(data_dir: str, split: str, num_videos: int, config: SynthConfig | None = None):
    """Random-access source over a prepared split (``prepare`` first); records as numpy."""
    config = SynthConfig() if config is None else config
    builder = SynthVAD(
        config=builder_config(split, num_videos, config),
        data_dir=data_dir,
        file_format="array_record",
    )
    return builder.as_data_source(split=split)
