"""SynthVAD's ``pretrain`` split: its own seeds (disjoint from train/validation/test), read
through the tfds build like the benchmark splits, and what the tiny CLIP pretrains on."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from vau_jax.data.datasets import synthvad_dataset
from vau_jax.data.synthvad import SynthConfig, SynthVADSource, split_seeds, video_id
from vau_jax.data.synthvad.builder import builder_config
from vau_jax.data.synthvad.splits import SPLIT_OFFSETS, SPLIT_STRIDE

TINY = SynthConfig(min_seconds=1.0, max_seconds=2.0)


def test_pretrain_seeds_are_disjoint_from_every_other_split():
    assert "pretrain" in SPLIT_OFFSETS
    ranges = {s: range(o, o + SPLIT_STRIDE) for s, o in SPLIT_OFFSETS.items()}
    pre = ranges.pop("pretrain")
    for split, r in ranges.items():  # whole seed ranges, not only the first videos
        assert pre.stop <= r.start or r.stop <= pre.start, split
    assert split_seeds("pretrain", 3) == [SPLIT_OFFSETS["pretrain"] + i for i in range(3)]
    assert video_id("pretrain", 7) == "pretrain_000007"
    assert builder_config("pretrain", 2, TINY).name.startswith("pretrain2_")


def test_pretrain_videos_differ_from_train_videos_of_the_same_index():
    pre, train = SynthVADSource("pretrain", 1, TINY)[0], SynthVADSource("train", 1, TINY)[0]
    assert pre["seed"] != train["seed"]
    assert pre["video_id"] in (b"pretrain_000000", "pretrain_000000")
    n = min(len(pre["frames"]), len(train["frames"]))
    assert not np.array_equal(pre["frames"][:n], train["frames"][:n])


def test_synthvad_dataset_reads_the_pretrain_split_only_when_asked(tmp_path):
    plain = synthvad_dataset(str(tmp_path), TINY, 0, 0)
    assert set(plain.videos) == {"train", "test"}  # unchanged for every existing caller
    ds = synthvad_dataset(str(tmp_path), TINY, 0, 0, num_pretrain=2)
    videos = ds.split("pretrain")
    assert [v.id for v in videos] == ["pretrain_000000", "pretrain_000001"]
    assert [v.info["seed"] for v in videos] == split_seeds("pretrain", 2)
    assert ds.split("train") == [] and ds.split("test") == []
    val = synthvad_dataset(str(tmp_path), TINY, 0, 0, num_validation=1)
    assert set(val.videos) == {"train", "test", "validation"}
    assert [v.info["seed"] for v in val.split("validation")] == split_seeds("validation", 1)


def test_tiny_clip_pretrains_on_the_pretrain_split_and_refuses_train_and_test():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs"))
    import clip_pretrain as clip_pretrain_config

    from vau_jax.methods.pretrain.clip import ClipPretrain, pretrain_split

    c = clip_pretrain_config.get_config("tiny")
    assert c.split == "pretrain" and pretrain_split(c) == "pretrain"
    for bad in ("train", "test"):
        c.split = bad
        with pytest.raises(ValueError, match="pretrain"):
            ClipPretrain(c)
