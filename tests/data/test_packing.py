"""Sequence packing: every row exactly once, whole, in order; the fill it reaches."""

import numpy as np
import pytest

from vau_jax.data.packing import fill_fraction, pack_rows, packing_summary


def _row(tokens: list[int], pad_to: int, left: bool = False) -> dict[str, np.ndarray]:
    ids = np.zeros(pad_to, np.int32)
    att = np.zeros(pad_to, bool)
    loss = np.zeros(pad_to, bool)
    sl = slice(pad_to - len(tokens), pad_to) if left else slice(0, len(tokens))
    ids[sl] = tokens
    att[sl] = True
    loss[sl] = np.arange(len(tokens)) >= len(tokens) // 2  # the second half is the answer
    return {"input_ids": ids, "attention_mask": att, "loss_mask": loss}


def test_every_row_is_packed_once_whole_and_in_order():
    rng = np.random.default_rng(0)
    rows, seqs = [], []
    for i in range(60):
        toks = rng.integers(1, 500, int(rng.integers(1, 17))).tolist()
        seqs.append(toks)
        rows.append(_row(toks, 16, left=bool(i % 2)))
    packed = pack_rows(rows, 24, seed=1)
    found = []
    for p in packed:
        assert p["input_ids"].shape == p["loss_mask"].shape == p["segment_ids"].shape == (24,)
        assert p["loss_mask"].dtype == bool and p["segment_ids"].dtype == np.int32
        seg = p["segment_ids"]
        used = int(np.count_nonzero(seg))
        assert (seg[:used] > 0).all() and (seg[used:] == 0).all()  # padding only at the end
        assert not p["loss_mask"][used:].any() and not p["input_ids"][used:].any()
        for k in range(1, seg.max() + 1):
            at = seg == k
            found.append((p["input_ids"][at].tolist(), p["loss_mask"][at].tolist()))
    assert len(found) == len(seqs)
    expect = [(s, (np.arange(len(s)) >= len(s) // 2).tolist()) for s in seqs]
    assert sorted(map(str, found)) == sorted(map(str, expect))
    # fewer rows than one per sequence, and fuller than the padded rows
    assert len(packed) < len(rows)
    assert fill_fraction(packed) > fill_fraction(rows)


def test_fill_of_complementary_lengths_is_complete():
    rows = [_row([7] * n, 10) for n in (9, 1, 8, 2, 7, 3, 6, 4, 5, 5)]
    packed = pack_rows(rows, 10)
    assert len(packed) == 5 and fill_fraction(packed) == 1.0


def test_too_long_or_empty_rows_are_refused():
    with pytest.raises(ValueError, match="row 1 has 12 tokens"):
        pack_rows([_row([1, 2], 12), _row([3] * 12, 12)], 10)
    with pytest.raises(ValueError, match="row 0 has 0 tokens"):
        pack_rows([_row([], 4)], 4)
    assert pack_rows([], 8) == []


def test_side_values_follow_the_segments_that_hold_video_tokens():
    rng = np.random.default_rng(5)
    rows = []
    for i in range(30):
        n = int(rng.integers(2, 13))
        row = _row(rng.integers(1, 500, n).tolist(), 12)
        row["video_mask"] = np.zeros(12, bool)
        if i % 3:  # two rows in three carry video tokens, right after BOS
            row["video_mask"][1:2] = True
        row["video"] = np.int32(100 + i)
        row["query"] = np.full(3, i, np.int32)
        rows.append(row)
    packed = pack_rows(
        rows,
        24,
        sequence_keys=("input_ids", "loss_mask", "video_mask"),
        side_keys=("video", "query"),
        max_segments=3,
        side_mask_key="video_mask",
    )
    seen = []
    for p in packed:
        assert p["video"].shape == (3,) and p["query"].shape == (3, 3)
        assert p["segment_ids"].max() <= 3  # at most max_segments rows per packed row
        with_video = [
            k
            for k in range(1, p["segment_ids"].max() + 1)
            if p["video_mask"][p["segment_ids"] == k].any()
        ]
        assert p["video_mask"].sum() == len(with_video)
        got = p["video"][: len(with_video)].tolist()
        assert all(v % 3 for v in (g - 100 for g in got))  # only the rows with video tokens
        assert (p["query"][: len(with_video), 0] == np.array(got) - 100).all()
        assert not p["video"][len(with_video) :].any()  # zero-padded
        for j, k in enumerate(with_video):  # in segment order: slot j is segment k's row
            own = rows[got[j] - 100]
            want = own["input_ids"][own["attention_mask"]]
            np.testing.assert_array_equal(p["input_ids"][p["segment_ids"] == k], want)
        seen += got
    assert sorted(seen) == [100 + i for i in range(30) if i % 3]
    with pytest.raises(ValueError, match="side_keys need max_segments"):
        pack_rows(rows, 24, side_keys=("video",))


def test_packing_summary_names_counts_lengths_and_fill():
    rows = [_row([7] * n, 10) for n in (9, 1, 8, 2)]
    line = packing_summary(rows, pack_rows(rows, 10))
    assert (
        line
        == "4 conversations packed into 2 rows of 10 tokens (100% filled, against 50% padded to 10)"
    )
