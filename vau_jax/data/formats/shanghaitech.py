"""ShanghaiTech Campus test ground truth: per-frame label ``.npy`` + pixel-mask ``.npy``.

::

    ROOT/test_frame_mask/01_0014.npy     # uint8/bool [T]: 1 = anomalous frame
    ROOT/test_pixel_mask/01_0014.npy     # uint8/bool [T, H, W]: anomalous pixels (optional)
    ROOT/testing/frames/01_0014/         # the frames (optional; becomes record.path)

Intervals are the runs of 1s (0-based, half-open). With ``boxes=True`` the pixel masks are
read (memory-mapped, one frame at a time) and each anomalous frame's mask gives one box in
the single track ``1`` (the dataset has no object identities), rows ``frame, x1, y1, x2, y2``.
``.npy`` files are loaded with ``allow_pickle=False`` after their header is checked against
the file (:mod:`vau_jax.data.formats.npy`); labels and masks must be bool / integer / float.
"""

from __future__ import annotations

import os

import numpy as np

from vau_jax.data.formats.npy import load_npy
from vau_jax.data.formats.record import NORMAL, FormatError, VideoRecord

ANOMALY = "Anomaly"


def _load_npy(path: str, mmap: bool = False) -> np.ndarray:
    arr = load_npy(path, mmap=mmap)
    if arr.dtype.kind not in "biuf":
        raise FormatError(f"{path}: expected a bool / integer / float array, got {arr.dtype}")
    return arr


def runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` runs of non-zero values of a 1-D array."""
    x = np.concatenate([[0], (np.asarray(labels) != 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(x))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]


def _mask_boxes(mask_path: str, n_frames: int) -> np.ndarray:
    masks = _load_npy(mask_path, mmap=True)
    if masks.ndim != 3:
        raise FormatError(f"{mask_path}: expected a [T, H, W] mask array, got shape {masks.shape}")
    if masks.shape[0] != n_frames:
        raise FormatError(
            f"{mask_path}: {masks.shape[0]} mask frames but the frame labels have {n_frames}"
        )
    rows = []
    for t in range(masks.shape[0]):
        ys, xs = np.nonzero(masks[t])
        if len(xs):
            rows.append([t, xs.min(), ys.min(), xs.max(), ys.max()])
    return np.asarray(rows, np.int64).reshape(-1, 5)


def read_shanghaitech(root: str | os.PathLike, *, boxes: bool = False) -> list[VideoRecord]:
    """Read every video of ``ROOT/test_frame_mask`` (sorted by id)."""
    root = os.fspath(root)
    label_dir = os.path.join(root, "test_frame_mask")
    if not os.path.isdir(label_dir):
        raise FormatError(f"{root}: missing test_frame_mask/ directory")
    records = []
    for name in sorted(os.listdir(label_dir)):
        if not name.endswith(".npy"):
            continue
        vid = name[: -len(".npy")]
        label_path = os.path.join(label_dir, name)
        labels = _load_npy(label_path)
        if labels.ndim != 1:
            raise FormatError(f"{label_path}: expected a 1-D frame label array, got {labels.shape}")
        values = set(np.unique(labels).tolist())
        if not values <= {0, 1}:
            raise FormatError(
                f"{label_path}: frame labels must be 0/1, got values {sorted(values)}"
            )
        intervals = runs(labels)
        mask_path = os.path.join(root, "test_pixel_mask", name)
        has_mask = os.path.isfile(mask_path)
        tracks = {}
        if boxes and has_mask:
            rows = _mask_boxes(mask_path, len(labels))
            if len(rows):
                tracks = {1: rows}
        frames_dir = os.path.join(root, "testing", "frames", vid)
        records.append(
            VideoRecord(
                id=vid,
                path=frames_dir if os.path.isdir(frames_dir) else None,
                n_frames=int(len(labels)),
                label=ANOMALY if intervals else NORMAL,
                intervals=intervals,
                tracks=tracks,
                masks_path=mask_path if has_mask else None,
                extra={"dataset": "shanghaitech", "scene": vid.split("_")[0]},
            )
        )
    return records
