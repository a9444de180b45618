"""SynthVAD's batched painter gives the same bytes as painting one primitive at a time."""

from __future__ import annotations

import numpy as np
import pytest

from vau_jax.data.synthvad.draw import _arange32, paint, paint_frames


def test_arange32_is_numpys_float32_arange():
    rng = np.random.default_rng(0)
    starts = np.concatenate([rng.uniform(-80.0, 80.0, 3000), -rng.uniform(0.0, 1.0, 1000)])
    for length in (1, 2, 3, 7, 24):
        got = _arange32(starts, length)
        want = np.stack([np.arange(s, s + length, dtype=np.float32)[:length] for s in starts])
        assert got.dtype == np.float32 and np.array_equal(got, want), length


def _random_items(rng: np.random.Generator, h: int, w: int, n: int) -> list[tuple]:
    items = []
    for _ in range(n):
        kind = ("ellipse", "rect")[int(rng.integers(2))]
        # some centres off the frame, some shapes below the 0.6 px minimum half-extent
        cx, cy = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)
        a, b = rng.uniform(0.1, 12.0), rng.uniform(0.1, 8.0)
        angle = (0.0, float(rng.uniform(-np.pi, np.pi)), np.float64(rng.uniform(0, 3)))[
            int(rng.integers(3))
        ]
        colour = rng.uniform(0, 255, 3)
        colour = colour.astype(np.float32) if rng.uniform() < 0.7 else colour  # float64 too
        alpha = (1.0, 1.0, 1.0, 0.3, 0.7, np.float64(rng.uniform(0.2, 0.9)))[int(rng.integers(6))]
        items.append((int(rng.integers(1, 9)), (kind, cx, cy, a, b, angle), colour, alpha))
    return items


@pytest.mark.parametrize("h,w", [(64, 64), (37, 53)])
def test_paint_frames_equals_paint_one_by_one(h, w):
    rng = np.random.default_rng(h * w)
    base = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    items = [_random_items(rng, h, w, int(rng.integers(0, 40))) for _ in range(12)]
    want_frames = np.repeat(base[None], len(items), axis=0)
    want_masks = np.zeros((len(items), h, w), np.uint8)
    for t, frame_items in enumerate(items):
        for value, part, colour, alpha in frame_items:
            paint(want_frames[t], want_masks[t], value, part, colour, alpha)
    frames = np.repeat(base[None], len(items), axis=0)
    masks = np.zeros((len(items), h, w), np.uint8)
    paint_frames(frames, masks, items)
    assert any(a < 1.0 for x in items for *_, a in x)  # translucent primitives were drawn
    assert (want_masks > 0).mean() > 0.05  # and the shapes cover something
    assert frames.tobytes() == want_frames.tobytes()
    assert masks.tobytes() == want_masks.tobytes()


def test_paint_frames_refuses_bad_input():
    frames = np.zeros((2, 8, 8, 3), np.float32)
    masks = np.zeros((2, 8, 8), np.uint8)
    part = ("triangle", 4.0, 4.0, 2.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="unknown shape kind 'triangle'"):
        paint_frames(frames, masks, [[(1, part, np.zeros(3, np.float32), 1.0)], []])
    with pytest.raises(ValueError, match="1 item lists for 2 frames"):
        paint_frames(frames, masks, [[]])
    with pytest.raises(ValueError, match="C-contiguous"):
        paint_frames(frames[:, ::2], masks[:, ::2], [[], []])


def test_one_noise_draw_per_chunk_is_the_per_frame_stream():
    # The renderer draws a chunk's camera noise at once when a frame's bytes are whole
    # 32-bit words; numpy's Generator.bytes must then give the per-frame byte stream.
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    per_frame = b"".join(a.bytes(64 * 64 * 3) for _ in range(7))
    assert b.bytes(64 * 64 * 3 * 7) == per_frame
    assert a.bytes(12) == b.bytes(12)  # and both streams continue alike
