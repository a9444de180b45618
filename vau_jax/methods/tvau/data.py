"""T-VAU data: the dataset in a published layout, anomaly masks, tapped features, prompts.

* :func:`ensure_layout`: SynthVAD written once into the data dir in the UBnormal (or
  ShanghaiTech) layout, atomically, when ``config.dataset_dir`` is empty; a user's tree
  otherwise. Everything is then read through the real readers
  (:func:`vau_jax.data.datasets.layout_dataset` for the videos,
  :func:`vau_jax.data.formats.layouts.read_layout` for tracks and masks).
* :func:`anomaly_masks`: the anomalous-object pixel masks of chosen native frames (UBnormal:
  the per-frame ``_gt.png`` id masks; ShanghaiTech: the ``test_pixel_mask`` array), mapped
  onto the encoder's input square (:func:`mask_to_input`) and pooled to patch targets.
* :func:`box_to_native`: the inverse map for predicted boxes (encoder square -> native pixels).
* :class:`TapFeatures`: per video the frozen tower's patch tokens at the tapped blocks
  (``hidden_<i>``, every native frame), from the feature store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from vau_jax import timing
from vau_jax.data.formats.record import FormatError, VideoRecord
from vau_jax.methods.base import standardise

LAYOUTS = ("ubnormal", "shanghaitech")


def layout_splits(config: Any) -> dict[str, int]:
    """Videos per split of SynthVAD's layout tree; ``"validation"`` only when asked for (so
    trees without one keep their :func:`layout_key`)."""
    splits = {"train": int(config.num_train_videos), "test": int(config.num_test_videos)}
    if int(config.get("num_validation_videos", 0)):
        splits["validation"] = int(config.num_validation_videos)
    return splits


def layout_key(config: Any) -> str:
    """Hash of what SynthVAD's layout tree depends on."""
    body = {
        "layout": str(config.dataset),
        "synthvad": dict(config.synthvad),
        **layout_splits(config),
        "codec": str(config.layout_codec),
    }
    return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]


def ensure_layout(config: Any) -> str:
    """The dataset root: ``config.dataset_dir``, or SynthVAD written in ``config.dataset``'s
    layout under ``<data_dir>/synthvad_<layout>_<hash>`` (rendered once; written into a
    temporary folder and renamed, so a killed run never leaves a half tree behind)."""
    if str(config.dataset) not in LAYOUTS:
        raise ValueError(f"T-VAU reads dataset in {LAYOUTS}, got {config.dataset!r}")
    if str(config.get("dataset_dir", "")):
        return str(config.dataset_dir)
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.data.synthvad.layouts import write_layout

    root = os.path.join(str(config.data_dir), f"synthvad_{config.dataset}_{layout_key(config)}")
    if os.path.isdir(root):
        return root
    tmp = root + ".tmp"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    with timing.phase("render"):  # rendering and encoding the tree, workers' waits included
        write_layout(
            tmp,
            str(config.dataset),
            layout_splits(config),
            SynthConfig(**dict(config.synthvad)),
            codec=str(config.layout_codec),
            progress=True,
        )
    os.replace(tmp, root)
    return root


def records_by_id(
    dataset: str, root: str, splits: dict[str, list[VideoRecord]] | None = None
) -> dict[str, VideoRecord]:
    """Every record of a layout tree by video id, with the frame truth, tracks and mask
    locations the tree holds for **both** splits (T-VAU is trained on object masks, as the
    paper; ``read_layout`` alone keeps video-level labels for training videos). ``splits``:
    the tree's ``read_layout`` output when the caller has it (its records are completed in
    place; reading the test videos' masks twice cost seconds)."""
    from vau_jax.data.formats.layouts import read_layout
    from vau_jax.data.tvau_dataset import attach_truth

    out = {}
    for recs in (read_layout(dataset, root) if splits is None else splits).values():
        attach_truth(dataset, root, recs)
        out.update({r.id: r for r in recs})
    return out


def anomaly_masks(record: VideoRecord, frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """bool ``[n, H, W]``: the anomalous pixels of native frames ``frames`` (all False for a
    normal video or a frame without a mask file).

    Args:
      record: the layout record (``masks_path``: a UBnormal ``_annotations`` folder or a
        ShanghaiTech pixel-mask ``.npy``).
      frames: int ``[n]`` native frame numbers.
      hw: the native frame size ``(H, W)``.
    Raises:
      FormatError: a mask whose size is not the video's.
    """
    out = np.zeros((len(frames), *hw), bool)
    path = record.masks_path
    if not path or not record.is_anomalous:
        return out
    if os.path.isdir(path):
        from vau_jax.data.formats.ubnormal import load_mask, mask_files

        files = mask_files(path, record.id)
        for k, f in enumerate(frames):
            if int(f) in files:
                m = load_mask(files[int(f)])
                if m.shape != tuple(hw):
                    raise FormatError(f"{path}: mask of frame {f} is {m.shape}, the video {hw}")
                out[k] = m > 0
        return out
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.shape[1:] != tuple(hw):
        raise FormatError(f"{path}: masks are {arr.shape[1:]}, the video {hw}")
    for k, f in enumerate(frames):
        if 0 <= int(f) < len(arr):
            out[k] = np.asarray(arr[int(f)]) > 0
    return out


def input_geometry(hw: tuple[int, int], size: int) -> tuple[float, int, int]:
    """``(scale, y0, x0)`` of :func:`vau_jax.data.frames.resize_crop`: native pixels are
    scaled by ``scale`` (shorter side to ``size``) and the centre ``size`` square is kept,
    starting at ``(y0, x0)`` of the scaled frame."""
    h, w = hw
    if h == size and w == size:
        return 1.0, 0, 0
    scale = max(size / w, size / h)
    sh, sw = max(size, round(h * scale)), max(size, round(w * scale))
    return scale, (sh - size) // 2, (sw - size) // 2


def mask_to_input(masks: np.ndarray, size: int) -> np.ndarray:
    """bool ``[n, H, W]`` native masks -> ``[n, size, size]`` on the encoder's input square
    (nearest-neighbour resize of the shorter side to ``size``, centre crop; as the frames)."""
    n, h, w = masks.shape
    scale, y0, x0 = input_geometry((h, w), size)
    ys = np.clip(((np.arange(size) + y0 + 0.5) / scale).astype(int), 0, h - 1)
    xs = np.clip(((np.arange(size) + x0 + 0.5) / scale).astype(int), 0, w - 1)
    return masks[:, ys][:, :, xs]


def box_to_native(boxes: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """Inclusive boxes ``[..., 4]`` (x1, y1, x2, y2) on the input square -> native pixels
    (clipped to the frame)."""
    scale, y0, x0 = input_geometry(hw, size)
    b = np.asarray(boxes, np.float64)
    out = np.empty_like(b)
    out[..., 0] = (b[..., 0] + x0) / scale
    out[..., 2] = (b[..., 2] + 1 + x0) / scale - 1
    out[..., 1] = (b[..., 1] + y0) / scale
    out[..., 3] = (b[..., 3] + 1 + y0) / scale - 1
    h, w = hw
    out[..., [0, 2]] = np.clip(np.round(out[..., [0, 2]]), 0, w - 1)
    out[..., [1, 3]] = np.clip(np.round(out[..., [1, 3]]), 0, h - 1)
    return out


def gt_track_rows(record: VideoRecord) -> np.ndarray:
    """int ``[N, 6]`` RBDC/TBDC ground truth ``track_id, frame, x1, y1, x2, y2`` (native)."""
    rows = [
        np.concatenate([np.full((len(r), 1), tid), np.asarray(r)[:, :5]], axis=1)
        for tid, r in sorted(record.tracks.items())
        if len(r)
    ]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 6), np.int64)


def sample_indices(n: int, count: int) -> np.ndarray:
    """int ``[count]``: ``count`` positions spread uniformly over ``n`` frames (repeats when
    ``n < count``), as the LVLM samples its frames."""
    if n <= 0:
        raise ValueError("a video with no frame")
    return np.round(np.linspace(0, n - 1, count)).astype(np.int64)


@dataclasses.dataclass
class TapHistory:
    """What :func:`read_taps` needs of a stream's earlier windows: per tap the last frame's
    tokens ``last [N, D_b]`` (for ``motion``) and the sum of every earlier frame's tokens
    ``total [N, D_b]`` (float64) over ``count`` frames (for ``background``)."""

    last: list[np.ndarray]
    total: list[np.ndarray]
    count: int


def running_sum(x: np.ndarray) -> np.ndarray:
    """float64 ``[T, ...]``: the sum of ``x [T, ...]``'s frames up to each, the very values of
    ``np.cumsum(x, axis=0, dtype=np.float64)`` (frames added one by one in both) but one
    contiguous frame at a time: ~12x faster here than NumPy's strided walk along the first
    axis."""
    out = np.empty(x.shape, np.float64)
    acc = np.zeros(x.shape[1:], np.float64)
    for k in range(len(x)):
        acc += x[k]
        out[k] = acc
    return out


def read_taps(
    rec: Any,
    taps: tuple[int, ...],
    motion: bool = False,
    previous: TapHistory | None = None,
    background: bool = False,
) -> list[np.ndarray]:
    """The tapped tokens of one encoded video: per tapped block ``b`` float32 ``[T, N, D_b]``
    (``rec["hidden_<b>"]``), each token followed by (ours, not the paper's; AHD reads one
    frame at a time):

    * with ``motion`` (``config.ahd.motion``) its change since the previous encoded frame, so
      that AHD can see what moves. The first frame's change is zero, or, for a window of a
      stream, taken from ``previous.last``;
    * with ``background`` (``config.ahd.background``) its difference from the mean of that
      patch's tokens over every frame so far, this one included (a causal estimate of what
      the place usually looks like): a bag left on a path, or a person lying where people
      walk, differs from it while not moving. For a window of a stream the mean also counts
      the earlier windows' frames (``previous.total`` / ``previous.count``).

    So ``[T, N, k D_b]``, ``k = 1 + motion + background``, in that order."""
    out = [np.asarray(rec[f"hidden_{b}"], np.float32) for b in taps]
    parts = [[t] for t in out]
    if motion:
        firsts = [t[:1] for t in out] if previous is None else [p[None] for p in previous.last]
        for p, t, f in zip(parts, out, firsts):
            p.append(t - np.concatenate([f.astype(np.float32), t[:-1]]))
    if background:
        count = 0 if previous is None else int(previous.count)
        for k, (p, t) in enumerate(zip(parts, out)):
            total = running_sum(t)
            if previous is not None:
                total += previous.total[k]
            steps = count + np.arange(1, len(t) + 1, dtype=np.float64)
            p.append((t - total / steps[:, None, None]).astype(np.float32))
    return [np.concatenate(p, axis=-1) if len(p) > 1 else p[0] for p in parts]


def tap_history(rec: Any, taps: tuple[int, ...], previous: TapHistory | None = None) -> TapHistory:
    """The :class:`TapHistory` after the encoded window ``rec`` (following ``previous``)."""
    out = [np.asarray(rec[f"hidden_{b}"], np.float32) for b in taps]
    total = [t.sum(axis=0, dtype=np.float64) for t in out]
    if previous is not None:
        total = [a + b for a, b in zip(total, previous.total)]
    count = len(out[0]) + (0 if previous is None else int(previous.count))
    return TapHistory(last=[t[-1] for t in out], total=total, count=count)


@dataclasses.dataclass
class TapFeatures:
    """The tapped patch tokens of one split, per video (random access).

    ``store[i]`` holds ``hidden_<b>`` ``[T, N, D]`` for each tapped block ``b`` plus
    ``indices`` (native frame numbers) and ``timestamps``.
    """

    store: Any
    taps: tuple[int, ...]
    last: int  # the tower's last block: its tokens are the LVLM's visual tokens ...
    visual_store: Any = None  # ... unless the LVLM has its own tower (``patches``, paper)
    motion: bool = False  # read_taps: each token beside its change since the previous frame
    background: bool = False  # read_taps: ... and beside its difference from the mean so far

    def __len__(self) -> int:
        return len(self.store)

    def video(self, i: int) -> dict[str, np.ndarray]:
        """``taps`` list of float32 ``[T, N, D_b]``, ``visual`` ``[T, N', D']`` (the LVLM's
        tokens, standardised), ``indices`` ``[T]``, ``timestamps`` ``[T]``."""
        e = self.store[i]
        if self.visual_store is None:
            visual = e[f"hidden_{self.last}"]
        else:
            v = self.visual_store[i]
            if not np.array_equal(np.asarray(v["indices"]), np.asarray(e["indices"])):
                raise ValueError(f"video {i}: the two feature stores hold different frames")
            visual = v["patches"]
        return {
            "taps": read_taps(e, self.taps, self.motion, background=self.background),
            "visual": standardise(visual),
            "indices": np.asarray(e["indices"]),
            "timestamps": np.asarray(e["timestamps"]),
        }


def prompt_texts(config: Any, anomaly_types: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The normal and abnormal prompt ensembles (config, or the tiny CLIP's caption
    vocabulary: :func:`vau_jax.methods.pretrain.clip.class_prompts`)."""
    from vau_jax.methods.pretrain.clip import class_prompts

    normal = list(config.normal_prompts) or class_prompts("normal")
    abnormal = list(config.abnormal_prompts) or [p for t in anomaly_types for p in class_prompts(t)]
    if not normal or not abnormal:
        raise ValueError("T-VAU needs at least one normal and one abnormal prompt")
    return normal, abnormal


def native_size(video: Any) -> tuple[int, int]:
    """``(H, W)`` of a layout video (probed from its file or first frame image)."""
    from vau_jax.data.video import probe

    if os.path.isdir(video.path):
        from PIL import Image

        first = sorted(os.listdir(video.path))[0]
        with Image.open(os.path.join(video.path, first)) as img:
            return img.height, img.width
    info = probe(video.path)
    return int(info.height), int(info.width)


def ahd_rows(method: Any, split: str) -> list[dict[str, np.ndarray]]:
    """AHD's training rows, one per frame: ``tap_<k> [N, D_k]`` and ``target [g, g]`` (the
    fraction of each patch covered by an anomalous object's mask). Per video
    ``ahd.frames_per_video`` frames spread uniformly, plus ``ahd.anomalous_frames`` spread
    over its anomalous frames (anomalous patches are rare). ``ahd.one_shot``: the frames of
    the split's first anomalous video only (T-VAU's one-shot setting), all of them."""
    return [r for _, rows in ahd_rows_by_video(method, split) for r in rows]


def ahd_rows_by_video(method: Any, split: str) -> list[tuple[int, list[dict[str, np.ndarray]]]]:
    """:func:`ahd_rows` grouped by video: ``(index in the split, its rows)`` per video."""
    from vau_jax.models.heads.ahd import patch_targets

    c, feats = method.config, method.feats[split]
    videos = list(enumerate(method.dataset.split(split)))
    one_shot = bool(c.ahd.get("one_shot", False))
    if one_shot:
        videos = [(i, v) for i, v in videos if method.records[v.id].is_anomalous][:1]
        if not videos:
            raise ValueError(f"ahd.one_shot: the {split} split has no anomalous video")
    out = []
    for i, v in videos:
        rows = []
        f = feats.video(i)
        n = len(f["indices"])
        pick = [np.arange(n) if one_shot else sample_indices(n, int(c.ahd.frames_per_video))]
        rec = method.records[v.id]
        native = rec.frame_labels(max(int(rec.n_frames or 0), int(f["indices"].max()) + 1))
        on = np.flatnonzero(native[f["indices"]])
        if len(on) and int(c.ahd.anomalous_frames):
            pick.append(on[sample_indices(len(on), int(c.ahd.anomalous_frames))])
        pick = np.unique(np.concatenate(pick))
        masks = anomaly_masks(rec, f["indices"][pick], native_size(v))
        targets = patch_targets(mask_to_input(masks, method.size), (method.grid, method.grid))
        for k, t in enumerate(pick):
            row = {f"tap_{j}": f["taps"][j][t] for j in range(len(method.taps))}
            row["target"] = targets[k].astype(np.float32)
            rows.append(row)
        out.append((i, rows))
    return out


def sample_frames(feats: dict[str, Any], frames: int) -> dict[str, np.ndarray]:
    """The LVLM's view of one video (:meth:`TapFeatures.video` output): ``frames`` frames
    spread uniformly, as ``visual [S, N, D]``, ``tap_<k> [S, N, D_k]`` and ``frame_valid
    [S]``."""
    idx = sample_indices(len(feats["indices"]), frames)
    out = {"visual": feats["visual"][idx], "frame_valid": np.ones(frames, bool)}
    for k, t in enumerate(feats["taps"]):
        out[f"tap_{k}"] = t[idx]
    return out


class SampledTaps:
    """Per video of a split its :func:`sample_frames` (computed once per video, kept in
    memory)."""

    def __init__(self, feats: TapFeatures, frames: int):
        self.feats, self.frames = feats, int(frames)
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        if i not in self._cache:
            self._cache[i] = sample_frames(self.feats.video(i), self.frames)
        return self._cache[i]

    def keep(self, i: int, feats: dict[str, Any]) -> None:
        """Keeps video ``i``'s sampled frames from ``feats``, its :meth:`TapFeatures.video`
        that a caller read anyway (the AHD's heat of every frame), so that it is not read
        and its taps derived a second time (~37 ms a video on the tiny preset)."""
        if i not in self._cache:
            self._cache[i] = sample_frames(feats, self.frames)


def sampled(method: Any, split: str) -> SampledTaps:
    """The method's :class:`SampledTaps` of a split (one per split, in ``method.sampled``)."""
    if split not in method.sampled:
        method.sampled[split] = SampledTaps(method.feats[split], method.frames)
    return method.sampled[split]


def full_video(method: Any, split: str, i: int) -> dict[str, np.ndarray]:
    """Video ``i`` of ``split``, every encoded frame (:meth:`TapFeatures.video`), for callers
    that need them all (the AHD's heat of every frame); its sampled frames are kept from this
    read (:meth:`SampledTaps.keep`), so the LVLM's view of the video never reads it again."""
    feats = method.feats[split].video(int(i))
    sampled(method, split).keep(int(i), feats)
    return feats


def attach(method: Any, split: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A row batch with each row's sampled frames' features (``video`` indexes the split)."""
    src = sampled(method, split)
    per = [src(int(v)) for v in batch["video"]]
    return {**batch, **{k: np.stack([p[k] for p in per]) for k in per[0]}}


class AttachTaps(grain.transforms.Map):
    """grain map: adds a row's :class:`SampledTaps` features (by its ``video`` index; only
    ``keys`` of them when given) and, given ``heat`` (per video ``[S, g, g]``:
    :mod:`vau_jax.methods.tvau.frozen`, :mod:`vau_jax.methods.tvau.crossfit`), its heatmaps
    as ``heat``, which RAE then reads instead of computing the AHD's."""

    def __init__(
        self,
        method: Any,
        split: str,
        heat: dict[int, np.ndarray] | None = None,
        keys: Sequence[str] | None = None,
    ):
        self.src = sampled(method, split)
        self.heat = heat
        self.keys = None if keys is None else tuple(keys)

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        i = int(element["video"])
        extra = {} if self.heat is None else {"heat": self.heat[i]}
        feats = self.src(i)
        if self.keys is not None:
            feats = {k: feats[k] for k in self.keys}
        return {**element, **feats, **extra}


def box_to_input(boxes: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """Native inclusive boxes ``[..., 4]`` -> the encoder's input square (clipped); the
    inverse of :func:`box_to_native`."""
    scale, y0, x0 = input_geometry(hw, size)
    b = np.asarray(boxes, np.float64)
    out = np.empty_like(b)
    out[..., 0] = b[..., 0] * scale - x0
    out[..., 2] = (b[..., 2] + 1) * scale - 1 - x0
    out[..., 1] = b[..., 1] * scale - y0
    out[..., 3] = (b[..., 3] + 1) * scale - 1 - y0
    return np.clip(np.round(out), 0, size - 1)
