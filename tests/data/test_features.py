"""The feature store: keys, records, reruns, resumption after a kill, packing, grain reads."""

import json
import os
import pickle

import grain
import numpy as np
import pytest

from vau_jax.data.datasets import ArrayVideo
from vau_jax.data.features import (
    FeatureStore,
    decode_record,
    encode_record,
    encode_video,
    encode_videos,
    open_store,
)
from vau_jax.data.frames import FrameSpec
from vau_jax.data.pipeline import PipelineConfig, make_dataset


class CountingEncoder:
    """A deterministic stand-in for a vision tower: mean colour per frame + a patch grid."""

    key = "counting-encoder-v1"
    batch_size = 3

    def __init__(self):
        self.frames_seen = 0

    def __call__(self, frames):
        self.frames_seen += len(frames)
        x = frames.astype(np.float32) / 255.0
        return {"cls": x.mean((1, 2)), "patches": x.reshape(len(x), 4, -1, 3).mean(2)}


def _video(vid, n=10, seed=0, fps=4.0):
    rng = np.random.default_rng(seed)
    return ArrayVideo(
        id=vid, split="test", fps=fps, array=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    )


SPEC = FrameSpec(fps=2.0, size=8)


def test_records_hold_outputs_times_and_sources(tmp_path):
    enc = CountingEncoder()
    videos = [_video("a", 10, 0), _video("b", 7, 1)]
    fs = FeatureStore(str(tmp_path), enc, SPEC, dtype="float32").ensure(videos)
    assert fs.ids == ["a", "b"] and len(fs) == 2
    rec = fs[0]
    assert rec["cls"].shape == (5, 3) and rec["cls"].dtype == np.float32  # 10 frames 4->2 fps
    assert rec["patches"].shape == (5, 4, 3)
    np.testing.assert_array_equal(rec["indices"], [0, 2, 4, 6, 8])
    np.testing.assert_allclose(rec["timestamps"], np.arange(5) / 2.0)
    want = videos[0].array[[0, 2, 4, 6, 8]].astype(np.float32).mean((1, 2)) / 255.0
    np.testing.assert_allclose(rec["cls"], want, rtol=1e-6)


def test_rerun_encodes_nothing_and_new_videos_only(tmp_path):
    enc = CountingEncoder()
    store = FeatureStore(str(tmp_path), enc, SPEC)
    store.ensure([_video("a"), _video("b", seed=1)])
    seen = enc.frames_seen
    fs = store.ensure([_video("b", seed=1), _video("a")])
    assert enc.frames_seen == seen and fs.ids == ["b", "a"]
    np.testing.assert_array_equal(fs[1]["cls"], store.ensure([_video("a")])[0]["cls"])
    store.ensure([_video("c", seed=2), _video("a")])
    assert enc.frames_seen == seen + 5  # only c was encoded
    assert sorted(open_store(store.folder).ids) == ["a", "b", "c"]


def test_same_id_from_two_sources_never_collides(tmp_path):
    store = FeatureStore(str(tmp_path), CountingEncoder(), SPEC)
    one, two = _video("a", seed=0), _video("a", seed=5)  # same id, other content
    a1 = store.ensure([one])[0]["cls"]
    a2 = store.ensure([two])[0]["cls"]
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(store.ensure([one])[0]["cls"], a1)


def test_encoder_or_frame_spec_change_gives_a_new_store(tmp_path):
    class Other(CountingEncoder):
        key = "counting-encoder-v2"

    folders = {
        FeatureStore(str(tmp_path), CountingEncoder(), SPEC).folder,
        FeatureStore(str(tmp_path), Other(), SPEC).folder,
        FeatureStore(str(tmp_path), CountingEncoder(), FrameSpec(fps=1.0, size=8)).folder,
        FeatureStore(str(tmp_path), CountingEncoder(), SPEC, dtype="float32").folder,
    }
    assert len(folders) == 4


def test_resumes_after_a_kill_mid_split(tmp_path):
    """A killed run leaves finished videos in parts/ (never a partial file); the rerun encodes
    only the rest, and packing leaves no part, temp file or orphan shard behind."""

    class Dies(CountingEncoder):
        def __call__(self, frames):
            if self.frames_seen >= 10:  # dies inside the third video
                raise KeyboardInterrupt
            return super().__call__(frames)

    videos = [_video(v, seed=i) for i, v in enumerate("abcd")]
    store = FeatureStore(str(tmp_path), Dies(), SPEC)
    with pytest.raises(KeyboardInterrupt):
        store.ensure(videos)
    assert len(os.listdir(os.path.join(store.folder, "parts"))) == 2
    assert not os.path.exists(os.path.join(store.folder, "index.json"))
    # an interrupted pack: a shard file nothing points at
    with open(os.path.join(store.folder, "shard-00000.array_record"), "wb") as f:
        f.write(b"partial")
    enc = CountingEncoder()
    fresh = FeatureStore(str(tmp_path), enc, SPEC)
    fresh.__dict__["folder"] = store.folder  # same key, new process
    fs = fresh.ensure(videos)
    assert enc.frames_seen == 10  # c and d only
    assert fs.ids == list("abcd")
    ref = FeatureStore(str(tmp_path / "ref"), CountingEncoder(), SPEC).ensure(videos)
    for i in range(4):
        np.testing.assert_array_equal(fs[i]["cls"], ref[i]["cls"])
    names = os.listdir(store.folder)
    assert not [n for n in names if n.startswith(".tmp")]
    assert os.listdir(os.path.join(store.folder, "parts")) == []
    index = json.load(open(os.path.join(store.folder, "index.json")))
    assert sorted(n for n in names if n.startswith("shard-")) == sorted(index["shards"])


def test_skip_errors_keeps_the_other_videos(tmp_path):
    class Broken(ArrayVideo):
        def frames(self, spec):
            raise ValueError(f"{self.id}: cannot decode")

    bad = Broken(id="x", split="test", fps=4.0, array=np.zeros((2, 8, 8, 3), np.uint8))
    store = FeatureStore(str(tmp_path), CountingEncoder(), SPEC)
    fs = store.ensure([_video("a"), bad, _video("b", seed=1)], skip_errors=(ValueError,))
    assert fs.ids == ["a", "b"] and store.failed == ["x: cannot decode"]
    with pytest.raises(ValueError, match="cannot decode"):
        store.ensure([bad])


def test_videos_share_batches_and_a_broken_one_mid_batch_is_dropped():
    # 5 videos of 5 frames (at 2 fps) in batches of 3: 9 full calls instead of 10 padded
    # ones; the broken video dies after its first chunk, whose frames sit in a batch with
    # its neighbours' and must not leak into them.
    class Calls(CountingEncoder):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def __call__(self, frames):
            self.sizes.append(len(frames))
            return super().__call__(frames)

    class DiesLate(ArrayVideo):
        def frames(self, spec):
            chunks = super().frames(spec)
            yield next(chunks)
            raise ValueError(f"{self.id}: truncated")

    videos = [_video(v, seed=i) for i, v in enumerate("abcde")]
    videos[2] = DiesLate(id="c", split="test", fps=4.0, array=videos[2].array)
    enc, failed = Calls(), []
    out = dict(encode_videos(videos, SPEC, enc, "float32", None, (ValueError,), failed))
    assert sorted(out) == [0, 1, 3, 4] and failed[0][0] == 2 and "truncated" in failed[0][1]
    assert all(n == 3 for n in enc.sizes[:-1])
    for i in (0, 1, 3, 4):
        alone = encode_video(videos[i], SPEC, CountingEncoder(), "float32")
        assert sorted(out[i]) == sorted(alone)
        for k in alone:
            np.testing.assert_array_equal(out[i][k], alone[k])


def test_grain_reads_the_shards_with_per_process_sharding(tmp_path):
    videos = [_video(f"v{i}", seed=i) for i in range(6)]
    store = FeatureStore(str(tmp_path), CountingEncoder(), SPEC, videos_per_shard=4)
    fs = store.ensure(videos)
    assert len(fs.shards) == 2  # 4 + 2 videos
    fs2 = pickle.loads(pickle.dumps(fs))  # grain workers receive a pickled copy
    seen = []
    for shard in range(2):
        ds = make_dataset(
            fs2,
            PipelineConfig(global_batch_size=2, shuffle=False, num_epochs=1),
            transforms=[lambda r: {"cls0": r["cls"][0]}],
            shard_options=grain.sharding.ShardOptions(shard_index=shard, shard_count=2),
        )
        for batch in ds:
            seen += [tuple(x) for x in batch["cls0"]]
    assert sorted(seen) == sorted(tuple(fs[i]["cls"][0]) for i in range(6))


def test_records_round_trip_without_pickle():
    arrays = {"a": np.arange(6, dtype=np.float16).reshape(2, 3), "id": np.asarray("x y")}
    back = decode_record(encode_record(arrays))
    np.testing.assert_array_equal(back["a"], arrays["a"])
    assert str(back["id"]) == "x y"
    with pytest.raises(ValueError):
        decode_record(encode_record({"o": np.array([{"x": 1}], dtype=object)}))
