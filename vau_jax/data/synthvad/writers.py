"""Files SynthVAD writes: atomic text/JSON/image/array files, video codecs, shared annotations.

Every file is written atomically (a temp file next to it, then ``os.replace``), so a reader
never sees a half-written file and an interrupted run leaves no partial output under the
final name.

Video codecs (:func:`write_video`):

- ``"h264"``: ``.mp4``, libx264 (falls back to MPEG-4 part 2 when PyAV lacks libx264),
  ``yuv420p``, crf 18, macroblock-tree rate control off (deterministic: the same frames give
  the same bytes) — lossy, the format the real datasets ship.
- ``"ffv1"``: ``.mkv``, FFV1 in ``bgr0`` — lossless: decoding returns the rendered RGB
  frames bit for bit, so a test can compare training on files with training on renders.

The dataset trees are :mod:`vau_jax.data.synthvad.layouts` (``write_layout``). This module
also keeps the flat tree of :func:`write_split` (``python -m vau_jax.data.synthvad
--split=...``), one directory holding every format at once for the format readers' tests::

    videos/<id>.mp4                          every video of the split
    videos/<id>_annotations/<id>_tracks.txt  UBnormal ``track_id,start,end`` (anomalous, not train)
    videos/<id>_annotations/<id>_<f:04d>_gt.png  UBnormal masks, one per frame, 8-bit
    Temporal_Anomaly_Annotation.txt          UCF-Crime ``<id>.mp4  <Class>  s1  e1  s2  e2``
    annotations.txt                          XD-Violence ``<id> s1 e1 [s2 e2 ...]`` (anomalous)
    <split>_list.txt                         the split's videos, ``videos/<id>.mp4`` per line
    meta.json                                fps, frame counts, types, intervals, splits

Train videos carry video-level labels only: the annotation files and UBnormal directories
hold the non-train splits' videos (``meta.json`` keeps every split's ground truth).

Frame conventions: UCF-Crime and XD-Violence intervals are 0-based frame numbers, half-open
``[s, e)`` (``gt[s:e] = 1``, as ``vau_jax.data.formats`` reads them); UCF-Crime holds at most
two intervals, so a third or later run is merged into the second (``s2`` .. last ``e``).
UBnormal track ranges are 0-based and **inclusive** (``start..end``), one track per anomalous
object, ids from 1; its masks hold that id on the object's pixels on anomalous frames.
``meta.json`` intervals are in seconds, half-open. Writing another split into the same
``out`` merges ``meta.json`` and rewrites the annotation files from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from fractions import Fraction
from typing import Any

import numpy as np

from vau_jax.data.synthvad.source import render_split_video
from vau_jax.data.synthvad.types import NORMAL, SynthConfig, SynthVideo, label_runs

UCF_FILE = "Temporal_Anomaly_Annotation.txt"
XD_FILE = "annotations.txt"
META_FILE = "meta.json"
CODECS = ("h264", "ffv1")
VIDEO_EXT = {"h264": ".mp4", "ffv1": ".mkv"}
TRAIN = "train"


def class_name(anomaly_type: str) -> str:
    """UCF-Crime style class name: ``"abandoned_object"`` -> ``"AbandonedObject"``."""
    return "".join(w.capitalize() for w in anomaly_type.split("_"))


def _atomic(path: str, mode: str = "w"):
    """(handle, temp path) of a temp file next to ``path``; ``os.replace`` it when done."""
    fd, tmp = tempfile.mkstemp(
        dir=os.path.dirname(path) or ".", prefix=f".{os.path.basename(path)}.", suffix=".tmp"
    )
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary data files
    return os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8"), tmp


def _commit(tmp: str, path: str) -> None:
    """``os.replace(tmp, path)``; the temp file is removed if that fails."""
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, content: str) -> None:
    """Atomically write a text file (UTF-8)."""
    f, tmp = _atomic(path)
    try:
        with f:
            f.write(content)
    except BaseException:
        os.remove(tmp)
        raise
    _commit(tmp, path)


def write_json(path: str, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    write_text(path, json.dumps(data, indent=1) + "\n")


def _write_image(path: str, image: np.ndarray, fmt: str, **kwargs) -> None:
    from PIL import Image

    arr = np.asarray(image, np.uint8)
    f, tmp = _atomic(path, "wb")
    try:
        with f:
            Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB").save(f, format=fmt, **kwargs)
    except BaseException:
        os.remove(tmp)
        raise
    _commit(tmp, path)


def write_png(path: str, image: np.ndarray) -> None:
    """Atomically write a uint8 [H, W] (grey, 8-bit) or [H, W, 3] (RGB) image as PNG."""
    _write_image(path, image, "PNG")


def write_jpeg(path: str, image: np.ndarray, quality: int = 95) -> None:
    """Atomically write a uint8 [H, W, 3] RGB image as JPEG (lossy)."""
    _write_image(path, image, "JPEG", quality=quality)


def write_npy(path: str, array: np.ndarray) -> None:
    """Atomically write ``array`` as a ``.npy`` file."""
    f, tmp = _atomic(path, "wb")
    try:
        with f:
            np.save(f, np.asarray(array), allow_pickle=False)
    except BaseException:
        os.remove(tmp)
        raise
    _commit(tmp, path)


def write_video(path: str, frames: np.ndarray, fps: float, codec: str = "h264") -> str:
    """Encode uint8 [T, H, W, 3] RGB frames to ``path``; returns the encoder used.

    ``codec`` is ``"h264"`` (mp4; even H, W) or ``"ffv1"`` (lossless; Matroska). The file
    extension is the caller's (see ``VIDEO_EXT``).
    """
    import av  # PyAV

    if codec not in CODECS:
        raise ValueError(f"{path}: unknown codec {codec!r}; expected one of {CODECS}")
    frames = np.ascontiguousarray(frames)
    _, h, w, _ = frames.shape
    if codec == "h264" and (h % 2 or w % 2):
        raise ValueError(f"{path}: yuv420p needs even frame sizes, got {w}x{h}")
    f, tmp = _atomic(path, "wb")
    f.close()
    try:
        container_format = "mp4" if codec == "h264" else "matroska"
        with av.open(tmp, mode="w", format=container_format) as container:
            rate = Fraction(fps).limit_denominator(1001)
            if codec == "ffv1":
                stream = container.add_stream("ffv1", rate=rate)
                stream.pix_fmt = "bgr0"  # RGB planes as stored: lossless for rgb24 input
            else:
                try:
                    stream = container.add_stream("libx264", rate=rate)
                    # mbtree=0: with x264's macroblock-tree rate control, small frames
                    # (64x64, 96x96, 192x192 seen) encoded to different bytes on every call,
                    # decoded frames up to 38 levels apart, so two data dirs written by the
                    # same code trained different models; without it, identical every time.
                    stream.options = {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}
                except (ValueError, av.error.FFmpegError):  # no libx264 in this PyAV build
                    stream = container.add_stream("mpeg4", rate=rate)
                    stream.bit_rate = 4_000_000
                stream.pix_fmt = "yuv420p"
            stream.width, stream.height = w, h
            for img in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(stream.encode(None))
            used = stream.codec_context.name
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return used


def write_mp4(path: str, frames: np.ndarray, fps: float, crf: int = 18) -> str:
    """H.264 mp4 of uint8 [T, H, W, 3] frames (``write_video(..., "h264")``); returns the codec."""
    del crf  # kept for callers of the old signature; the encoder uses crf 18
    return write_video(path, frames, fps, "h264")


def frame_intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """0-based half-open frame runs ``[s, e)`` of a uint8 [T] label vector."""
    return [(int(s), int(e)) for s, e in label_runs(labels)]


def ubnormal_tracks(video: SynthVideo) -> list[tuple[int, int, int, int]]:
    """UBnormal tracks ``(ub_id, start, end_inclusive, index into video.tracks)``.

    One per anomalous track seen on an anomalous frame; ids count from 1.
    """
    out = []
    for i, tr in enumerate(video.tracks):
        on = tr.frames[video.labels[tr.frames] == 1] if tr.anomalous else tr.frames[:0]
        if on.size:
            out.append((len(out) + 1, int(on.min()), int(on.max()), i))
    return out


def ubnormal_masks(video: SynthVideo) -> np.ndarray:
    """uint8 [T, H, W] UBnormal masks: ub id on anomalous objects' pixels on anomalous frames."""
    lut = np.zeros(256, np.uint8)
    for ub_id, _, _, i in ubnormal_tracks(video):
        lut[i + 1] = ub_id
    return lut[video.masks] * video.labels[:, None, None]


def write_ubnormal(video_dir: str, video: SynthVideo, name: str | None = None) -> None:
    """``<name>_annotations/`` with ``_tracks.txt`` and per-frame ``_gt.png`` (anomalous only).

    ``name`` is the video's file name stem (default: its SynthVAD id).
    """
    if video.anomaly_type == NORMAL:
        return
    vid = video.video_id if name is None else name
    annot = os.path.join(video_dir, f"{vid}_annotations")
    os.makedirs(annot, exist_ok=True)
    lines = [f"{ub_id},{s},{e}\n" for ub_id, s, e, _ in ubnormal_tracks(video)]
    write_text(os.path.join(annot, f"{vid}_tracks.txt"), "".join(lines))
    for t, mask in enumerate(ubnormal_masks(video)):
        write_png(os.path.join(annot, f"{vid}_{t:04d}_gt.png"), mask)


def video_meta(video: SynthVideo, split: str) -> dict[str, Any]:
    """The ``meta.json`` entry of one video."""
    return {
        "id": video.video_id,
        "split": split,
        "seed": video.seed,
        "fps": video.fps,
        "n_frames": video.num_frames,
        "height": int(video.frames.shape[1]),
        "width": int(video.frames.shape[2]),
        "anomaly_type": video.anomaly_type,
        "class": "Normal" if video.anomaly_type == NORMAL else class_name(video.anomaly_type),
        "intervals_seconds": [[float(s), float(e)] for s, e in video.intervals],
        "intervals_frames": [list(se) for se in frame_intervals(video.labels)],
        "spatial_word": video.spatial_word,
        "scene_description": video.scene_description,
        "event_description": video.event_description,
    }


def ucf_row(name: str, label: str, runs: list) -> str:
    """One UCF-Crime annotation line ``name  class  s1  e1  s2  e2`` (runs beyond two merged)."""
    runs = [tuple(r) for r in runs]
    if len(runs) > 2:
        runs = [runs[0], (runs[1][0], runs[-1][1])]
    nums = [x for r in runs for x in r] + [-1] * (4 - 2 * len(runs))
    return f"{name}  {label}  " + "  ".join(str(n) for n in nums) + "\n"


def ucf_lines(videos: list[dict[str, Any]]) -> str:
    """UCF-Crime temporal annotation text for ``meta.json`` video entries."""
    return "".join(ucf_row(f"{v['id']}.mp4", v["class"], v["intervals_frames"]) for v in videos)


def xd_lines(videos: list[dict[str, Any]]) -> str:
    """XD-Violence ``annotations.txt`` text (anomalous videos only)."""
    return "".join(
        v.get("name", v["id"]) + "".join(f" {s} {e}" for s, e in v["intervals_frames"]) + "\n"
        for v in videos
        if v["intervals_frames"]
    )


def write_split(
    out: str,
    split: str,
    num_videos: int,
    config: SynthConfig | None = None,
    write_videos: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Render ``split`` into the flat tree (see the module docstring). Returns the merged meta."""
    config = SynthConfig() if config is None else config
    video_dir = os.path.join(out, "videos")
    os.makedirs(video_dir, exist_ok=True)
    meta_path = os.path.join(out, META_FILE)
    meta: dict[str, Any] = {"videos": [], "splits": {}}
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    indices = range(num_videos)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"SynthVAD {split}", unit="video")
    entries = []
    for i in indices:
        video = render_split_video(split, i, config)
        if write_videos:
            write_video(os.path.join(video_dir, f"{video.video_id}.mp4"), video.frames, video.fps)
        if split != TRAIN:  # train videos carry video-level labels only
            write_ubnormal(video_dir, video)
        entries.append(video_meta(video, split))

    ids = {e["id"] for e in entries}
    meta["videos"] = [v for v in meta["videos"] if v["id"] not in ids] + entries
    meta["videos"].sort(key=lambda v: (v["split"], v["id"]))
    meta["splits"][split] = [e["id"] for e in entries]
    meta["configs"] = {**meta.get("configs", {}), split: dataclasses.asdict(config)}
    meta["conventions"] = {
        "intervals_seconds": "half-open [start, end) in seconds",
        "intervals_frames": "0-based half-open [s, e) frame numbers (UCF-Crime, XD-Violence)",
        "ubnormal_tracks": "track_id,start,end with 0-based inclusive frames; ids from 1",
        "annotations": "annotation files hold the non-train splits only (train: weak labels)",
    }
    write_text(
        os.path.join(out, f"{split}_list.txt"), "".join(f"videos/{e['id']}.mp4\n" for e in entries)
    )
    annotated = [v for v in meta["videos"] if v["split"] != TRAIN]
    write_text(os.path.join(out, UCF_FILE), ucf_lines(annotated))
    write_text(os.path.join(out, XD_FILE), xd_lines(annotated))
    write_json(meta_path, meta)
    return meta
