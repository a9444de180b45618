"""Reading a UBnormal / ShanghaiTech tree for T-VAU: videos with their frame truth,
frames at given indices, and the SynthVAD ``meta.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vau_jax.data.formats.record import NORMAL, VideoRecord, format_error
from vau_jax.data.tvau_dataset.records import DATASETS, SPLITS, VideoInput


def _images(folder: str) -> list[str]:
    from vau_jax.data.datasets import IMAGE_EXTENSIONS

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise format_error(folder, None, "no frame images")
    return [os.path.join(folder, n) for n in names]


def read_frames_at(path: str, indices: list[int]) -> dict[int, np.ndarray]:
    """``{t: uint8 [H, W, 3]}`` of native frames ``indices`` of a video file or frame folder."""
    want = set(int(t) for t in indices)
    if os.path.isdir(path):
        from PIL import Image

        out = {}
        for t, file in enumerate(_images(path)):
            if t in want:
                with Image.open(file) as img:
                    out[t] = np.asarray(img.convert("RGB"))
        return out
    from vau_jax.data.video import iter_frames

    out = {}
    for chunk in iter_frames(path):
        out.update({int(i): f for i, f in zip(chunk.indices, chunk.frames) if int(i) in want})
    return out


def _synth_meta(root: str) -> dict[str, dict[str, Any]]:
    """SynthVAD ``meta.json`` entries by dataset name (+ ``config``, ``meta_path``), or {}."""
    path = os.path.join(root, "meta.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        return {
            v["name"]: {**v, "config": meta["configs"][v["split"]], "meta_path": path}
            for v in meta["videos"]
        }
    except (ValueError, KeyError, TypeError) as err:
        raise format_error(path, None, f"not a SynthVAD meta.json: {err!r}") from None


def attach_truth(dataset: str, root: str, records: list[VideoRecord]) -> None:
    """Frame truth and anomaly boxes/masks of every record the tree annotates (training
    videos too: ``read_layout`` keeps video-level labels only for them)."""
    from vau_jax.data.formats.shanghaitech import read_shanghaitech
    from vau_jax.data.formats.ubnormal import read_ubnormal_video

    testing = os.path.join(root, "testing")
    masks = {}
    if dataset == "shanghaitech" and os.path.isdir(os.path.join(testing, "test_frame_mask")):
        masks = {r.id: r for r in read_shanghaitech(testing, boxes=True)}
    for rec in records:
        annot = os.path.splitext(rec.path or "")[0] + "_annotations"
        if dataset == "ubnormal" and not rec.intervals and os.path.isdir(annot):
            full = read_ubnormal_video(annot, rec.path)
        elif rec.id in masks:
            full = masks[rec.id]
        else:
            continue
        rec.intervals, rec.tracks, rec.masks_path = full.intervals, full.tracks, full.masks_path
        rec.n_frames = rec.n_frames or full.n_frames
    for rec in records:
        check_track_masks(rec)


def check_track_masks(rec: VideoRecord) -> None:
    """A UBnormal track that no mask pixel belongs to cannot supervise T-VAU (no box, no
    object to describe): ``FormatError`` naming the track file and the object id."""
    if not rec.masks_path or not os.path.isdir(rec.masks_path):
        return
    empty = sorted(int(t) for t, rows in rec.tracks.items() if not len(rows))
    if empty:
        path = os.path.join(rec.masks_path, f"{rec.id}_tracks.txt")
        raise format_error(
            path, None, f"object id {empty[0]} has no pixel in any of the video's _gt.png masks"
        )


def _video_input(rec: VideoRecord, split: str, synth: dict | None, fps: float | None) -> VideoInput:
    if rec.path and os.path.isdir(rec.path):
        files = _images(rec.path)
        from PIL import Image

        with Image.open(files[0]) as img:
            width, height = img.size
        rate, n = rec.fps or (synth or {}).get("fps") or fps, len(files)
        if not rate:
            raise format_error(rec.path, None, "a frame folder has no frame rate: pass fps=")
    else:
        from vau_jax.data.video import probe

        info = probe(rec.path)
        rate, n, width, height = rec.fps or info.fps, info.n_frames, info.width, info.height
    truth = rec.label == NORMAL or bool(rec.intervals)
    n = int(rec.n_frames or n)
    return VideoInput(rec, split, float(rate), n, int(width), int(height), truth, synth)


def read_videos(
    dataset: str, dataset_dir: str, split: str = "all", fps: float | None = None
) -> list[VideoInput]:
    """The videos of ``split`` (train, validation, test or all) of a dataset tree, with frame
    truth; ``validation`` only where the layout has one (UBnormal's)."""
    from vau_jax.data.formats.layouts import read_layout

    if dataset not in DATASETS:
        raise ValueError(f"--dataset: unknown dataset {dataset!r}; expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"--split: unknown split {split!r}; expected one of {SPLITS}")
    layout = read_layout(dataset, dataset_dir)
    synth = _synth_meta(dataset_dir)
    out = []
    for s in ("train", "validation", "test"):
        if split in (s, "all") and s in layout:
            attach_truth(dataset, dataset_dir, layout[s])
            out += [_video_input(r, s, synth.get(r.id), fps) for r in layout[s]]
    if not out:
        which = "" if split == "all" else f"{split} "
        raise format_error(dataset_dir, None, f"no {which}videos in this {dataset} layout")
    return out
