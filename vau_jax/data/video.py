"""Video decoding with PyAV: probe, stream frames at a target fps, resize/crop, clips.

Everything streams: frames are decoded one at a time and handed out in chunks of at most
``chunk_size`` frames, so an hour-long video never sits decoded in memory.

Resampling to a target ``fps``: output frame ``k`` has the timestamp ``t_k = k / fps``
seconds (relative to the first frame) and shows the last source frame whose own timestamp is
``<= t_k`` (sample-and-hold; with a higher target fps frames repeat). Without ``fps`` every
decoded frame is returned with its own presentation time. Output stops at the last source
frame's time, so a 79.4 s clip at 10 fps resampled to 4 fps gives frames at 0, 0.25, ...,
79.25 s.

Spatial transform (``size``):

- ``resize="crop"`` (default): scale so the image covers ``size`` keeping the aspect ratio
  (for a square ``size`` this is "shorter side → size"), then take the centre crop; this is
  what CLIP/DINOv2 processors do.
- ``resize="stretch"``: plain resize to ``size`` (aspect ratio not kept).

Frames are ``uint8 [T, H, W, 3]`` RGB. A file that cannot be opened, has no video stream,
fails to decode, or ends well before its declared length raises :class:`VideoDecodeError`
(a ``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import BinaryIO, Literal

import av
import numpy as np

ResizeMode = Literal["crop", "stretch"]
# A file whose decoded frame count falls short of the declared count by more than this
# fraction (and more than two frames) is reported as truncated.
_TRUNCATION_TOLERANCE = 0.02


class VideoDecodeError(ValueError):
    """A video file cannot be opened or decoded; the message names the file."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Container/stream metadata of a video file.

    Attributes:
      path: the file.
      fps: average frame rate (frames per second).
      n_frames: number of frames (declared by the container, else counted by demuxing).
      duration: seconds, ``n_frames / fps``.
      width, height: frame size in pixels.
      codec: decoder name, e.g. ``"h264"``.
    """

    path: str
    fps: float
    n_frames: int
    duration: float
    width: int
    height: int
    codec: str


@dataclasses.dataclass(frozen=True)
class FrameChunk:
    """Consecutive output frames.

    Attributes:
      frames: uint8 ``[T, H, W, 3]`` RGB.
      timestamps: float64 ``[T]`` seconds from the start of the video.
      indices: int64 ``[T]`` index of the source frame each output frame shows.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray


@dataclasses.dataclass(frozen=True)
class Clip:
    """A fixed-length clip; the tail of the last clip may repeat its last frame.

    Attributes:
      frames: uint8 ``[L, H, W, 3]``.
      timestamps: float64 ``[L]`` seconds.
      indices: int64 ``[L]`` source frame indices.
      n_valid: number of real (not padding) frames at the front.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    n_valid: int


def _open(
    path: str, fileobj: BinaryIO | None = None
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    if fileobj is None and not os.path.isfile(path):
        raise VideoDecodeError(f"{path}: no such file")
    try:
        container = av.open(path if fileobj is None else fileobj, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoDecodeError(f"{path}: cannot open as a video: {err}") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.width or not stream.height:
        container.close()
        raise VideoDecodeError(f"{path}: video stream has no decodable codec or frame size")
    return container, stream


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _count_packets(container: av.container.InputContainer, stream) -> int:
    count = 0
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            count += 1
    return count


def probe(path: str | os.PathLike) -> VideoInfo:
    """Metadata of ``path`` without decoding frames (falls back to demuxing to count)."""
    path = os.fspath(path)
    container, stream = _open(path)
    try:
        fps = _stream_fps(stream)
        n_frames = int(stream.frames or 0)
        if n_frames <= 0:
            try:
                n_frames = _count_packets(container, stream)
            except av.FFmpegError as err:
                raise VideoDecodeError(f"{path}: cannot read packets: {err}") from None
        if fps <= 0:
            raise VideoDecodeError(f"{path}: video stream has no frame rate")
        return VideoInfo(
            path=path,
            fps=fps,
            n_frames=n_frames,
            duration=n_frames / fps,
            width=int(stream.width),
            height=int(stream.height),
            codec=stream.codec_context.name,
        )
    finally:
        container.close()


def _target_size(
    width: int, height: int, size: int | tuple[int, int] | None, resize: ResizeMode
) -> tuple[tuple[int, int] | None, tuple[int, int, int, int] | None]:
    """(scaled (w, h) or None, crop box (x0, y0, w, h) or None) for the transform."""
    if size is None:
        return None, None
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if resize == "stretch":
        return (out_w, out_h), None
    if resize != "crop":
        raise ValueError(f"resize must be 'crop' or 'stretch', got {resize!r}")
    scale = max(out_w / width, out_h / height)
    scaled_w = max(out_w, round(width * scale))
    scaled_h = max(out_h, round(height * scale))
    x0, y0 = (scaled_w - out_w) // 2, (scaled_h - out_h) // 2
    return (scaled_w, scaled_h), (x0, y0, out_w, out_h)


def _decoded_frames(path: str, container, stream) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the first frame, frame) for every decoded frame, in display order."""
    fps = _stream_fps(stream) or 25.0
    t0 = None
    index = 0
    try:
        for frame in container.decode(stream):
            t = frame.time if frame.pts is not None else None
            t = index / fps if t is None else float(t)
            if t0 is None:
                t0 = t
            yield t - t0, frame
            index += 1
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{path}: decoding failed after {index} frames: {err}") from None


def iter_frames(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    resize: ResizeMode = "crop",
    interpolation: str = "BICUBIC",
    chunk_size: int = 64,
    max_frames: int | None = None,
    check_length: bool = True,
    fileobj: BinaryIO | None = None,
) -> Iterator[FrameChunk]:
    """Stream ``path`` as :class:`FrameChunk` s of at most ``chunk_size`` frames.

    Args:
      path: any file PyAV/FFmpeg decodes.
      fps: target frame rate (sample-and-hold, see module docstring); ``None`` = native.
      size: output ``(H, W)`` or an int for a square; ``None`` keeps the source size.
      resize: ``"crop"`` (cover then centre crop) or ``"stretch"`` (plain resize).
      interpolation: swscale interpolation name (``"BICUBIC"``, ``"BILINEAR"``, ``"AREA"``).
      chunk_size: frames per yielded chunk (bounds memory).
      max_frames: stop after this many output frames.
      check_length: raise :class:`VideoDecodeError` if a full decode ends well before the
        container's declared frame count (a truncated file).
      fileobj: read the container from this binary file object instead (a pipe or a
        growing file, :mod:`vau_jax.stream`; it needs only ``read``); ``path`` then only
        names it in errors. MPEG-TS and Matroska can be read this way while still written.
    """
    path = os.fspath(path)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    container, stream = _open(path, fileobj)
    stream.thread_type = "AUTO"
    declared = int(stream.frames or 0)
    scaled, crop = _target_size(stream.width, stream.height, size, resize)
    buf: list[np.ndarray] = []
    times: list[float] = []
    idx: list[int] = []
    n_out = 0
    n_src = 0

    def to_array(frame: av.VideoFrame) -> np.ndarray:
        if scaled is not None:
            frame = frame.reformat(
                width=scaled[0], height=scaled[1], format="rgb24", interpolation=interpolation
            )
            arr = frame.to_ndarray()
        else:
            arr = frame.to_ndarray(format="rgb24")
        if crop is not None:
            x0, y0, w, h = crop
            arr = arr[y0 : y0 + h, x0 : x0 + w]
        return np.ascontiguousarray(arr)

    def flush() -> FrameChunk:
        chunk = FrameChunk(
            frames=np.stack(buf),
            timestamps=np.asarray(times, np.float64),
            indices=np.asarray(idx, np.int64),
        )
        buf.clear()
        times.clear()
        idx.clear()
        return chunk

    try:
        held: tuple[float, int, av.VideoFrame] | None = None  # last source frame seen
        held_array: np.ndarray | None = None
        held_array_index = -1
        for t, frame in _decoded_frames(path, container, stream):
            if max_frames is not None and n_out >= max_frames:
                break
            src_index = n_src
            n_src += 1
            if fps is None:
                buf.append(to_array(frame))
                times.append(t)
                idx.append(src_index)
                n_out += 1
            else:
                # Emit grid times t_k < t (they show the previous frame), then hold this one.
                eps = 1e-6
                while held is not None and n_out / fps < t - eps:
                    if max_frames is not None and n_out >= max_frames:
                        break
                    if held_array_index != held[1]:
                        held_array, held_array_index = to_array(held[2]), held[1]
                    buf.append(held_array)
                    times.append(n_out / fps)
                    idx.append(held[1])
                    n_out += 1
                    if len(buf) >= chunk_size:
                        yield flush()
                held = (t, src_index, frame)
            if len(buf) >= chunk_size:
                yield flush()
        else:
            if fps is not None and held is not None:
                # The last source frame covers grid times up to its own timestamp.
                while n_out / fps <= held[0] + 1e-6:
                    if max_frames is not None and n_out >= max_frames:
                        break
                    if held_array_index != held[1]:
                        held_array, held_array_index = to_array(held[2]), held[1]
                    buf.append(held_array)
                    times.append(n_out / fps)
                    idx.append(held[1])
                    n_out += 1
                    if len(buf) >= chunk_size:
                        yield flush()
            if n_src == 0:
                raise VideoDecodeError(f"{path}: no frame could be decoded")
            short = declared - n_src
            if check_length and declared and short > max(2, _TRUNCATION_TOLERANCE * declared):
                raise VideoDecodeError(
                    f"{path}: truncated or corrupt: decoded {n_src} of {declared} declared frames"
                )
        if buf:
            yield flush()
    finally:
        container.close()


def read_frames(path: str | os.PathLike, **kwargs) -> FrameChunk:
    """All output frames of :func:`iter_frames` in one chunk (for short videos only)."""
    chunks = list(iter_frames(path, **kwargs))
    if not chunks:
        raise VideoDecodeError(f"{os.fspath(path)}: no frames in the requested range")
    return FrameChunk(
        frames=np.concatenate([c.frames for c in chunks]),
        timestamps=np.concatenate([c.timestamps for c in chunks]),
        indices=np.concatenate([c.indices for c in chunks]),
    )


def iter_clips(
    path: str | os.PathLike,
    clip_len: int = 16,
    *,
    stride: int | None = None,
    drop_last: bool = False,
    **kwargs,
) -> Iterator[Clip]:
    """Fixed-length clips of ``clip_len`` output frames every ``stride`` frames.

    ``stride=None`` gives non-overlapping snippets (the 16-frame snippets of the UCF-Crime /
    XD-Violence feature protocols). A last partial clip is padded by repeating its last frame
    (``n_valid`` tells how many are real) unless ``drop_last``. Other keyword arguments go to
    :func:`iter_frames`. Memory is bounded by ``clip_len + chunk_size`` frames.
    """
    if clip_len <= 0:
        raise ValueError(f"clip_len must be positive, got {clip_len}")
    stride = clip_len if stride is None else stride
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    frames: list[np.ndarray] = []
    times: list[float] = []
    idx: list[int] = []
    skip = 0  # frames still to drop before the next clip starts (stride > clip_len)
    n_new = 0  # frames appended since the last emitted clip
    for chunk in iter_frames(path, **kwargs):
        for f, t, i in zip(chunk.frames, chunk.timestamps, chunk.indices):
            if skip:
                skip -= 1
                continue
            frames.append(f)
            times.append(float(t))
            idx.append(int(i))
            n_new += 1
            if len(frames) == clip_len:
                yield Clip(np.stack(frames), np.asarray(times), np.asarray(idx, np.int64), clip_len)
                keep = max(0, clip_len - stride)
                skip = max(0, stride - clip_len)
                del frames[: clip_len - keep], times[: clip_len - keep], idx[: clip_len - keep]
                n_new = 0
    if n_new > 0 and not drop_last:
        n_valid = len(frames)
        pad = clip_len - n_valid
        yield Clip(
            np.stack(frames + [frames[-1]] * pad),
            np.asarray(times + [times[-1]] * pad),
            np.asarray(idx + [idx[-1]] * pad, np.int64),
            n_valid,
        )
