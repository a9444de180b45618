"""Datasets are config: ``config.dataset`` + ``config.dataset_dir`` -> train/test videos.

    ds = load_dataset(config)          # cheap: reads annotation files, decodes nothing
    for video in ds.split("train"): ...

``config.dataset`` is one of :data:`DATASETS`:

* ``synthvad`` (default): the embedded synthetic dataset, rendered once by its tfds builder
  into ArrayRecord under ``<data_dir>/tfds`` (``config.synthvad``, ``num_train_videos``,
  ``num_test_videos``); every later read decodes those records;
* ``ucf_crime``, ``xd_violence``, ``tad``, ``ubnormal``, ``shanghaitech``, ``folder``: a
  dataset root ``config.dataset_dir`` in that dataset's published layout
  (:func:`vau_jax.data.formats.layouts.read_layout`), videos decoded with PyAV at the
  method's frame rate, plus UCA caption JSON when present.

Each :class:`Video` is a :class:`~vau_jax.data.features.VideoSource` for the feature store
and carries the ground truth the layout has: the video-level ``label`` always; anomalous
intervals only where the layout gives them (test videos; SynthVAD and ``folder`` rows with
times). Training videos of the published datasets carry video-level labels only (weak
supervision). :meth:`Video.frame_labels` maps intervals onto exactly the frames an encoder
saw (their source frame numbers or timestamps).

Metric names per dataset (:data:`METRICS`): frame ``AUC_O`` / ``AUC_A`` (UCF-Crime, TAD,
folder, SynthVAD), ``AP_trapz`` / ``AP_step`` (XD-Violence), ``micro_AUC`` / ``macro_AUC``
(UBnormal, ShanghaiTech).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vau_jax.data.formats.record import NORMAL, FormatError, VideoRecord, format_error
from vau_jax.data.frames import (
    FrameSpec,
    centre_crop,
    prepare_chunks,
    resample_array,
    resize_crop,
)
from vau_jax.data.video import FrameChunk, iter_frames, probe

DATASETS = ("synthvad", "ucf_crime", "xd_violence", "tad", "ubnormal", "shanghaitech", "folder")
METRICS = {
    "synthvad": "frame_auc",
    "ucf_crime": "frame_auc",
    "tad": "frame_auc",
    "folder": "frame_auc",
    "xd_violence": "xd_ap",
    "ubnormal": "ubnormal_auc",
    "shanghaitech": "ubnormal_auc",
}
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass
class Video:
    """One video of a dataset split, with the ground truth its layout gives.

    Attributes:
      id: unique within the dataset.
      split: ``"train"`` or ``"test"``.
      label: ``"Normal"`` or the class name (the video-level label).
      fps: native frame rate (frames per second) when known.
      n_frames: native frame count when known.
      frame_intervals: anomalous native frames, 0-based half-open ``[s, e)`` (layouts that
        count frames); empty when unknown or normal.
      intervals_s: anomalous intervals in seconds, half-open (layouts that give seconds).
      captions: ``(start_s, end_s, sentence)`` caption segments (UCA), when present.
      info: layout extras (SynthVAD: anomaly type, descriptions, spatial word, ...).
    """

    id: str
    split: str
    label: str = NORMAL
    fps: float | None = None
    n_frames: int | None = None
    frame_intervals: tuple[tuple[int, int], ...] = ()
    intervals_s: tuple[tuple[float, float], ...] = ()
    captions: tuple[tuple[float, float, str], ...] = ()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        """The video-level label: anything but ``Normal``."""
        return self.label != NORMAL

    @property
    def has_frame_truth(self) -> bool:
        """Whether anomalous frames are known (test videos; normal videos trivially)."""
        return bool(self.frame_intervals or self.intervals_s) or not self.is_anomalous

    def frame_labels(self, indices: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
        """uint8 ``[T]`` labels of the encoded frames (their source frame ``indices`` and
        ``timestamps`` in seconds, as the feature store records them).

        Raises ``ValueError`` for an anomalous video without interval ground truth (a
        weakly labelled training video).
        """
        if not self.is_anomalous:
            return np.zeros(len(indices), np.uint8)
        if self.frame_intervals:
            idx = np.asarray(indices)
            out = np.zeros(len(idx), bool)
            for s, e in self.frame_intervals:
                out |= (idx >= s) & (idx < e)
            return out.astype(np.uint8)
        if self.intervals_s:
            t = np.asarray(timestamps)
            out = np.zeros(len(t), bool)
            for s, e in self.intervals_s:
                out |= (t >= s - 1e-6) & (t < e - 1e-6)
            return out.astype(np.uint8)
        raise ValueError(f"video {self.id!r} ({self.split}): no frame-level ground truth")

    def anomaly_seconds(self) -> list[tuple[float, float]]:
        """The anomalous intervals in seconds (frame intervals divided by ``fps``)."""
        if self.intervals_s:
            return [(float(s), float(e)) for s, e in self.intervals_s]
        if self.frame_intervals:
            if not self.fps:
                raise ValueError(f"video {self.id!r}: frame intervals but no fps")
            return [(s / self.fps, e / self.fps) for s, e in self.frame_intervals]
        return []

    # -- VideoSource -----------------------------------------------------------------------

    def content_hash(self) -> str:
        raise NotImplementedError

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        raise NotImplementedError

    def expected_frames(self, spec: FrameSpec) -> int | None:
        n, fps = self.n_frames, self.fps
        if not n or not fps:
            return None
        out = n if spec.fps is None else int(np.floor((n - 1) / fps * spec.fps + 1e-6)) + 1
        limit = spec.max_frames()
        out = out if limit is None else min(out, limit)
        return spec.count if spec.count else out


@dataclasses.dataclass
class FileVideo(Video):
    """A video file decoded with PyAV."""

    path: str = ""
    hashes: FileHashes | None = None

    def content_hash(self) -> str:
        return (self.hashes or FileHashes(None)).get(self.path)

    def load_meta(self) -> None:
        """Reads the frame rate and count from the file when the layout gave none."""
        if self.fps is None or self.n_frames is None:
            info = probe(self.path)
            self.fps = self.fps or info.fps
            self.n_frames = self.n_frames or info.n_frames

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        self.load_meta()
        chunks = iter_frames(
            self.path,
            fps=spec.fps,
            size=spec.shorter_side,
            resize="crop",
            max_frames=spec.max_frames(),
        )
        if spec.shorter_side != spec.size:
            chunks = (
                FrameChunk(centre_crop(c.frames, spec.size), c.timestamps, c.indices)
                for c in chunks
            )
        n = self.expected_frames(dataclasses.replace(spec, count=0)) if spec.count else None
        return prepare_chunks(chunks, spec, n)

    def expected_frames(self, spec: FrameSpec) -> int | None:
        self.load_meta()
        return super().expected_frames(spec)


@dataclasses.dataclass
class FrameFolderVideo(Video):
    """A video stored as one image per frame (ShanghaiTech test videos), at ``fps``."""

    path: str = ""

    def _files(self) -> list[str]:
        names = sorted(n for n in os.listdir(self.path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise format_error(self.path, None, "no frame images")
        return [os.path.join(self.path, n) for n in names]

    def content_hash(self) -> str:
        h = hashlib.sha1()
        for f in self._files():
            h.update(os.path.basename(f).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
        return h.hexdigest()[:16]

    def _array(self) -> np.ndarray:
        from PIL import Image

        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in self._files()])

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        frames = self._array()
        self.n_frames = len(frames)
        n = self.expected_frames(dataclasses.replace(spec, count=0)) if spec.count else None
        return prepare_chunks(resample_array(frames, float(self.fps), spec), spec, n)

    def expected_frames(self, spec: FrameSpec) -> int | None:
        if self.n_frames is None:
            self.n_frames = len(self._files())
        return super().expected_frames(spec)


@dataclasses.dataclass
class SynthVideo(Video):
    """A SynthVAD video: record ``index`` of a prepared tfds split (rendered once)."""

    source: Any = None  # the split's tfds data source
    index: int = 0
    source_key: str = ""  # the builder config (its name hashes the SynthConfig)

    def record(self) -> dict[str, Any]:
        """The full tfds record (frames, labels, masks, tracks, captions, ...)."""
        return self.source[self.index]

    def content_hash(self) -> str:
        # Rendering is deterministic: the builder config + id determine the content.
        return hashlib.sha1(f"{self.source_key}/{self.id}".encode()).hexdigest()[:16]

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        frames = self.record()["frames"]
        n = self.expected_frames(dataclasses.replace(spec, count=0)) if spec.count else None
        return prepare_chunks(resample_array(frames, float(self.fps), spec), spec, n)


class FileHashes:
    """Content hashes (SHA-1 of the bytes) of video files, remembered in a JSON file keyed by
    path, size and modification time, so unchanged files are not re-read on every run."""

    _lock = threading.Lock()

    def __init__(self, cache_path: str | None):
        self.cache_path = cache_path
        self._known: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._known is None:
            self._known = {}
            if self.cache_path and os.path.isfile(self.cache_path):
                try:
                    with open(self.cache_path, encoding="utf-8") as f:
                        self._known = dict(json.load(f))
                except (OSError, ValueError):
                    self._known = {}  # a damaged cache is only a cache: recompute
        return self._known

    def get(self, path: str) -> str:
        st = os.stat(path)
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        with self._lock:
            known = self._load()
            if key in known:
                return known[key]
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = h.hexdigest()[:16]
        with self._lock:
            known[key] = digest
            if self.cache_path:
                from vau_jax.data.features import atomic_write

                atomic_write(self.cache_path, lambda f: json.dump(known, f), mode="w")
        return digest


@dataclasses.dataclass
class Dataset:
    """Train and test videos of one dataset (see the module docstring).

    Attributes:
      name: one of :data:`DATASETS`.
      root: the dataset folder (``None`` for SynthVAD).
      videos: ``{"train": [...], "test": [...]}``, each sorted by id (and ``"validation"``
        where the layout has one: UBnormal).
      class_names: the anomaly classes, in a stable order.
      feature_layout: ``"i3d"`` / ``"vadclip"`` when the layout holds pre-extracted features
        instead of videos (VAD-LLaMA only), else ``None``.
    """

    name: str
    root: str | None
    videos: dict[str, list[Video]]
    class_names: tuple[str, ...]
    feature_layout: str | None = None

    @property
    def metric(self) -> str:
        """The dataset's evaluation protocol: ``frame_auc``, ``xd_ap`` or ``ubnormal_auc``."""
        return METRICS[self.name]

    def split(self, name: str) -> list[Video]:
        if name not in self.videos:
            raise ValueError(
                f"dataset {self.name!r} has no split {name!r}; has {list(self.videos)}"
            )
        return self.videos[name]


# ---------------------------------------------------------------------------- SynthVAD


def prepared_synthvad(tfds_dir: str, split: str, num_videos: int, synth_cfg: Any) -> Any:
    """The tfds builder of a SynthVAD split holding at least ``num_videos`` videos: an
    existing complete build of that split and render config with the fewest videos >= the
    request (splits are prefix-stable, so its first videos are the requested ones), else a
    new build of exactly ``num_videos`` (rendered once)."""
    import re

    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.builder import builder_config

    name = builder_config(split, num_videos, synth_cfg).name
    suffix = name[len(f"{split}{num_videos}") :]
    pattern = re.compile(rf"^{re.escape(split)}(\d+){re.escape(suffix)}$")
    best = None
    root = os.path.join(tfds_dir, "synthvad")
    for entry in os.listdir(root) if os.path.isdir(root) else []:
        m = pattern.match(entry)
        if not m or int(m.group(1)) < num_videos:
            continue
        done = any(
            os.path.isfile(os.path.join(root, entry, v, "dataset_info.json"))
            for v in os.listdir(os.path.join(root, entry))
        )
        if done and (best is None or int(m.group(1)) < best):
            best = int(m.group(1))
    return synthvad.prepare(tfds_dir, split, best or num_videos, synth_cfg)


def synthvad_dataset(
    data_dir: str,
    synth_cfg: Any,
    num_train: int,
    num_test: int,
    num_pretrain: int = 0,
    num_validation: int = 0,
) -> Dataset:
    """SynthVAD's first ``num_train`` / ``num_test`` videos, rendered once into ArrayRecord
    by its tfds builder under ``<data_dir>/tfds`` (:func:`prepared_synthvad`); a split of 0
    videos is left empty. ``num_pretrain > 0`` adds the ``"pretrain"`` split (disjoint seeds,
    :mod:`vau_jax.data.synthvad.splits`: encoder pretraining data, never a method's train or
    test videos); ``num_validation > 0`` the ``"validation"`` split (for choices made on
    neither train nor test videos)."""
    import dataclasses as dc

    from vau_jax.data import synthvad

    cfg_key = hashlib.sha1(json.dumps(dc.asdict(synth_cfg), sort_keys=True).encode()).hexdigest()
    out: dict[str, list[Video]] = {}
    counts = [("train", num_train), ("test", num_test)]
    counts += [("pretrain", num_pretrain)] if int(num_pretrain) > 0 else []
    counts += [("validation", num_validation)] if int(num_validation) > 0 else []
    for split, n in counts:
        if int(n) <= 0:
            out[split] = []
            continue
        builder = prepared_synthvad(os.path.join(data_dir, "tfds"), split, int(n), synth_cfg)
        source = builder.as_data_source(split=split)
        # Rendering is deterministic: render config + split + id determine the content.
        key = f"synthvad/{builder.version}/{cfg_key[:12]}/{split}"
        meta = _synth_meta(builder, source, split)[: int(n)]
        out[split] = [
            SynthVideo(source=source, index=i, source_key=key, **row) for i, row in enumerate(meta)
        ]
    return Dataset("synthvad", None, out, tuple(synthvad.ANOMALY_TYPES))


def _synth_meta(builder: Any, source: Any, split: str) -> list[dict[str, Any]]:
    """Per-video ground truth of a prepared split (read once from the records, then cached
    as JSON beside them): everything but the frames and masks."""
    from vau_jax.data.synthvad.types import label_runs

    path = os.path.join(builder.data_path, f"videos_{split}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    else:
        rows = []
        for i in range(len(source)):
            r = source[i]
            text = {
                k: r[k].decode() if isinstance(r[k], bytes) else str(r[k])
                for k in (
                    "video_id",
                    "anomaly_type",
                    "spatial_word",
                    "scene_description",
                    "event_description",
                )
            }
            kind = text["anomaly_type"]
            rows.append(
                {
                    "id": text["video_id"],
                    "label": NORMAL if kind == "normal" else kind,
                    "fps": float(r["fps"]),
                    "n_frames": int(len(r["labels"])),
                    "frame_intervals": label_runs(r["labels"]).tolist(),
                    "info": {
                        "anomaly_type": kind,
                        "spatial_word": text["spatial_word"],
                        "scene_description": text["scene_description"],
                        "event_description": text["event_description"],
                        "seed": int(r["seed"]),
                    },
                }
            )
        from vau_jax.data.features import atomic_write

        atomic_write(path, lambda f: json.dump(rows, f), mode="w")
    for r in rows:
        r["split"] = split
        r["frame_intervals"] = tuple(tuple(x) for x in r["frame_intervals"])
    return rows


# ----------------------------------------------------------------------- published layouts


def _captions(root: str, split: str) -> dict[str, tuple[tuple[float, float, str], ...]]:
    """UCA caption segments of a split when the dataset folder has the UCA JSON."""
    from vau_jax.data.formats.uca import read_uca

    names = {"train": ("UCFCrime_Train.json",), "test": ("UCFCrime_Test.json",)}[split]
    out: dict[str, tuple] = {}
    for name in names:
        for folder in (root, os.path.join(root, "UCA")):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                for rec in read_uca(path):
                    out[rec.id] = tuple(tuple(s) for s in rec.extra.get("segments", ()))
    return out


def _video_from_record(
    rec: VideoRecord, split: str, hashes: FileHashes, captions: dict, fps: float | None
) -> Video:
    if not rec.path:
        raise format_error(str(rec.id), None, "the layout names no video file")
    common = dict(
        id=rec.id,
        split=split,
        label=rec.label,
        fps=rec.fps or None,
        n_frames=rec.n_frames,
        frame_intervals=tuple((int(s), int(e)) for s, e in rec.intervals),
        intervals_s=tuple(tuple(x) for x in rec.extra.get("intervals_s", ())),
        captions=captions.get(rec.id, ()),
        info={k: v for k, v in rec.extra.items() if isinstance(v, (str, int, float, bool))},
    )
    if os.path.isdir(rec.path):
        common["fps"] = common["fps"] or fps
        if not common["fps"]:
            raise format_error(
                rec.path, None, "a frame folder needs a frame rate: set --config.dataset_fps"
            )
        return FrameFolderVideo(path=rec.path, **common)
    if not os.path.isfile(rec.path):
        raise format_error(rec.path, None, "missing (named by the dataset's annotation files)")
    return FileVideo(path=rec.path, hashes=hashes, **common)


def layout_dataset(
    name: str,
    root: str,
    cache_dir: str,
    fps: float | None = None,
    splits: dict[str, list[Any]] | None = None,
) -> Dataset:
    """A published-layout dataset root -> :class:`Dataset` (no decoding). ``splits``: the
    root's :func:`~vau_jax.data.formats.layouts.read_layout` output when the caller has read
    it already (read only, not kept: each video copies the values it needs)."""
    from vau_jax.data.formats.layouts import read_layout

    if not root:
        raise ValueError(f"--config.dataset={name} needs --config.dataset_dir=DIR")
    if not os.path.isdir(root):
        raise format_error(root, None, "no such dataset folder")
    if splits is None:
        splits = read_layout(name, root)
    hashes = FileHashes(os.path.join(cache_dir, "file_hashes.json"))
    videos: dict[str, list[Video]] = {}
    for split in [*SPLITS, *(s for s in splits if s not in SPLITS)]:  # + UBnormal validation
        caps = _captions(root, split) if name in ("ucf_crime", "folder") else {}
        recs = sorted(splits.get(split, []), key=lambda r: r.id)
        videos[split] = [_video_from_record(r, split, hashes, caps, fps) for r in recs]
    seen: dict[str, str] = {}
    for split, vids in videos.items():
        for v in vids:
            if v.id in seen:
                raise FormatError(f"{root}: video id {v.id!r} is in both {seen[v.id]} and {split}")
            seen[v.id] = split
    classes = sorted({v.label for vs in videos.values() for v in vs if v.label != NORMAL})
    return Dataset(name, root, videos, tuple(classes))


def load_dataset(config: Any) -> Dataset:
    """The dataset a method config names (``dataset``, ``dataset_dir``, ``data_dir``,
    ``synthvad``, ``num_train_videos``, ``num_test_videos``, ``dataset_fps``; on SynthVAD
    also ``num_validation_videos``, 0 when absent: the validation split)."""
    name = str(config.get("dataset", "synthvad"))
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if name == "synthvad":
        from vau_jax.data.synthvad import SynthConfig

        return synthvad_dataset(
            config.data_dir,
            SynthConfig(**dict(config.synthvad)),
            int(config.num_train_videos),
            int(config.num_test_videos),
            num_validation=int(config.get("num_validation_videos", 0)),
        )
    fps = config.get("dataset_fps", None)
    return layout_dataset(name, str(config.get("dataset_dir", "")), config.data_dir, fps)


def frame_records(
    videos: Sequence[Video], encoded: Sequence[dict[str, np.ndarray]]
) -> list[VideoRecord]:
    """Ground truth at the encoded frames as :class:`VideoRecord` s (one frame per encoded
    frame, intervals = runs of :meth:`Video.frame_labels`), for the frame-level metrics."""
    from vau_jax.data.synthvad.types import label_runs

    out = []
    for v, feats in zip(videos, encoded):
        labels = v.frame_labels(feats["indices"], feats["timestamps"])
        out.append(
            VideoRecord(
                id=v.id,
                n_frames=len(labels),
                label=v.label,
                intervals=[(int(a), int(b)) for a, b in label_runs(labels)],
            )
        )
    return out


__all__ = [
    "DATASETS",
    "METRICS",
    "ArrayVideo",
    "Dataset",
    "FileVideo",
    "FrameFolderVideo",
    "SynthVideo",
    "Video",
    "frame_records",
    "load_dataset",
    "resize_crop",
]


@dataclasses.dataclass
class ArrayVideo(Video):
    """Frames already in memory (``frames`` uint8 ``[T, H, W, 3]`` at ``fps``): a user's
    clip at prediction time, encoded by the same code path as a dataset video."""

    array: np.ndarray | None = None

    def __post_init__(self) -> None:
        a = np.asarray(self.array)
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8 or not len(a):
            raise ValueError(f"frames must be uint8 [T>0, H, W, 3], got {a.dtype} {a.shape}")
        if not self.fps or self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        self.array, self.n_frames = a, len(a)

    def content_hash(self) -> str:
        return hashlib.sha1(self.array.tobytes()).hexdigest()[:16]

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        n = self.expected_frames(dataclasses.replace(spec, count=0)) if spec.count else None
        return prepare_chunks(resample_array(self.array, float(self.fps), spec), spec, n)
