"""Tests of vau_jax.data.pipeline on a toy random-access source of variable-length videos."""

from __future__ import annotations

import json

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import flags

from vau_jax.data import instruct
from vau_jax.data import pipeline as P
from vau_jax.data import templates as T


class ToySource(grain.sources.RandomAccessDataSource):
    """Example i: ``frames`` uint8 [3 + i % 5, 4, 4, 3] filled with i, a label, an id, a
    conversation."""

    def __init__(self, n: int):
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if not 0 <= i < self._n:
            raise IndexError(i)
        length = 3 + i % 5
        return {
            "frames": np.full((length, 4, 4, 3), i, np.uint8),
            "label": np.int32(i % 2),
            "index": np.int32(i),
            "video_id": f"vid_{i:03d}",
            "conversation": [
                {"from": "human", "value": "<video>\nab"},
                {"from": "gpt", "value": "c" * (1 + i % 3)},
            ],
        }


class CharTokenizer:
    """Byte-level toy tokenizer: id = byte + 3; 0 pad, 1 bos, 2 eos."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [b + 3 for b in text.encode()]
        return [self.bos_id] + ids if add_bos else ids


def _config(**kw) -> P.PipelineConfig:
    base = dict(global_batch_size=4, seed=0, pad_lengths=(("frames", 6),), read_threads=1)
    base.update(kw)
    return P.PipelineConfig(**base)


def _indices(it) -> list[list[int]]:
    return [b["index"][b["example_mask"]].tolist() for b in it]


def test_batches_are_padded_and_masked():
    cfg = _config(shuffle=False)
    batches = list(
        P.make_iterator(ToySource(10), cfg, shard_options=grain.sharding.ShardByJaxProcess())
    )
    assert len(batches) == 2 == P.num_batches(10, cfg)  # batch 4, remainder dropped
    b = batches[0]
    assert b["frames"].shape == (4, 6, 4, 4, 3) and b["frames"].dtype == np.uint8
    assert b["frames_mask"].shape == (4, 6) and b["frames_mask"].dtype == bool
    assert b["video_id"].tolist() == ["vid_000", "vid_001", "vid_002", "vid_003"]
    for row, i in enumerate(b["index"]):
        length = 3 + int(i) % 5
        n = min(length, 6)
        assert b["frames_mask"][row].tolist() == [True] * n + [False] * (6 - n)
        assert (b["frames"][row, :n] == i).all() and (b["frames"][row, n:] == 0).all()
    assert b["example_mask"].all()
    assert isinstance(b["conversation"], list) and len(b["conversation"]) == 4


def test_crop_keeps_the_first_entries():
    cfg = _config(shuffle=False, global_batch_size=8, pad_lengths=(("frames", 4),))
    (b,) = list(P.make_iterator(ToySource(8), cfg))
    assert b["frames"].shape == (8, 4, 4, 4, 3)
    lengths = 3 + np.arange(8) % 5  # 3, 4, 5, 6, 7, 3, 4, 5: 5..7 are cropped to 4
    np.testing.assert_array_equal(b["frames_mask"].sum(1), np.minimum(lengths, 4))
    assert (b["frames"][2] == 2).all()


def test_seeded_shuffle_and_epochs():
    src = ToySource(12)
    run = lambda seed: _indices(P.make_iterator(src, _config(seed=seed, num_epochs=2)))
    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    flat = sum(a, [])
    assert sorted(flat[:12]) == list(range(12)) and sorted(flat[12:]) == list(range(12))
    assert flat[:12] != flat[12:]  # each epoch is shuffled differently
    assert flat[:12] != list(range(12))


def test_process_shards_are_disjoint_and_equal_in_length():
    src, cfg = ToySource(23), _config(global_batch_size=6)
    shards = [
        _indices(P.make_iterator(src, cfg, shard_options=grain.sharding.ShardOptions(i, 3)))
        for i in range(3)
    ]
    assert {len(s) for s in shards} == {3}  # 23 // 6 = 3 steps on every process
    assert all(len(b) == 2 for s in shards for b in s)
    seen = sum((sum(s, []) for s in shards), [])
    assert len(seen) == len(set(seen)) == 18


class _LoggedSource(ToySource):
    """A :class:`ToySource` that records every index read."""

    def __init__(self, n: int):
        super().__init__(n)
        self.reads: list[int] = []

    def __getitem__(self, i: int) -> dict:
        self.reads.append(int(i))
        return super().__getitem__(i)


def test_process_batches_in_process_order_are_the_single_process_batch():
    """Process ``i`` holds the ``i``-th block of every global batch, so the local batches
    concatenated in process order (``to_global``) are the one-process global batch, example
    for example; and a process reads only its own examples."""
    cfg = _config(global_batch_size=6, seed=3, num_epochs=2)
    whole = _indices(P.make_iterator(ToySource(23), cfg))
    sources = [_LoggedSource(23) for _ in range(3)]
    shards = [
        _indices(P.make_iterator(src, cfg, shard_options=grain.sharding.ShardOptions(i, 3)))
        for i, src in enumerate(sources)
    ]
    assert len(whole) == 7 and all(len(s) == 7 for s in shards)  # 46 // 6
    for t, batch in enumerate(whole):
        assert shards[0][t] + shards[1][t] + shards[2][t] == batch
    for src, shard in zip(sources, shards):
        assert sorted(src.reads) == sorted(sum(shard, []))


def test_eval_mode_pads_the_last_batch_and_sees_everything_once():
    src, cfg = ToySource(23), _config(global_batch_size=6, drop_remainder=False, shuffle=False)
    shards = [
        list(P.make_iterator(src, cfg, shard_options=grain.sharding.ShardOptions(i, 3)))
        for i in range(3)
    ]
    assert {len(s) for s in shards} == {4}  # ceil(23 / 6)
    assert P.num_batches(23, cfg) == 4
    real = [int(x) for s in shards for b in s for x in b["index"][b["example_mask"]]]
    assert sorted(real) == list(range(23))
    assert sum(int((~b["example_mask"]).sum()) for s in shards for b in s) == 1


def test_iterator_state_restores_the_same_batches():
    src = ToySource(40)
    cfg = _config(seed=3, num_epochs=None)
    it = P.make_iterator(src, cfg)
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(6)]
    fresh = P.make_iterator(src, cfg)
    fresh.set_state(json.loads(json.dumps(state)))  # orbax stores it as JSON
    got = [next(fresh) for _ in range(6)]
    for e, g in zip(expected, got):
        assert e["index"].tolist() == g["index"].tolist()
        np.testing.assert_array_equal(e["frames"], g["frames"])
        np.testing.assert_array_equal(e["frames_mask"], g["frames_mask"])


def test_iterator_state_in_an_orbax_checkpoint(tmp_path):
    src, cfg = ToySource(40), _config(seed=4, num_epochs=None)
    it = P.make_iterator(src, cfg)
    for _ in range(3):
        next(it)
    options = ocp.CheckpointManagerOptions(max_to_keep=1)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as mgr:
        mgr.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mgr.wait_until_finished()
        expected = [next(it)["index"].tolist() for _ in range(2)]
        fresh = P.make_iterator(src, cfg)
        mgr.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    assert [next(fresh)["index"].tolist() for _ in range(2)] == expected


class Jitter(grain.transforms.RandomMap):
    def random_map(self, element, rng: np.random.Generator):
        return {**element, "noise": np.float32(rng.uniform())}


def test_random_transform_is_deterministic_and_resumable():
    src, cfg = ToySource(16), _config(num_epochs=None)
    it = P.make_iterator(src, cfg, transforms=[Jitter()])
    first = [next(it)["noise"] for _ in range(3)]
    state = it.get_state()
    nxt = next(it)["noise"]
    again = P.make_iterator(src, cfg, transforms=[Jitter()])
    assert np.array_equal(np.stack(first), np.stack([next(again)["noise"] for _ in range(3)]))
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["noise"], nxt)
    assert len(np.unique(np.concatenate(first))) == 12


def test_tokenize_conversation_masks():
    tok = CharTokenizer()
    t = P.TokenizeConversation(tok, max_length=200)
    conv = [{"from": "human", "value": "<video>\nhi"}, {"from": "gpt", "value": "ok"}]
    out = t.tokenize(conv)
    ids = out["input_ids"][out["attention_mask"]].tolist()
    expected = (
        [1]
        + tok.encode(T.SYSTEM_PROMPT)
        + tok.encode(T.ROLE_PREFIX["human"])
        + tok.encode("hi")
        + tok.encode(T.ROLE_PREFIX["gpt"])
        + tok.encode("ok")
        + [2]
    )
    assert ids == expected
    assert out["input_ids"].dtype == np.int32
    assert out["input_ids"][len(ids) :].tolist() == [0] * (200 - len(ids))
    targets = out["input_ids"][out["loss_mask"]].tolist()
    assert targets == tok.encode("ok") + [2]
    assert not (out["loss_mask"] & ~out["attention_mask"]).any()
    with_video = P.TokenizeConversation(tok, 200, video_token_id=-200).tokenize(conv)
    vid = with_video["input_ids"].tolist()
    assert vid.count(-200) == 1
    assert vid[vid.index(-200) + 1 : vid.index(-200) + 3] == tok.encode("hi")
    short = P.TokenizeConversation(tok, 10).tokenize(conv)
    assert short["attention_mask"].all() and short["input_ids"].tolist() == expected[:10]


def test_pipeline_with_tokenizer_and_real_instructions():
    facts = instruct.VideoFacts("v", 4.0, "fire", ((1.0, 2.0),), event_description="Fire.")
    conv = instruct.pseudo_instruction(np.array([0.0, 0.9, 0.1, 0.0]), 1.0, 0.5, seed=0)
    src = [
        {"conversation": instruct.yes_no_conversation(facts, 0), "index": np.int32(0)},
        {"conversation": conv, "index": np.int32(1)},
    ]
    cfg = _config(global_batch_size=2, pad_lengths=(), max_text_length=300, shuffle=False)
    (b,) = list(P.make_iterator(src, cfg, tokenizer=CharTokenizer()))
    assert "conversation" not in b
    assert b["input_ids"].shape == (2, 300) and b["loss_mask"].shape == (2, 300)
    answer = bytes(x - 3 for x in b["input_ids"][1][b["loss_mask"][1]][:-1]).decode()
    assert answer == "Yes, there are anomalies from 1.0s to 2.0s."


def test_to_global_makes_sharded_arrays():
    devices = np.array(jax.devices())
    mesh = jax.sharding.Mesh(devices, ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    cfg = _config(global_batch_size=len(devices), shuffle=False)
    batch = next(P.make_iterator(ToySource(16), cfg))
    out = P.to_global(batch, sharding)
    assert isinstance(out["frames"], jax.Array) and out["frames"].sharding == sharding
    assert out["frames"].shape == batch["frames"].shape
    np.testing.assert_array_equal(np.asarray(out["frames"]), batch["frames"])
    np.testing.assert_array_equal(np.asarray(out["frames_mask"]), batch["frames_mask"])
    assert isinstance(out["video_id"], np.ndarray)  # strings stay on the host
    assert len(out["frames"].addressable_shards) == len(devices)


def test_collate_names_the_key_on_shape_mismatch():
    with pytest.raises(ValueError, match="'frames'.*pad_lengths"):
        P.collate([{"frames": np.zeros((3, 2))}, {"frames": np.zeros((4, 2))}])


def test_bad_batch_sizes():
    with pytest.raises(ValueError, match="not divisible"):
        P.make_dataset(
            ToySource(8),
            _config(global_batch_size=5),
            shard_options=grain.sharding.ShardOptions(0, 2),
        )
    with pytest.raises(ValueError, match="no full global batch"):
        P.make_dataset(ToySource(3), _config(global_batch_size=4))


@pytest.mark.slow
def test_worker_processes_give_the_same_batches():
    flags.FLAGS.mark_as_parsed()
    src = ToySource(16)
    ref = _indices(P.make_iterator(src, _config(seed=5)))
    it = P.make_iterator(src, _config(seed=5, worker_count=1))
    first = _indices([next(it)])
    state = json.loads(json.dumps(it.get_state()))
    rest = _indices(it)
    assert first + rest == ref
    resumed = P.make_iterator(src, _config(seed=5, worker_count=1))
    resumed.set_state(state)
    assert _indices(resumed) == rest


class SynthToInstruction(grain.transforms.Map):
    """SynthVAD record -> frames, labels and its multiple-choice conversation."""

    def map(self, record):
        from vau_jax.data.synthvad.records import from_record

        video = from_record(record)
        question = instruct.synth_instructions(video)["mcqa"]
        return {
            "frames": record["frames"],
            "labels": record["labels"],
            "video_id": record["video_id"],
            "conversation": question.conversation(),
        }


def test_synthvad_source_end_to_end():
    source_mod = pytest.importorskip("vau_jax.data.synthvad.source")
    from vau_jax.data.synthvad.types import SynthConfig

    config = SynthConfig(min_seconds=1.0, max_seconds=2.0)
    src = source_mod.SynthVADSource("train", 6, config)
    cfg = _config(
        global_batch_size=2,
        pad_lengths=(("frames", 20), ("labels", 20)),
        max_text_length=800,
        num_epochs=None,
        seed=1,
    )
    it = P.make_iterator(src, cfg, transforms=[SynthToInstruction()], tokenizer=CharTokenizer())
    first = next(it)
    state = it.get_state()
    second = next(it)
    assert first["frames"].shape == (2, 20, 64, 64, 3)
    assert first["labels_mask"].tolist() == first["frames_mask"].tolist()
    assert first["video_id"].dtype.kind == "S" and first["input_ids"].shape == (2, 800)
    for b in (first, second):
        for row, vid in enumerate(b["video_id"]):
            index = int(vid.decode().rsplit("_", 1)[1])
            n_frames = len(src[index]["frames"])
            assert b["frames_mask"][row].sum() == min(n_frames, 20)
            answer = bytes(x - 3 for x in b["input_ids"][row][b["loss_mask"][row]][:-1])
            assert answer.decode()[:2] in {"A.", "B.", "C.", "D."}
    resumed = P.make_iterator(
        src, cfg, transforms=[SynthToInstruction()], tokenizer=CharTokenizer()
    )
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["input_ids"], second["input_ids"])
