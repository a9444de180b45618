"""Hostile video files: ``probe`` / ``iter_frames`` / ``iter_clips`` return or raise
``VideoDecodeError`` naming the file, in time (fuzzing helpers and contract:
``tests/hostile.py``). Inputs: a small valid MP4 (H.264), AVI (MPEG-4) or MKV (FFV1) with
truncations, byte flips, random windows and lying 32/64-bit fields; random bytes; nothing.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import expect_documented, fuzz_settings, mutated_bytes
from vau_jax.data.video import VideoDecodeError, iter_clips, probe, read_frames

ONLY_VIDEO = (VideoDecodeError,)
W, H, N = 32, 24, 12


def _video_bytes(path, codec: str) -> bytes:
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuv420p"
        for k in range(N):
            img = np.zeros([H, W, 3], np.uint8)
            img[4:12, 2 * k : 2 * k + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        ".mp4": _video_bytes(root / "v.mp4", "libx264"),
        ".avi": _video_bytes(root / "v.avi", "mpeg4"),
        ".mkv": _video_bytes(root / "v.mkv", "ffv1"),
    }


def _decoders(path: str):
    return [
        lambda: probe(path),
        lambda: read_frames(path),
        lambda: read_frames(path, fps=3.0, size=16, max_frames=6),
        lambda: list(iter_clips(path, 4, stride=3, size=(8, 12), resize="stretch")),
    ]


def test_valid_videos_decode(tmp_path, videos):
    for ext, data in videos.items():
        path = tmp_path / f"v{ext}"
        path.write_bytes(data)
        assert probe(str(path)).n_frames == N
        assert read_frames(str(path)).frames.shape == (N, H, W, 3)


@fuzz_settings(120, deadline_ms=None)
@given(ext=st.sampled_from([".mp4", ".avi", ".mkv"]), draw=st.data())
def test_hostile_video(tmp_path, videos, ext, draw):
    valid = videos[ext]
    data = draw.draw(
        mutated_bytes(valid, max_edits=2) | st.binary(max_size=300) | st.just(b""), label="file"
    )
    path = tmp_path / f"v{ext}"
    path.write_bytes(data)
    for call in _decoders(str(path)):
        expect_documented(call, str(path), allowed=ONLY_VIDEO)


@pytest.mark.parametrize("ext", [".mp4", ".avi", ".mkv"])
def test_zero_length_and_truncated(tmp_path, videos, ext):
    path = tmp_path / f"v{ext}"
    for data in (b"", videos[ext][: len(videos[ext]) // 3]):
        path.write_bytes(data)
        for call in _decoders(str(path)):
            expect_documented(call, str(path), allowed=ONLY_VIDEO)
    path.write_bytes(b"")
    err = expect_documented(lambda: probe(str(path)), str(path), allowed=ONLY_VIDEO)
    assert isinstance(err, VideoDecodeError)


def _lie_fields(data: bytes, tag: bytes, offsets: tuple[int, ...], value: int, big: bool) -> bytes:
    """``data`` with the u32 fields at ``offsets`` (bytes after chunk/atom ``tag``'s header)
    of every ``tag`` chunk set to ``value``."""
    out = bytearray(data)
    start = out.find(tag)
    while start >= 0:
        for off in offsets:
            at = start + 8 + off
            out[at : at + 4] = value.to_bytes(4, "big" if big else "little")
        start = out.find(tag, start + 1)
    return bytes(out)


@pytest.mark.parametrize(
    ("ext", "tag", "offsets", "big"),
    [
        (".avi", b"avih", (16, 32, 36), False),  # total frames, width, height
        (".avi", b"strh", (32,), False),  # stream length (frames)
        (".avi", b"strf", (4, 8), False),  # BITMAPINFOHEADER width, height
        (".mp4", b"stsz", (4, 8), True),  # sample size, sample count
        (".mp4", b"stts", (4, 8), True),  # entry count, first sample count
        (".mp4", b"tkhd", (76, 80), True),  # track width, height (16.16)
    ],
)
def test_lying_size_fields_fail_fast(tmp_path, videos, ext, tag, offsets, big):
    """Container fields claiming ~2^32 frames / pixels / samples: decode or a
    VideoDecodeError, in seconds, with no allocation of what they claim."""
    path = tmp_path / f"v{ext}"
    for value in (2**32 - 1, 2**31 - 1, 10**6):
        path.write_bytes(_lie_fields(videos[ext], tag, offsets, value, big))
        for call in _decoders(str(path)):
            expect_documented(call, str(path), allowed=ONLY_VIDEO, seconds=5.0)
