"""Write SynthVAD as the real datasets' published on-disk trees (``write_layout``).

``write_layout(out, layout, splits={"train": n, "test": m}, config, codec)`` renders the
SynthVAD ``train`` / ``test`` splits (:func:`render_split_video`, deterministic) into ``out``
(which must be empty or absent) in one of these trees; ``vau_jax.data.formats.layouts``
reads each back (``read_layout``). ``<ext>`` is ``.mp4`` (``codec="h264"``, lossy) or
``.mkv`` (``codec="ffv1"``, lossless). Frame numbers are 0-based; the UCF-Crime-style
``s e`` pairs are half-open ``[s, e)`` (``gt[s:e] = 1``, the public scripts' convention).
Weak supervision: train videos carry video-level labels only; where a published tree keeps
frame annotation of a training video anyway (UBnormal's supervised train set, ShanghaiTech's
re-split) the reader drops it for train records.

Every tree also has ``meta.json`` (the ground truth: per video ``id`` (SynthVAD id),
``name`` (the dataset's id), ``path`` (relative), split, fps, frame count, type, class,
intervals in seconds and frames; ``splits``; ``configs``) and ``synthvad_ids.json``
(``{SynthVAD id: dataset id}``); neither is part of the dataset, readers ignore them.

``ucf_crime`` (Sultani et al. 2018, the ``UCF_Crimes`` release)::

    Videos/<Class>/<id><ext>                        anomalous videos, Class = "Running", ...
    Videos/Training_Normal_Videos_Anomaly/<id><ext> normal train videos
    Videos/Testing_Normal_Videos_Anomaly/<id><ext>  normal test videos
    Anomaly_Detection_splits/Anomaly_Train.txt      "Running/train_000003.mp4" per line
    Anomaly_Detection_splits/Anomaly_Test.txt       (paths relative to Videos/)
    Temporal_Anomaly_Annotation_for_Testing_Videos.txt
                                                    test videos only: "<id><ext>  <Class>  s1
                                                    e1  s2  e2", "Normal  -1  -1  -1  -1"
    UCA/UCFCrime_Train.json, UCFCrime_Test.json     UCA captions (+ the .txt layout),
                                                    see :mod:`vau_jax.data.synthvad.captions`

``tad`` (Lv et al. 2021, WSAL). The release ships videos/frames in ``abnormal/`` and
``normal/`` folders; its split and annotation files are not uniformly published, so this is
the community layout (an assumption, documented here): the split lists name paths relative
to ``videos/`` and the test annotation uses the UCF-Crime layout::

    videos/abnormal/<id><ext>, videos/normal/<id><ext>
    train_split.txt, test_split.txt                 "abnormal/train_000003.mp4" per line
    vals.txt                                        test videos only, UCF-Crime layout

``xd_violence`` (Wu et al. 2020). Names carry XD's ``_label_<codes>`` suffix: ``A`` normal,
else the type's code (:data:`XD_CODES`) then ``-0-0``, e.g. ``test_000003_label_B1-0-0``.
A type that is an XD-Violence class keeps its real code: ``fighting`` ``B1`` (Fighting),
``explosion`` ``G`` (Explosion), ``vehicle`` ``B6`` (Car accident). The types XD-Violence
has no class for get codes of their own, which no real XD name uses: ``running`` ``S1``,
``falling`` ``S2``, ``fire`` ``S3``, ``abandoned_object`` ``S4`` (no code is shared, so the
name gives the type back; ``vau_jax.data.formats.xd_violence.XD_CLASSES`` reads ``S1``..``S4``
as the SynthVAD class names ``Running``, ``Falling``, ``Fire``, ``AbandonedObject``).
The release's train/test folder names vary between mirrors; ``videos/train`` and
``videos/test`` are used, with optional list files::

    videos/train/<name><ext>, videos/test/<name><ext>
    annotations.txt                                 anomalous test videos: "<name> s1 e1 ..."
    train_list.txt, test_list.txt                   "videos/test/<name><ext>" per line

``ubnormal`` (Acsintoae et al. 2022). Names ``abnormal_scene_K_scenario_J`` /
``normal_scene_K_scenario_J`` (scenes 1..3 in turn, scenarios counted per scene and kind);
the split lists are those of the UBnormal repository's ``scripts/`` folder. The validation
lists hold SynthVAD's ``validation`` split when ``splits`` asks for it (written after the
test videos, so adding it renames nothing) and are present and empty otherwise; abnormal
validation videos carry their tracks and masks, as UBnormal's do. UBnormal is the only
layout with a validation split::

    Scene<K>/<name><ext>
    Scene<K>/<name>_annotations/<name>_tracks.txt   abnormal videos: "track_id,start,end"
                                                    (0-based, end inclusive, ids from 1)
    Scene<K>/<name>_annotations/<name>_<t:04d>_gt.png  per-frame masks: track id on its pixels
    scripts/{abnormal,normal}_{training,validation,test}_video_names.txt   names, one a line

``shanghaitech`` (Luo et al. 2017) with the weakly supervised re-split of Zhong et al. 2019
(``SH_Train_new.txt`` / ``SH_Test_NEW.txt``, as the public WSVAD code bases name them). As
published, ``training/`` holds normal videos only, so SynthVAD's normal train videos go there
and every other video (anomalous train videos, all test videos) becomes a ``testing/``
frame folder with its masks, as the re-split's anomalous training videos are in the real
data. Frames are JPEG (``.jpg``, as published) with ``codec="h264"``, PNG with
``codec="ffv1"`` (lossless). Ids ``SS_NNN`` (training) and ``SS_NNNN`` (testing), scenes
01..02 in turn. No fps is stored (the dataset has none)::

    training/videos/<SS_NNN><ext>
    testing/frames/<SS_NNNN>/<t:03d>.jpg
    testing/test_frame_mask/<SS_NNNN>.npy           uint8 [T], 1 = anomalous frame
    testing/test_pixel_mask/<SS_NNNN>.npy           uint8 [T, H, W], 1 = anomalous pixel
    SH_Train_new.txt                                "<id>,<0|1>" per line
    SH_Test_NEW.txt                                 "<id>,<0|1>,<n_frames>" per line

``folder`` (a user's own footage)::

    videos/<id><ext>
    annotations.csv   header "video,split,label,start_s,end_s"; label "normal" or the class;
                      train rows: one per video, times empty (weak labels); test rows: one
                      per anomalous interval with half-open seconds, normal videos one row
                      with empty times
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Mapping
from typing import Any

from vau_jax.data.synthvad.captions import uca_entry, write_uca
from vau_jax.data.synthvad.parallel import map_videos
from vau_jax.data.synthvad.source import render_split_video
from vau_jax.data.synthvad.types import NORMAL, SynthConfig, SynthVideo
from vau_jax.data.synthvad.writers import (
    CODECS,
    META_FILE,
    VIDEO_EXT,
    ubnormal_masks,
    ucf_row,
    video_meta,
    write_jpeg,
    write_json,
    write_npy,
    write_png,
    write_text,
    write_ubnormal,
    write_video,
    xd_lines,
)

LAYOUTS = ("ucf_crime", "tad", "xd_violence", "ubnormal", "shanghaitech", "folder")
SPLITS = ("train", "test")
VALIDATION_LAYOUTS = ("ubnormal",)  # the layouts whose published tree has a validation split
WRITE_ORDER = (*SPLITS, "validation")  # the order videos are rendered and named in
IDS_FILE = "synthvad_ids.json"
# XD-Violence label codes of the SynthVAD types (module docstring): XD's real code where the
# type is an XD class (B1 fighting, B6 car accident, G explosion; XD's others: B2 shooting,
# B4 riot, B5 abuse), else a SynthVAD-only code S1..S4. One code per type, none shared.
XD_CODES = {
    "running": "S1",
    "fighting": "B1",
    "falling": "S2",
    "explosion": "G",
    "fire": "S3",
    "vehicle": "B6",
    "abandoned_object": "S4",
}
UCF_NORMAL_FOLDERS = {
    "train": "Training_Normal_Videos_Anomaly",
    "test": "Testing_Normal_Videos_Anomaly",
}
UCF_ANNOTATION = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
UBNORMAL_SCENES = 3
SHANGHAITECH_SCENES = 2
SH_LISTS = {"train": "SH_Train_new.txt", "test": "SH_Test_NEW.txt"}
UB_SPLIT_WORDS = {"train": "training", "validation": "validation", "test": "test"}
FOLDER_HEADER = ("video", "split", "label", "start_s", "end_s")


def _lines(items) -> str:
    return "".join(f"{item}\n" for item in items)


class _Tree:
    """One dataset tree: ``add`` writes a video's files and names it, ``finish`` the lists."""

    def __init__(self, out: str, codec: str):
        self.out, self.codec, self.ext = out, codec, VIDEO_EXT[codec]

    def video_file(self, rel: str, video: SynthVideo) -> None:
        path = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, video.frames, video.fps, self.codec)

    def add(self, video: SynthVideo, entry: dict[str, Any]) -> None:
        """Write ``video``'s files; set ``entry["name"]`` and ``entry["path"]``."""
        raise NotImplementedError

    def finish(self, entries: list[dict[str, Any]]) -> None:
        """Write the split lists and annotation files of all ``entries`` (train then test)."""
        raise NotImplementedError


def _of(entries: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["split"] == split]


class _UCFCrime(_Tree):
    def __init__(self, out: str, codec: str):
        super().__init__(out, codec)
        self.captions: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}

    def add(self, video, entry):
        split = entry["split"]
        normal = video.anomaly_type == NORMAL
        folder = UCF_NORMAL_FOLDERS[split] if normal else entry["class"]
        entry["name"] = video.video_id
        entry["path"] = f"Videos/{folder}/{video.video_id}{self.ext}"
        self.video_file(entry["path"], video)
        self.captions[split][video.video_id] = uca_entry(video)

    def finish(self, entries):
        splits_dir = os.path.join(self.out, "Anomaly_Detection_splits")
        os.makedirs(splits_dir, exist_ok=True)
        for split, file in (("train", "Anomaly_Train.txt"), ("test", "Anomaly_Test.txt")):
            rel = [e["path"].removeprefix("Videos/") for e in _of(entries, split)]
            write_text(os.path.join(splits_dir, file), _lines(rel))
        rows = [
            ucf_row(os.path.basename(e["path"]), e["class"], e["intervals_frames"])
            for e in _of(entries, "test")
        ]
        write_text(os.path.join(self.out, UCF_ANNOTATION), "".join(rows))
        for split in SPLITS:
            write_uca(os.path.join(self.out, "UCA"), split, self.captions[split])


class _TAD(_Tree):
    def add(self, video, entry):
        folder = "normal" if video.anomaly_type == NORMAL else "abnormal"
        entry["name"] = video.video_id
        entry["path"] = f"videos/{folder}/{video.video_id}{self.ext}"
        self.video_file(entry["path"], video)

    def finish(self, entries):
        for split in SPLITS:
            rel = [e["path"].removeprefix("videos/") for e in _of(entries, split)]
            write_text(os.path.join(self.out, f"{split}_split.txt"), _lines(rel))
        rows = [
            ucf_row(os.path.basename(e["path"]), e["class"], e["intervals_frames"])
            for e in _of(entries, "test")
        ]
        write_text(os.path.join(self.out, "vals.txt"), "".join(rows))


def xd_name(video: SynthVideo) -> str:
    """XD-Violence style name: ``<id>_label_A`` (normal) or ``<id>_label_<code>-0-0``."""
    if video.anomaly_type == NORMAL:
        return f"{video.video_id}_label_A"
    return f"{video.video_id}_label_{XD_CODES[video.anomaly_type]}-0-0"


class _XDViolence(_Tree):
    def add(self, video, entry):
        entry["name"] = xd_name(video)
        entry["path"] = f"videos/{entry['split']}/{entry['name']}{self.ext}"
        self.video_file(entry["path"], video)

    def finish(self, entries):
        for split in SPLITS:
            write_text(
                os.path.join(self.out, f"{split}_list.txt"),
                _lines(e["path"] for e in _of(entries, split)),
            )
        write_text(os.path.join(self.out, "annotations.txt"), xd_lines(_of(entries, "test")))


class _UBnormal(_Tree):
    def __init__(self, out: str, codec: str):
        super().__init__(out, codec)
        self.count = 0
        self.scenarios: dict[tuple[str, int], int] = {}

    def add(self, video, entry):
        kind = "normal" if video.anomaly_type == NORMAL else "abnormal"
        scene = 1 + self.count % UBNORMAL_SCENES
        self.count += 1
        scenario = self.scenarios.get((kind, scene), 0) + 1
        self.scenarios[kind, scene] = scenario
        entry["name"] = f"{kind}_scene_{scene}_scenario_{scenario}"
        entry["path"] = f"Scene{scene}/{entry['name']}{self.ext}"
        self.video_file(entry["path"], video)
        write_ubnormal(os.path.join(self.out, f"Scene{scene}"), video, entry["name"])

    def finish(self, entries):
        scripts = os.path.join(self.out, "scripts")
        os.makedirs(scripts, exist_ok=True)
        for split, word in UB_SPLIT_WORDS.items():
            for kind in ("abnormal", "normal"):
                names = [
                    e["name"]
                    for e in _of(entries, split)
                    if (e["anomaly_type"] == NORMAL) == (kind == "normal")
                ]
                write_text(os.path.join(scripts, f"{kind}_{word}_video_names.txt"), _lines(names))


class _ShanghaiTech(_Tree):
    def __init__(self, out: str, codec: str):
        super().__init__(out, codec)
        self.count = 0
        self.numbers: dict[tuple[str, int], int] = {}
        self.frame_ext = ".jpg" if codec == "h264" else ".png"

    def _id(self, folder: str, digits: int) -> str:
        scene = 1 + self.count % SHANGHAITECH_SCENES
        self.count += 1
        number = self.numbers.get((folder, scene), 0) + 1
        self.numbers[folder, scene] = number
        return f"{scene:02d}_{number:0{digits}d}"

    def add(self, video, entry):
        if entry["split"] == "train" and video.anomaly_type == NORMAL:
            entry["name"] = self._id("training", 3)
            entry["path"] = f"training/videos/{entry['name']}{self.ext}"
            self.video_file(entry["path"], video)
            return
        vid = entry["name"] = self._id("testing", 4)
        entry["path"] = f"testing/frames/{vid}"
        testing = os.path.join(self.out, "testing")
        frames_dir = os.path.join(testing, "frames", vid)
        os.makedirs(frames_dir, exist_ok=True)
        digits = max(3, len(str(video.num_frames - 1)))
        for t, frame in enumerate(video.frames):
            path = os.path.join(frames_dir, f"{t:0{digits}d}{self.frame_ext}")
            (write_jpeg if self.frame_ext == ".jpg" else write_png)(path, frame)
        for sub, array in (
            ("test_frame_mask", video.labels.astype("uint8")),
            ("test_pixel_mask", (ubnormal_masks(video) > 0).astype("uint8")),
        ):
            os.makedirs(os.path.join(testing, sub), exist_ok=True)
            write_npy(os.path.join(testing, sub, f"{vid}.npy"), array)

    def finish(self, entries):
        def flag(e):
            return int(e["anomaly_type"] != NORMAL)

        write_text(
            os.path.join(self.out, SH_LISTS["train"]),
            _lines(f"{e['name']},{flag(e)}" for e in _of(entries, "train")),
        )
        write_text(
            os.path.join(self.out, SH_LISTS["test"]),
            _lines(f"{e['name']},{flag(e)},{e['n_frames']}" for e in _of(entries, "test")),
        )


def _seconds(x: float) -> str:
    return repr(float(x))


class _Folder(_Tree):
    def add(self, video, entry):
        entry["name"] = video.video_id
        entry["path"] = f"videos/{video.video_id}{self.ext}"
        self.video_file(entry["path"], video)

    def finish(self, entries):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(FOLDER_HEADER)
        for e in entries:
            file = os.path.basename(e["path"])
            label = "normal" if e["anomaly_type"] == NORMAL else e["class"]
            if e["split"] == "train" or not e["intervals_seconds"]:
                writer.writerow([file, e["split"], label, "", ""])
                continue
            for s, end in e["intervals_seconds"]:
                writer.writerow([file, e["split"], label, _seconds(s), _seconds(end)])
        write_text(os.path.join(self.out, "annotations.csv"), buf.getvalue())


_TREES: dict[str, type[_Tree]] = {
    "ucf_crime": _UCFCrime,
    "tad": _TAD,
    "xd_violence": _XDViolence,
    "ubnormal": _UBnormal,
    "shanghaitech": _ShanghaiTech,
    "folder": _Folder,
}


def _check(out: str, layout: str, splits: Mapping[str, int], codec: str) -> None:
    if layout not in _TREES:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    unknown = [s for s in splits if s not in WRITE_ORDER]
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; the layouts have {WRITE_ORDER}")
    for split, n in splits.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"splits[{split!r}] must be an int >= 0, got {n!r}")
    if splits.get("validation", 0) and layout not in VALIDATION_LAYOUTS:
        raise ValueError(
            f"the {layout} layout has no validation split (only {VALIDATION_LAYOUTS} do)"
        )
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"{out}: exists and is not an empty directory")


def write_layout(
    out: str,
    layout: str,
    splits: Mapping[str, int],
    config: SynthConfig | None = None,
    codec: str = "h264",
    progress: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Render ``splits`` (``{"train": n, "test": m}``) into ``out`` as ``layout``.

    Args:
      out: output directory; must be absent or empty.
      layout: one of :data:`LAYOUTS` (trees in the module docstring).
      splits: number of videos per split (``"train"``, ``"test"``, and for the layouts in
        :data:`VALIDATION_LAYOUTS` ``"validation"``).
      config: rendering config (default ``SynthConfig()``).
      codec: ``"h264"`` (``.mp4``, lossy) or ``"ffv1"`` (``.mkv``, lossless).
      progress: show a tqdm bar.
      workers: rendering processes (:func:`vau_jax.data.synthvad.parallel.map_videos`;
        default one per CPU), which render ahead while this process encodes and writes; the
        tree is identical for any number.
    Returns:
      the ``meta.json`` content.
    """
    config = SynthConfig() if config is None else config
    _check(out, layout, splits, codec)
    os.makedirs(out, exist_ok=True)
    tree = _TREES[layout](out, codec)
    order = [s for s in WRITE_ORDER if s in splits]
    videos = (
        (split, video)
        for split in order
        for video in map_videos(render_split_video, split, splits[split], config, workers)
    )
    if progress:
        from tqdm import tqdm

        total = sum(splits[s] for s in order)
        videos = tqdm(videos, total=total, desc=f"SynthVAD {layout}", unit="video")
    entries = []
    for split, video in videos:
        entry = video_meta(video, split)
        tree.add(video, entry)
        entries.append(entry)
    tree.finish(entries)
    meta = {
        "layout": layout,
        "codec": codec,
        "videos": entries,
        "splits": {s: [e["id"] for e in entries if e["split"] == s] for s in splits},
        "configs": {s: dataclasses.asdict(config) for s in splits},
        "conventions": {
            "id": "SynthVAD id; name: the dataset's id; path: relative to the root",
            "intervals_seconds": "half-open [start, end) in seconds",
            "intervals_frames": "0-based half-open [s, e) frame numbers",
            "annotations": "train videos carry video-level labels only",
        },
    }
    write_json(os.path.join(out, META_FILE), meta)
    write_json(os.path.join(out, IDS_FILE), {e["id"]: e["name"] for e in entries})
    return meta
