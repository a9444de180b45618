"""Pre-extracted snippet-feature layouts used by the public VAD code bases.

- ``layout="i3d"`` (RTFM / UR-DMU style): ``DIR/<name>_i3d.npy`` (optionally in class
  sub-folders), float ``[T, 10, 2048]``: T 16-frame snippets x 10 crops.
- ``layout="vadclip"``: ``DIR/<Class>/<name>__<k>.npy``, float ``[T, 512]`` CLIP features of
  crop ``k`` (0-9); the crops of one video are grouped into one record.

Records: ``id`` = ``<name>``, ``path`` = the file (i3d) or the crop-0 file (VadCLIP),
``label`` from the class folder (VadCLIP; ``Testing_Normal_Videos_Anomaly``-style folders and
``Normal*`` names are ``"Normal"``) or from the UCF-Crime / XD-Violence name,
``extra["n_snippets"]`` = T, ``extra["feature_shape"]``, ``extra["crops"]`` (sorted crop
files, VadCLIP). Only the ``.npy`` headers are read, checked against the file size
(:func:`vau_jax.data.formats.npy.read_npy_header`);
:func:`load_features` loads the arrays. ``n_frames`` stays ``None``: the snippet protocol
implies about ``16*T`` frames, but the true count comes from the video or annotation.
"""

from __future__ import annotations

import os
import re
from typing import Literal

import numpy as np

from vau_jax.data.formats.names import ucf_class_from_name
from vau_jax.data.formats.npy import load_npy, read_npy_header
from vau_jax.data.formats.record import NORMAL, FormatError, VideoRecord
from vau_jax.data.formats.xd_violence import xd_labels

Layout = Literal["i3d", "vadclip"]
ANOMALY = "Anomaly"
_I3D_RE = re.compile(r"^(?P<name>.+)_i3d\.npy$")
_VADCLIP_RE = re.compile(r"^(?P<name>.+)__(?P<crop>\d+)\.npy$")


def _header_shape(path: str) -> tuple[int, ...]:
    return read_npy_header(path).shape


def _label(name: str, class_dir: str | None) -> str:
    if class_dir and class_dir != ".":
        if "normal" in class_dir.lower():
            return NORMAL
        return class_dir
    xd = xd_labels(name)
    if xd:
        return xd[0]
    return ucf_class_from_name(name) or ANOMALY


def read_features(root: str | os.PathLike, layout: Layout = "i3d") -> list[VideoRecord]:
    """Index a feature directory (recursively); records sorted by id.

    Raises:
      FormatError: naming the file, if an array has the wrong rank, the crops of a VadCLIP
        video disagree in length, or no feature file is found.
    """
    root = os.fspath(root)
    if layout not in ("i3d", "vadclip"):
        raise ValueError(f"layout must be 'i3d' or 'vadclip', got {layout!r}")
    if not os.path.isdir(root):
        raise FormatError(f"{root}: not a directory")
    pattern = _I3D_RE if layout == "i3d" else _VADCLIP_RE
    found: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for fname in sorted(filenames):
            m = pattern.match(fname)
            if not m:
                continue
            name = m.group("name")
            entry = found.setdefault(name, {"dir": rel, "files": {}})
            crop = int(m.group("crop")) if layout == "vadclip" else 0
            full = os.path.join(dirpath, fname)
            if crop in entry["files"]:
                raise FormatError(
                    f"{full}: duplicate features for {name!r} (also {entry['files'][crop]})"
                )
            entry["files"][crop] = full
    if not found:
        suffix = "<name>_i3d.npy" if layout == "i3d" else "<Class>/<name>__<k>.npy"
        raise FormatError(f"{root}: no feature files named {suffix}")
    records = []
    for name in sorted(found):
        entry = found[name]
        files = [entry["files"][k] for k in sorted(entry["files"])]
        shapes = [_header_shape(f) for f in files]
        want_ndim = 3 if layout == "i3d" else 2
        for f, shape in zip(files, shapes):
            if len(shape) != want_ndim:
                raise FormatError(
                    f"{f}: expected a {want_ndim}-D array "
                    f"({'[T, crops, D]' if layout == 'i3d' else '[T, D]'}), got shape {shape}"
                )
            if shape != shapes[0]:
                raise FormatError(
                    f"{f}: shape {shape} differs from crop file {files[0]} {shapes[0]}"
                )
        extra = {
            "dataset_layout": layout,
            "n_snippets": shapes[0][0],
            "feature_shape": shapes[0],
        }
        if layout == "vadclip":
            extra["crops"] = files
            extra["crop_ids"] = sorted(entry["files"])
        class_dir = entry["dir"] if layout == "vadclip" else None
        label = _label(name, class_dir)
        records.append(VideoRecord(id=name, path=files[0], label=label, extra=extra))
    return records


def load_features(record: VideoRecord, crop: int | None = None) -> np.ndarray:
    """The features of a record from :func:`read_features`.

    Returns:
      ``[T, C, D]`` with all crops when ``crop`` is None, else ``[T, D]`` for one crop.
    """
    if record.extra.get("dataset_layout") == "vadclip":
        crops = record.extra["crops"]
        ids = record.extra["crop_ids"]
        if crop is not None:
            if crop not in ids:
                raise ValueError(f"video {record.id!r}: no crop {crop}; have {ids}")
            return load_npy(crops[ids.index(crop)])
        return np.stack([load_npy(f) for f in crops], axis=1)
    arr = load_npy(record.path)
    return arr if crop is None else arr[:, crop]
