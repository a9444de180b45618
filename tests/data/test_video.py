"""Video decoding: probe, timestamps, resampling, resize/crop, clips, bad files."""

import shutil

import av
import numpy as np
import pytest

from vau_jax.data.video import (
    VideoDecodeError,
    iter_clips,
    iter_frames,
    probe,
    read_frames,
)

W, H, FPS, N = 64, 48, 8, 24
SQ = 8  # square side


def _square_x(k: int) -> int:
    return 2 * k


def _write_square_video(path, n=N, fps=FPS, codec="libx264"):
    """A white square moving right by 2 px per frame on a black background."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "0", "preset": "ultrafast"}
        for k in range(n):
            img = np.zeros([H, W, 3], np.uint8)
            img[20 : 20 + SQ, _square_x(k) : _square_x(k) + SQ] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def _square_left(frame: np.ndarray) -> int:
    cols = np.nonzero(frame[..., 0].max(0) > 128)[0]
    return int(cols.min())


@pytest.fixture(scope="module")
def square_mp4(tmp_path_factory):
    return _write_square_video(tmp_path_factory.mktemp("video") / "square.mp4")


def test_probe(square_mp4):
    info = probe(square_mp4)
    assert (info.fps, info.n_frames, info.width, info.height) == (FPS, N, W, H)
    assert info.duration == pytest.approx(N / FPS)


def test_native_frames_and_timestamps(square_mp4):
    chunks = list(iter_frames(square_mp4, chunk_size=5))
    assert [len(c.frames) for c in chunks] == [5, 5, 5, 5, 4]
    got = read_frames(square_mp4)
    assert got.frames.shape == (N, H, W, 3) and got.frames.dtype == np.uint8
    np.testing.assert_allclose(got.timestamps, np.arange(N) / FPS, atol=1e-9)
    np.testing.assert_array_equal(got.indices, np.arange(N))
    assert [_square_left(f) for f in got.frames] == [_square_x(k) for k in range(N)]


@pytest.mark.parametrize("target", [4.0, 3.0, 12.0])
def test_resample_sample_and_hold(square_mp4, target):
    got = read_frames(square_mp4, fps=target, chunk_size=7)
    n_expected = int(np.floor((N - 1) / FPS * target + 1e-9)) + 1
    assert len(got.frames) == n_expected
    np.testing.assert_allclose(got.timestamps, np.arange(n_expected) / target, atol=1e-9)
    expected_src = np.floor(np.arange(n_expected) / target * FPS + 1e-6).astype(int)
    np.testing.assert_array_equal(got.indices, expected_src)
    assert [_square_left(f) for f in got.frames] == [_square_x(k) for k in expected_src]


def test_resize_crop_and_stretch(square_mp4):
    got = read_frames(square_mp4, size=24, max_frames=11)
    assert got.frames.shape == (11, 24, 24, 3)
    # Shorter side 48 -> 24 (scale 1/2), width 64 -> 32, centre crop drops 4 px each side.
    assert _square_left(got.frames[10]) == pytest.approx(_square_x(10) / 2 - 4, abs=1)
    got = read_frames(square_mp4, size=(12, 40), resize="stretch", max_frames=2)
    assert got.frames.shape == (2, 12, 40, 3)


def test_snippets_and_overlapping_clips(square_mp4):
    clips = list(iter_clips(square_mp4, 16))
    assert [c.n_valid for c in clips] == [16, 8]
    np.testing.assert_array_equal(clips[1].indices, list(range(16, 24)) + [23] * 8)
    assert clips[1].frames.shape == (16, H, W, 3)
    np.testing.assert_allclose(clips[1].timestamps[:8], np.arange(16, 24) / FPS)
    clips = list(iter_clips(square_mp4, 8, stride=4, drop_last=True))
    assert [c.indices[0] for c in clips] == [0, 4, 8, 12, 16]
    clips = list(iter_clips(square_mp4, 4, stride=10))
    assert [c.indices.tolist() for c in clips] == [[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]


def test_other_container_and_codec(tmp_path):
    path = _write_square_video(tmp_path / "square.avi", n=10, fps=5, codec="mpeg4")
    info = probe(path)
    assert (info.fps, info.n_frames) == (5, 10)
    got = read_frames(path, fps=2.5)
    np.testing.assert_array_equal(got.indices, [0, 2, 4, 6, 8])


def test_truncated_mp4(square_mp4, tmp_path):
    data = open(square_mp4, "rb").read()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="truncated.mp4"):
        read_frames(str(bad))


def test_text_file_renamed_mp4(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoDecodeError, match=r"notes.mp4: cannot open as a video"):
        probe(str(bad))
    with pytest.raises(ValueError, match="notes.mp4"):
        list(iter_frames(str(bad)))


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="no such file"):
        probe(str(tmp_path / "nope.mp4"))


def test_vtest_probe_and_first_seconds(vtest_path):
    info = probe(vtest_path)
    assert (info.n_frames, info.fps, info.width, info.height) == (795, 10.0, 768, 576)
    got = read_frames(vtest_path, fps=5, size=224, max_frames=15)
    assert got.frames.shape == (15, 224, 224, 3)
    np.testing.assert_allclose(got.timestamps, np.arange(15) / 5)
    np.testing.assert_array_equal(got.indices, np.arange(0, 30, 2))


def test_vtest_truncated_copy(vtest_path, tmp_path):
    data = open(vtest_path, "rb").read()
    bad = tmp_path / "vtest_cut.avi"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="vtest_cut.avi"):
        for _ in iter_frames(str(bad), size=32):
            pass


def test_vtest_streams_in_bounded_chunks(vtest_path, tmp_path):
    small = tmp_path / "vtest.avi"
    shutil.copy(vtest_path, small)
    sizes = [len(c.frames) for c in iter_frames(str(small), size=16, chunk_size=100)]
    assert max(sizes) <= 100 and sum(sizes) == 795
