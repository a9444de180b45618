"""UBnormal layout: per abnormal video a ``<video>_annotations/`` directory.

::

    Scene1/abnormal_scene_1_scenario_1.mp4
    Scene1/abnormal_scene_1_scenario_1_annotations/
        abnormal_scene_1_scenario_1_tracks.txt      # one line per anomalous object
        abnormal_scene_1_scenario_1_0000_gt.png     # per-frame mask, one per frame
        abnormal_scene_1_scenario_1_0001_gt.png
    Scene1/normal_scene_1_scenario_2.mp4            # no annotations: normal

``_tracks.txt`` lines are ``track_id,start_frame,end_frame`` (commas or spaces; numbers may
be written as floats ``1.0``), frames 0-based with the **end inclusive** (the object is
anomalous in frames ``start..end``). The masks hold the object id at each pixel of an
anomalous object (0 = background). Per-frame boxes of each track are derived from the masks:
pixels equal to a track id belong to that track; any other non-zero value (a binary 255
mask) is assigned to the only track active in that frame, or, when several are, kept in
``extra["unassigned_boxes"]`` (rows ``frame, value, x1, y1, x2, y2``). Frame labels are the
union of the tracks' frame ranges. ``n_frames`` and ``fps`` come from the video file when
it can be probed; without it ``n_frames`` is one past the last mask's frame number (a
disagreement between the two is kept in ``extra["mask_n_frames"]``).
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import re

import numpy as np

from vau_jax.data.formats.record import (
    NORMAL,
    FormatError,
    VideoRecord,
    check_interval,
    content_lines,
    format_error,
    parse_int,
)

ANOMALY = "Anomaly"
_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
_ANNOT_SUFFIX = "_annotations"
_MASK_RE = re.compile(r"^(?P<vid>.+)_(?P<frame>\d+)_gt\.png$")


def read_tracks_txt(path: str) -> dict[int, tuple[int, int]]:
    """``track_id -> (start, end_inclusive)`` from a UBnormal ``_tracks.txt``."""
    tracks: dict[int, tuple[int, int]] = {}
    for lineno, line in content_lines(path):
        cols = [c for c in re.split(r"[,\s]+", line) if c]
        if len(cols) != 3:
            raise format_error(
                path,
                lineno,
                f"expected 'track_id,start_frame,end_frame', got {len(cols)} fields",
            )
        tid, start, end = (
            parse_int(c, path, lineno, w) for c, w in zip(cols, ("track_id", "start", "end"))
        )
        if tid <= 0:
            raise format_error(path, lineno, f"track id must be positive, got {tid}")
        check_interval(start, end, path, lineno)
        if tid in tracks:
            raise format_error(path, lineno, f"duplicate track id {tid}")
        tracks[tid] = (start, end)
    return tracks


def mask_files(annot_dir: str, vid: str) -> dict[int, str]:
    """``frame -> path`` of video ``vid``'s ``<vid>_<frame>_gt.png`` masks in ``annot_dir``
    (any number of digits)."""
    out: dict[int, str] = {}
    for name in os.listdir(annot_dir):
        m = _MASK_RE.match(name)
        if m and m.group("vid") == vid:
            out[int(m.group("frame"))] = os.path.join(annot_dir, name)
    return out


def load_mask(path: str, data: bytes | None = None) -> np.ndarray:
    """An id mask ``[H, W]`` from a ``_gt.png`` (RGB masks: any non-zero channel counts,
    ids from the first channel); ``FormatError`` naming the file when unreadable. ``data``:
    the file's bytes when the caller has read them already (decoded from memory; ``path``
    then only names the file in errors)."""
    from PIL import Image

    try:
        # PIL refuses > 2 * MAX_IMAGE_PIXELS before decoding
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            arr = np.asarray(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise FormatError(f"{path}: cannot read mask: {err}") from None
    if arr.ndim == 3:  # RGB(A) masks: any channel non-zero; ids taken from the first channel
        arr = np.where(arr[..., :3].max(-1) > 0, np.maximum(arr[..., 0], 1), 0)
    return arr


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def boxes_from_masks(
    masks: dict[int, str],
    spans: dict[int, tuple[int, int]],
    contents: dict[int, bytes] | None = None,
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per-track boxes from per-frame id masks (``contents``: frame -> the mask file's bytes,
    where already read; the others are read from their paths).

    Returns:
      ``track_id -> int [M, 5]`` (frame, x1, y1, x2, y2), and the unassigned boxes as int
      ``[K, 6]`` (frame, value, x1, y1, x2, y2).
    """
    rows: dict[int, list[list[int]]] = {tid: [] for tid in spans}
    unassigned: list[list[int]] = []
    for frame in sorted(masks):
        mask = load_mask(masks[frame], None if contents is None else contents.get(frame))
        values = [int(v) for v in np.unique(mask) if v != 0]
        active = [t for t, (s, e) in spans.items() if s <= frame <= e]
        for value in values:
            box = _box(mask == value)
            if value in spans:
                rows[value].append([frame, *box])
            elif len(active) == 1:
                rows[active[0]].append([frame, *box])
            else:
                unassigned.append([frame, value, *box])
    tracks = {tid: np.asarray(sorted(r), np.int64).reshape(-1, 5) for tid, r in rows.items()}
    return tracks, np.asarray(unassigned, np.int64).reshape(-1, 6)


#: :func:`boxes_from_masks` results, by the tracks and a digest of every mask file's path and
#: bytes (a changed file is read again): a main job reads one layout's masks when it indexes
#: the dataset and again when ``tvau_build`` constructs its annotations. Reading the bytes
#: costs a small part of decoding the PNGs.
_BOXES_MEMO: collections.OrderedDict[tuple, tuple] = collections.OrderedDict()
_BOXES_MEMO_VIDEOS = 4096


def cached_boxes_from_masks(
    masks: dict[int, str], spans: dict[int, tuple[int, int]]
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """:func:`boxes_from_masks`, kept in this process for mask files with the same bytes
    (copies returned, so callers may modify them)."""
    digest = hashlib.sha1()
    contents: dict[int, bytes] = {}  # decoded from memory on a miss: each file is read once
    for frame in sorted(masks):
        try:
            with open(masks[frame], "rb") as f:
                data = f.read()
        except OSError as err:
            raise FormatError(f"{masks[frame]}: cannot read mask: {err}") from None
        digest.update(f"{frame}\0{masks[frame]}\0{len(data)}\0".encode())
        digest.update(data)
        contents[frame] = data
    key = (tuple(sorted(spans.items())), digest.hexdigest())
    if key in _BOXES_MEMO:
        _BOXES_MEMO.move_to_end(key)
    else:
        _BOXES_MEMO[key] = boxes_from_masks(masks, spans, contents)
        while len(_BOXES_MEMO) > _BOXES_MEMO_VIDEOS:
            _BOXES_MEMO.popitem(last=False)
    tracks, unassigned = _BOXES_MEMO[key]
    return {t: r.copy() for t, r in tracks.items()}, unassigned.copy()


def _intervals(spans: dict[int, tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of inclusive spans as sorted half-open intervals."""
    merged: list[list[int]] = []
    for s, e in sorted(spans.values()):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e + 1)
        else:
            merged.append([s, e + 1])
    return [(s, e) for s, e in merged]


def _probe_frames(video_path: str | None) -> tuple[float | None, int | None]:
    if video_path is None:
        return None, None
    try:
        from vau_jax.data.video import probe
    except ImportError:
        return None, None
    try:
        info = probe(video_path)
    except ValueError:
        return None, None
    return info.fps, info.n_frames


def read_ubnormal_video(annot_dir: str, video_path: str | None = None) -> VideoRecord:
    """The record of one abnormal video from its ``<video>_annotations`` directory."""
    annot_dir = os.path.normpath(annot_dir)
    base = os.path.basename(annot_dir)
    if not base.endswith(_ANNOT_SUFFIX):
        raise FormatError(f"{annot_dir}: not a UBnormal '<video>{_ANNOT_SUFFIX}' directory")
    vid = base[: -len(_ANNOT_SUFFIX)]
    tracks_path = os.path.join(annot_dir, f"{vid}_tracks.txt")
    if not os.path.isfile(tracks_path):
        raise FormatError(f"{annot_dir}: missing {vid}_tracks.txt")
    spans = read_tracks_txt(tracks_path)
    masks = mask_files(annot_dir, vid)
    tracks, unassigned = cached_boxes_from_masks(masks, spans)
    fps, probed_frames = _probe_frames(video_path)
    mask_frames = (max(masks) + 1) if masks else None
    n_frames = probed_frames if probed_frames is not None else mask_frames
    extra: dict = {"dataset": "ubnormal", "track_spans": spans}
    if len(unassigned):
        extra["unassigned_boxes"] = unassigned
    if mask_frames is not None and mask_frames != n_frames:
        extra["mask_n_frames"] = mask_frames
    return VideoRecord(
        id=vid,
        path=video_path,
        fps=fps,
        n_frames=n_frames,
        label=ANOMALY,
        intervals=_intervals(spans),
        tracks=tracks,
        masks_path=annot_dir,
        extra=extra,
    )


def read_ubnormal(root_or_video_dir: str | os.PathLike) -> list[VideoRecord]:
    """Read every video under a UBnormal root (recursively), or one ``_annotations`` dir.

    Videos with an annotations directory are abnormal (label ``"Anomaly"``), videos without
    one are ``"Normal"``; annotation directories without a video file are still read. Records
    are sorted by id.
    """
    root = os.path.normpath(os.fspath(root_or_video_dir))
    if not os.path.isdir(root):
        raise FormatError(f"{root}: not a directory")
    if os.path.basename(root).endswith(_ANNOT_SUFFIX):
        vid = os.path.basename(root)[: -len(_ANNOT_SUFFIX)]
        parent = os.path.dirname(root)
        video = next(
            (
                os.path.join(parent, vid + ext)
                for ext in _VIDEO_EXTENSIONS
                if os.path.isfile(os.path.join(parent, vid + ext))
            ),
            None,
        )
        return [read_ubnormal_video(root, video)]
    videos: dict[str, str] = {}
    annots: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for d in dirnames:
            if d.endswith(_ANNOT_SUFFIX):
                annots[d[: -len(_ANNOT_SUFFIX)]] = os.path.join(dirpath, d)
        for name in filenames:
            stem, ext = os.path.splitext(name)
            if ext.lower() in _VIDEO_EXTENSIONS:
                videos[stem] = os.path.join(dirpath, name)
    records = []
    for vid in sorted(set(videos) | set(annots)):
        if vid in annots:
            records.append(read_ubnormal_video(annots[vid], videos.get(vid)))
        else:
            fps, n = _probe_frames(videos[vid])
            records.append(
                VideoRecord(
                    id=vid,
                    path=videos[vid],
                    fps=fps,
                    n_frames=n,
                    label=NORMAL,
                    extra={"dataset": "ubnormal"},
                )
            )
    return records
