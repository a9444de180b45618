"""Frame specs: causal background subtraction, uniform selection, resampling and resizing of
in-memory frames the same way file decoding does."""

import numpy as np
import pytest

from vau_jax.data import synthvad
from vau_jax.data.frames import (
    BackgroundSubtractor,
    FrameSpec,
    background_subtracted,
    prepare_chunks,
    resample_array,
    resize_crop,
    uniform_indices,
)
from vau_jax.data.video import FrameChunk, read_frames


def _scene_with_blob(t: int = 24, start: int = 18) -> np.ndarray:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    frames = np.repeat(scene[None], t, 0)
    frames[start:, 4:8, 4:8] = [255, 0, 0]  # an object that appears and stays
    return frames


def test_static_scene_becomes_grey_and_a_new_object_stands_out():
    out = background_subtracted(_scene_with_blob())
    assert out.dtype == np.uint8 and out.shape == (24, 16, 16, 3)
    np.testing.assert_array_equal(out[:18], 128)  # the scene itself is gone
    blob = out[20, 4:8, 4:8].astype(int) - 128
    assert (np.abs(blob).max(-1) > 0).all()
    np.testing.assert_array_equal(np.delete(out[20], np.s_[4:8], axis=0), 128)


def test_global_light_change_is_removed():
    frames = _scene_with_blob(start=99).astype(np.int16)
    frames[20:] += 10  # the whole image brightens (light drift)
    out = background_subtracted(np.clip(frames, 0, 255).astype(np.uint8))
    far = np.abs(out[20].astype(int) - 128)
    assert np.median(far) == 0


def test_background_subtraction_is_causal():
    v = synthvad.render_video(7, synthvad.SynthConfig(min_seconds=3.0, max_seconds=3.0))
    full = background_subtracted(v.frames)
    changed = v.frames.copy()
    changed[12:] = 255 - changed[12:]
    np.testing.assert_array_equal(background_subtracted(changed)[:12], full[:12])


def test_streamed_background_equals_whole_video():
    v = synthvad.render_video(7, synthvad.SynthConfig(min_seconds=4.0, max_seconds=4.0))
    whole = background_subtracted(v.frames)
    sub = BackgroundSubtractor()
    parts = [sub(v.frames[a : a + 5]) for a in range(0, v.num_frames, 5)]  # odd chunk size
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_running_background_is_the_median_of_the_frames_so_far():
    # The insertion-sorted running median against its definition (np.median over the stack)
    # for every warm-up length, then fixed: the same uint8 output, byte for byte.
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(23, 6, 5, 3), dtype=np.uint8)
    f = frames.astype(np.float32)
    warmup = 9
    bg = np.stack([np.median(f[: min(t, warmup - 1) + 1], 0) for t in range(len(f))])
    d = f - bg
    d -= np.median(d.reshape(len(f), -1, 3), 1)[:, None, None]
    want = np.clip(np.rint(128.0 + d), 0, 255).astype(np.uint8)
    sub = BackgroundSubtractor(warmup)
    got = np.concatenate([sub(frames[a : a + 4]) for a in range(0, len(frames), 4)])
    np.testing.assert_array_equal(got, want)


def test_frame_spec_validation():
    for bad in (
        dict(fps=0.0),
        dict(size=0),
        dict(input="depth"),
        dict(count=-1),
        dict(size=224, resize=200),
    ):
        with pytest.raises(ValueError, match="FrameSpec"):
            FrameSpec(**bad)
    assert FrameSpec(fps=8.0, max_seconds=2.0).max_frames() == 16
    assert FrameSpec(size=224, resize=256).shorter_side == 256


def test_uniform_selection_keeps_times_and_sources():
    frames = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    chunks = [
        FrameChunk(
            frames[a : a + 6], np.arange(a, min(a + 6, 20)) / 4.0, np.arange(a, min(a + 6, 20))
        )
        for a in range(0, 20, 6)
    ]
    (out,) = list(prepare_chunks(chunks, FrameSpec(size=2, count=5), n_frames=20))
    want = uniform_indices(20, 5)
    np.testing.assert_array_equal(out.indices, want)
    np.testing.assert_array_equal(out.frames[:, 0, 0, 0], want)
    np.testing.assert_allclose(out.timestamps, want / 4.0)
    with pytest.raises(ValueError, match="frame count"):
        list(prepare_chunks(chunks, FrameSpec(size=2, count=5)))


def test_sampled_background_frames_equal_the_full_subtraction():
    # A sampled spec subtracts the background only on the frames it keeps; every frame still
    # feeds the warm-up, so the kept frames equal those of the whole video subtracted.
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(29, 8, 8, 3), dtype=np.uint8)
    full = background_subtracted(frames, warmup=5)
    chunks = [
        FrameChunk(frames[a : a + 6], np.arange(a, min(a + 6, 29)) / 8.0,
                   np.arange(a, min(a + 6, 29)))
        for a in range(0, 29, 6)
    ] + [FrameChunk(frames[:0], np.zeros(0), np.zeros(0, np.int64))]  # fmt: skip
    for count in (7, 4, 40):
        spec = FrameSpec(size=8, count=count, input="background", warmup=5)
        (out,) = list(prepare_chunks(chunks, spec, n_frames=29))
        want = uniform_indices(29, count)
        np.testing.assert_array_equal(out.indices, want)
        np.testing.assert_array_equal(out.frames, full[want])
    sub = BackgroundSubtractor(5)
    np.testing.assert_array_equal(sub(frames[:12], keep=np.array([0, 11])), full[[0, 11]])
    np.testing.assert_array_equal(sub(frames[12:]), full[12:])  # the state moved on alike


def test_half_integer_median_equals_numpy_median():
    from vau_jax.data.frames import _half_integer_median

    rng = np.random.default_rng(2)
    for shape in ((3, 5, 7, 3), (2, 4, 4, 3), (1, 1, 1, 3)):  # odd and even pixel counts
        f = rng.integers(0, 256, size=shape).astype(np.float32)
        bg = (rng.integers(0, 511, size=shape[1:]) / 2).astype(np.float32)
        for d in (f - bg, np.full(shape, -255.0, np.float32), np.full(shape, 255.0, np.float32)):
            want = np.median(d.reshape(len(d), -1, 3), 1)
            got = _half_integer_median(d)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_float_frames_take_numpy_median():
    rng = np.random.default_rng(3)
    frames = rng.random((6, 4, 4, 3)) * 255  # not uint8: differences are not half-integers
    out = BackgroundSubtractor(3)(frames)
    f = frames.astype(np.float32)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    d = f[5] - np.median(f[:3], 0)
    d -= np.median(d.reshape(-1, 3), 0)
    np.testing.assert_array_equal(out[5], np.clip(np.rint(128.0 + d), 0, 255).astype(np.uint8))


def test_resample_array_matches_decoding_rule(tmp_path):
    """In-memory frames resampled like iter_frames resamples a file (sample-and-hold)."""
    from vau_jax.data.synthvad.writers import write_mp4

    v = synthvad.render_video(3, synthvad.SynthConfig(min_seconds=3.0, max_seconds=3.0))
    path = str(tmp_path / "v.mp4")
    write_mp4(path, v.frames, v.fps)
    for fps in (8.0, 3.0, 5.5):
        spec = FrameSpec(fps=fps, size=64)
        mem = list(resample_array(v.frames, v.fps, spec))
        disk = read_frames(path, fps=fps, size=64)
        np.testing.assert_array_equal(np.concatenate([c.indices for c in mem]), disk.indices)
        np.testing.assert_allclose(np.concatenate([c.timestamps for c in mem]), disk.timestamps)


def test_resize_crop_geometry():
    img = np.zeros((1, 40, 60, 3), np.uint8)
    img[:, :, 30:] = 255  # right half white
    out = resize_crop(img, 20)
    assert out.shape == (1, 20, 20, 3)
    assert out[0, :, 0].max() < 30 and out[0, :, -1].min() > 225  # centre crop of the halves
    assert resize_crop(out, 20) is out  # already the size: untouched
    assert resize_crop(img, 20, 24).shape == (1, 20, 20, 3)
