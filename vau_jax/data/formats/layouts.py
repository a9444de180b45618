"""Read a dataset root in its published layout into train / test :class:`VideoRecord` s.

``read_layout(dataset, root) -> {"train": [...], "test": [...]}``. The trees (written by
``vau_jax.data.synthvad.layouts``, whose docstring has them in full)::

    ucf_crime     Videos/<Class>/<id>.mp4, Videos/{Training,Testing}_Normal_Videos_Anomaly/,
                  Anomaly_Detection_splits/Anomaly_{Train,Test}.txt (paths under Videos/),
                  Temporal_Anomaly_Annotation_for_Testing_Videos.txt, optional UCA/ captions
    tad           videos/{abnormal,normal}/<id>.mp4, {train,test}_split.txt (paths under
                  videos/), vals.txt (test annotation, UCF-Crime layout)
    xd_violence   videos/{train,test}/<name>_label_<codes>.mp4 (or {train,test}_list.txt),
                  annotations.txt
    ubnormal      Scene<K>/<name>.mp4, Scene<K>/<name>_annotations/, scripts/
                  {abnormal,normal}_{training,test}_video_names.txt, and when the
                  validation lists exist a third split, ``"validation"``
    shanghaitech  training/videos/, testing/frames/<id>/, testing/test_frame_mask/,
                  testing/test_pixel_mask/; SH_Train_new.txt + SH_Test_NEW.txt (the weakly
                  supervised re-split, used when present) else the original split
    folder        videos/ + annotations.csv (see :mod:`vau_jax.data.formats.folder`)

Every record: ``id`` (unique across splits), ``path`` (the video file; a ShanghaiTech
testing video is its frame folder), ``label`` (``"Normal"``, the annotation's class, or
``"Anomaly"`` where the dataset has no class), ``extra["split"]``, ``extra["dataset"]``.
``intervals`` (0-based half-open frames at the video's native rate) are set for **test**
(and UBnormal **validation**) records only: train records carry the video-level label (weak supervision), even where the
published tree holds frame annotation of training videos (UBnormal, the ShanghaiTech
re-split). ``folder`` times are seconds: ``extra["intervals_s"]`` for both splits,
``intervals`` empty. ``fps`` / ``n_frames`` are set where the annotation gives them (the
ShanghaiTech masks and lists, UBnormal's annotated test videos, which the UBnormal reader
probes, and ``folder`` videos with times); nothing else is probed or decoded. UCF-Crime
records get UCA captions when ``UCA/UCFCrime_*.json`` (or ``.txt``) exist: ``text`` and
``extra["captions"]`` (``[(start_s, end_s, sentence), ...]``). Records are sorted by id.

Every problem is a :class:`FormatError` ``PATH[:LINE]: reason``: a missing required file
(``.../Anomaly_Train.txt: missing``), a split or annotation line naming a video that is not
on disk, a test video without annotation, an annotation row for a video outside the test
split, a duplicate id, and the per-format checks of the readers reused here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from vau_jax.data.formats.folder import read_folder_csv
from vau_jax.data.formats.names import ucf_class_from_name
from vau_jax.data.formats.record import (
    NORMAL,
    FormatError,
    VideoRecord,
    check_n_frames,
    content_lines,
    format_error,
    parse_int,
    video_id,
)
from vau_jax.data.formats.shanghaitech import read_shanghaitech
from vau_jax.data.formats.ubnormal import read_ubnormal_video
from vau_jax.data.formats.uca import read_uca
from vau_jax.data.formats.ucf_crime import parse_temporal_annotation
from vau_jax.data.formats.xd_violence import read_xd_violence, xd_labels

DATASETS = ("ucf_crime", "xd_violence", "tad", "ubnormal", "shanghaitech", "folder")
SPLITS = ("train", "test")
ANOMALY = "Anomaly"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
UCF_NORMAL_FOLDERS = frozenset(
    {"Training_Normal_Videos_Anomaly", "Testing_Normal_Videos_Anomaly", "Normal_Videos_event"}
)
UCF_ANNOTATIONS = (
    "Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
    "Temporal_Anomaly_Annotation_for_Testing_Videos/Txt_formate/Temporal_Anomaly_Annotation.txt",
    "Anomaly_Detection_splits/Temporal_Anomaly_Annotation_for_Testing_Videos.txt",
)
UBNORMAL_LISTS = {"train": "training", "test": "test", "validation": "validation"}
UBNORMAL_KINDS = ("abnormal", "normal")
OPTIONAL_SPLITS = ("validation",)  # read when the layout has it (UBnormal's lists), else absent
SH_LISTS = {"train": "SH_Train_new.txt", "test": "SH_Test_NEW.txt"}


def _require(path: str) -> str:
    if not os.path.isfile(path):
        raise format_error(path, None, "missing")
    return path


def _require_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise format_error(path, None, "missing (expected a directory)")
    return path


def _is_video(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _find_video(stem: str) -> str | None:
    """``stem + ext`` for the first video extension that exists, else ``None``."""
    return next((stem + e for e in VIDEO_EXTENSIONS if os.path.isfile(stem + e)), None)


def _source(record: VideoRecord) -> str:
    return record.extra.get("source", record.path or record.id)


def _listed(list_path: str, video_dir: str, label_of: Callable[[str], str]) -> list[VideoRecord]:
    """Records of a split list naming one video path (relative to ``video_dir``) per line."""
    records = []
    for lineno, line in content_lines(list_path):
        rel = line.split()[0]
        path = os.path.join(video_dir, rel)
        if not os.path.isfile(path):
            raise format_error(list_path, lineno, f"video {rel!r} not found ({path})")
        records.append(
            VideoRecord(
                id=video_id(rel),
                path=path,
                label=label_of(rel),
                extra={"source": f"{list_path}:{lineno}"},
            )
        )
    return records


def _annotate(listed: list[VideoRecord], rows: list[VideoRecord], list_path: str, ann_path: str):
    """Test records: the list's videos with the annotation's class and intervals."""
    by_id = {r.id: r for r in listed}
    for row in rows:
        if row.id not in by_id:
            raise FormatError(
                f"{row.extra['source']}: video {row.id!r} is not a test video on disk "
                f"(not listed in {list_path})"
            )
    annotated = {row.id: row for row in rows}
    for rec in listed:
        row = annotated.get(rec.id)
        if row is None:
            raise FormatError(f"{_source(rec)}: test video {rec.id!r} has no row in {ann_path}")
        if row.label != rec.label:
            rec.extra["folder_label"] = rec.label
        rec.label, rec.intervals = row.label, list(row.intervals)
        rec.extra["annotation"] = row.extra["source"]
        if "columns" in row.extra:
            rec.extra["columns"] = row.extra["columns"]
    return listed


def _ucf_label(rel: str) -> str:
    folder, sep, _ = rel.replace("\\", "/").rpartition("/")
    folder = folder.rsplit("/", 1)[-1]
    if not sep:
        return ucf_class_from_name(video_id(rel)) or ANOMALY
    return NORMAL if folder in UCF_NORMAL_FOLDERS else folder


def _uca_captions(root: str) -> dict[str, VideoRecord]:
    captions: dict[str, VideoRecord] = {}
    uca = os.path.join(root, "UCA")
    for split in ("Train", "Val", "Test"):
        stem = os.path.join(uca, f"UCFCrime_{split}")
        path = next((stem + e for e in (".json", ".txt") if os.path.isfile(stem + e)), None)
        if path is not None:
            captions.update({r.id: r for r in read_uca(path)})
    return captions


def _ucf_crime(root: str) -> dict[str, list[VideoRecord]]:
    lists = os.path.join(root, "Anomaly_Detection_splits")
    train_list = _require(os.path.join(lists, "Anomaly_Train.txt"))
    test_list = _require(os.path.join(lists, "Anomaly_Test.txt"))
    candidates = [os.path.join(root, name) for name in UCF_ANNOTATIONS]
    ann = _require(next((p for p in candidates if os.path.isfile(p)), candidates[0]))
    video_dir = _require_dir(os.path.join(root, "Videos"))
    out = {
        "train": _listed(train_list, video_dir, _ucf_label),
        "test": _annotate(
            _listed(test_list, video_dir, _ucf_label),
            parse_temporal_annotation(ann, dataset="ucf_crime"),
            test_list,
            ann,
        ),
    }
    captions = _uca_captions(root)
    for records in out.values():
        for rec in records:
            cap = captions.get(rec.id)
            if cap is not None:
                rec.text = cap.text
                rec.extra["captions"] = cap.extra["segments"]
    return out


def _tad_label(rel: str) -> str:
    parts = rel.replace("\\", "/").split("/")
    if len(parts) > 1 and parts[-2] in ("normal", "abnormal"):
        return NORMAL if parts[-2] == "normal" else ANOMALY
    return NORMAL if parts[-1].lower().startswith("normal") else ANOMALY


def _tad(root: str) -> dict[str, list[VideoRecord]]:
    train_list = _require(os.path.join(root, "train_split.txt"))
    test_list = _require(os.path.join(root, "test_split.txt"))
    ann = _require(os.path.join(root, "vals.txt"))
    video_dir = _require_dir(os.path.join(root, "videos"))
    listed = _listed(test_list, video_dir, _tad_label)
    rows = parse_temporal_annotation(ann, dataset="tad")
    return {
        "train": _listed(train_list, video_dir, _tad_label),
        "test": _annotate(listed, rows, test_list, ann),
    }


def _xd_split(root: str, split: str) -> list[tuple[str, str, str]]:
    """``(id, path, source)`` of a split's videos: its list file if present, else its folder."""
    list_path = os.path.join(root, f"{split}_list.txt")
    if os.path.isfile(list_path):
        return [(r.id, r.path, r.extra["source"]) for r in _listed(list_path, root, str)]
    folder = _require_dir(os.path.join(root, "videos", split))
    return [
        (video_id(name), os.path.join(folder, name), os.path.join(folder, name))
        for name in sorted(os.listdir(folder))
        if _is_video(name)
    ]


def _xd_violence(root: str) -> dict[str, list[VideoRecord]]:
    ann = _require(os.path.join(root, "annotations.txt"))
    train = []
    for vid, path, source in _xd_split(root, "train"):
        labels = xd_labels(vid)
        train.append(
            VideoRecord(
                id=vid,
                path=path,
                label=labels[0] if labels else ANOMALY,
                extra={"labels": labels, "source": source},
            )
        )
    tests = {vid: (path, source) for vid, path, source in _xd_split(root, "test")}
    test = read_xd_violence(ann, test_videos=list(tests))
    for rec in test:
        if rec.id not in tests:
            raise FormatError(
                f"{rec.extra['source']}: video {rec.id!r} is not a test video on disk"
            )
        rec.path = tests[rec.id][0]
        rec.extra.setdefault("source", tests[rec.id][1])
    return {"train": train, "test": test}


def _ubnormal(root: str) -> dict[str, list[VideoRecord]]:
    out: dict[str, list[VideoRecord]] = {}
    for split, word in UBNORMAL_LISTS.items():
        lists = [
            os.path.join(root, "scripts", f"{k}_{word}_video_names.txt") for k in UBNORMAL_KINDS
        ]
        if split in OPTIONAL_SPLITS and not any(os.path.isfile(p) for p in lists):
            continue
        out[split] = []
        for kind, list_path in zip(UBNORMAL_KINDS, lists):
            _require(list_path)
            for lineno, line in content_lines(list_path):
                name = video_id(line.split()[0])
                m = re.search(r"_scene_(\d+)_", name)
                scene_dir = os.path.join(root, f"Scene{int(m.group(1))}" if m else "")
                path = _find_video(os.path.join(scene_dir, name))
                if path is None:
                    raise format_error(
                        list_path, lineno, f"video {name!r} not found ({scene_dir}/{name}.mp4)"
                    )
                source = f"{list_path}:{lineno}"
                annot = os.path.join(scene_dir, f"{name}_annotations")
                if split != "train" and kind == "abnormal":  # frame-annotated splits
                    if not os.path.isdir(annot):
                        raise format_error(
                            list_path, lineno, f"abnormal {split} video {name!r}: missing {annot}/"
                        )
                    rec = read_ubnormal_video(annot, path)
                    rec.extra["source"] = source
                else:
                    label = ANOMALY if kind == "abnormal" else NORMAL
                    rec = VideoRecord(id=name, path=path, label=label, extra={"source": source})
                out[split].append(rec)
    return out


def _sh_list(path: str) -> list[tuple[int, str, int, int | None]]:
    """``(line, id, 0|1, n_frames or None)`` of a Zhong et al. split list (commas or spaces)."""
    rows = []
    for lineno, line in content_lines(path):
        cols = [c for c in re.split(r"[,\s]+", line) if c]
        if len(cols) < 2:
            raise format_error(path, lineno, "expected '<id>,<0|1>[,<n_frames>]'")
        flag = parse_int(cols[1], path, lineno, "label")
        if flag not in (0, 1):
            raise format_error(path, lineno, f"label must be 0 or 1, got {flag}")
        n = parse_int(cols[2], path, lineno, "n_frames") if len(cols) > 2 else None
        if n is not None:
            check_n_frames(n, path, lineno)
        rows.append((lineno, video_id(cols[0]), flag, n))
    return rows


def _sh_testing(root: str) -> dict[str, VideoRecord]:
    testing = os.path.join(root, "testing")
    if not os.path.isdir(os.path.join(testing, "test_frame_mask")):
        return {}
    records = {}
    for rec in read_shanghaitech(testing):
        rec.path = os.path.join(testing, "frames", rec.id)
        records[rec.id] = rec
    return records


def _shanghaitech(root: str) -> dict[str, list[VideoRecord]]:
    lists = {s: os.path.join(root, name) for s, name in SH_LISTS.items()}
    masks = _sh_testing(root)
    if not any(os.path.isfile(p) for p in lists.values()):  # the original split
        _require_dir(os.path.join(root, "testing", "test_frame_mask"))
        train_dir = _require_dir(os.path.join(root, "training", "videos"))
        train = [
            VideoRecord(id=video_id(n), path=os.path.join(train_dir, n), label=NORMAL)
            for n in sorted(os.listdir(train_dir))
            if _is_video(n)
        ]
        for rec in masks.values():
            if not os.path.isdir(rec.path):
                raise format_error(rec.masks_path or rec.path, None, f"no frame folder {rec.path}")
        return {"train": train, "test": list(masks.values())}
    out: dict[str, list[VideoRecord]] = {}
    for split, list_path in lists.items():
        out[split] = []
        for lineno, vid, flag, n in _sh_list(_require(list_path)):
            where = f"{list_path}:{lineno}"
            frames = os.path.join(root, "testing", "frames", vid)
            path = frames if os.path.isdir(frames) else None
            path = path or _find_video(os.path.join(root, "training", "videos", vid))
            if path is None:
                raise FormatError(
                    f"{where}: video {vid!r} not found "
                    f"(testing/frames/{vid}/ or training/videos/{vid}.*)"
                )
            label = ANOMALY if flag else NORMAL
            rec = VideoRecord(id=vid, path=path, n_frames=n, label=label, extra={"source": where})
            mask = masks.get(vid)
            if split == "test" and flag and mask is None:
                raise FormatError(f"{where}: anomalous test video {vid!r} has no frame mask")
            if split == "test" and mask is not None:
                if bool(flag) != mask.is_anomalous:
                    raise FormatError(
                        f"{where}: label {flag} disagrees with testing/test_frame_mask/{vid}.npy"
                    )
                if n is not None and n != mask.n_frames:
                    raise FormatError(
                        f"{where}: n_frames {n} but the frame mask has {mask.n_frames} frames"
                    )
                rec.n_frames, rec.intervals = mask.n_frames, mask.intervals
                rec.masks_path = mask.masks_path
            out[split].append(rec)
    return out


def _folder(root: str) -> dict[str, list[VideoRecord]]:
    records = read_folder_csv(os.path.join(root, "annotations.csv"))
    return {s: [r for r in records if r.extra["split"] == s] for s in SPLITS}


_READERS: dict[str, Callable[[str], dict[str, list[VideoRecord]]]] = {
    "ucf_crime": _ucf_crime,
    "xd_violence": _xd_violence,
    "tad": _tad,
    "ubnormal": _ubnormal,
    "shanghaitech": _shanghaitech,
    "folder": _folder,
}


def read_layout(dataset: str, root: str | os.PathLike) -> dict[str, list[VideoRecord]]:
    """``{"train": [...], "test": [...]}`` for a dataset root in its published layout, plus
    ``"validation"`` where the layout has one (UBnormal's validation lists)."""
    root = os.fspath(root)
    if dataset not in _READERS:
        raise format_error(root, None, f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if not os.path.isdir(root):
        raise format_error(root, None, "not a directory")
    out = _READERS[dataset](root)
    splits = [*SPLITS, *(s for s in OPTIONAL_SPLITS if s in out)]
    seen: dict[str, str] = {}
    for split in splits:
        for rec in out[split]:
            if rec.id in seen:
                raise FormatError(
                    f"{_source(rec)}: video id {rec.id!r} appears twice (also {seen[rec.id]})"
                )
            seen[rec.id] = _source(rec)
            if split == "train":
                rec.intervals = []
            rec.extra["split"], rec.extra["dataset"] = split, dataset
        out[split].sort(key=lambda r: r.id)
    return {split: out[split] for split in splits}
