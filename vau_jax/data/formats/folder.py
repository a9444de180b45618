"""A user's own footage: ``ROOT/videos/<file>`` + ``ROOT/annotations.csv``.

::

    video,split,label,start_s,end_s
    cam1_0001.mp4,train,normal,,
    cam1_0002.mp4,train,Fighting,,
    cam1_0007.mp4,test,Fighting,12.5,20.0
    cam1_0007.mp4,test,Fighting,41.0,44.5
    cam1_0009.mp4,test,Normal,,

Rules (each broken rule is a :class:`FormatError` ``annotations.csv:LINE: reason``):

- the header is exactly ``video,split,label,start_s,end_s`` (a UTF-8 BOM is allowed);
- ``video`` is a file under ``videos/`` (a relative path, no ``..``) that exists;
- ``split`` is ``train`` or ``test``; ``label`` is ``normal`` (any case; read as
  ``"Normal"``) or a class name; all rows of one video agree on split and label;
- times are seconds, half-open ``[start_s, end_s)``, both empty or both given, with
  ``0 <= start_s < end_s <= duration`` (the duration is probed from the file, allowing
  1 ms of rounding); intervals of one video do not overlap;
- a normal video has exactly one row, with empty times; an anomalous **test** video has one
  row per interval, with times; an anomalous **train** video has one row with empty times
  (weak, video-level label) or, if the user has them, one row per interval.

Records (one per video, first-appearance order): ``id`` = the file name without its
extension (unique), ``path``, ``label``, ``intervals`` empty and the times in
``extra["intervals_s"]`` (sorted ``(start_s, end_s)`` seconds), ``extra["split"]``;
``fps`` / ``n_frames`` are set for the videos that were probed (those with times).
"""

from __future__ import annotations

import csv
import io
import math
import os

from vau_jax.data.formats.record import NORMAL, VideoRecord, format_error, read_text, video_id

HEADER = ("video", "split", "label", "start_s", "end_s")
SPLITS = ("train", "test")
DURATION_TOLERANCE_S = 1e-3


def _time(token: str, path: str, line: int, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise format_error(path, line, f"{what}: expected seconds, got {token!r}") from None
    if not math.isfinite(value):
        raise format_error(path, line, f"{what}: expected a finite number, got {token!r}")
    if value < 0:
        raise format_error(path, line, f"{what}: negative time {value}")
    return value


def _probe(video_path: str, path: str, line: int):
    from vau_jax.data.video import VideoDecodeError, probe

    try:
        return probe(video_path)
    except VideoDecodeError as err:
        raise format_error(path, line, f"cannot read the video's duration: {err}") from None


def _rows(path: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(read_text(path, "utf-8-sig"), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise format_error(path, None, f"empty file; expected the header {','.join(HEADER)}")
        if tuple(c.strip() for c in header) != HEADER:
            raise format_error(
                path, 1, f"header must be {','.join(HEADER)!r}, got {','.join(header)!r}"
            )
        rows = []
        for cols in reader:
            if not any(c.strip() for c in cols):
                continue
            if len(cols) != len(HEADER):
                raise format_error(
                    path, reader.line_num, f"expected {len(HEADER)} columns, got {len(cols)}"
                )
            rows.append((reader.line_num, [c.strip() for c in cols]))
    except csv.Error as err:  # e.g. a field over csv.field_size_limit()
        raise format_error(path, reader.line_num + 1, f"not a readable CSV line: {err}") from None
    return rows


def read_folder_csv(
    path: str | os.PathLike, *, video_dir: str | None = None, check_durations: bool = True
) -> list[VideoRecord]:
    """Read and validate ``annotations.csv`` (rules in the module docstring).

    Args:
      path: the CSV file.
      video_dir: where the videos are (default: ``videos/`` next to the CSV).
      check_durations: probe videos that have times and check ``end_s <= duration``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise format_error(path, None, "missing")
    video_dir = video_dir or os.path.join(os.path.dirname(path), "videos")
    videos: dict[str, dict] = {}  # file -> {line, split, label, times: [(s, e, line)], empty}
    for line, (video, split, label, start, end) in _rows(path):
        parts = video.replace("\\", "/").split("/")
        if not video or os.path.isabs(video) or ".." in parts:
            raise format_error(
                path, line, f"video must be a file name under videos/, got {video!r}"
            )
        if split.lower() not in SPLITS:
            raise format_error(path, line, f"unknown split {split!r}; expected train or test")
        split = split.lower()
        if not label:
            raise format_error(path, line, "empty label; use 'normal' or a class name")
        label = NORMAL if label.lower() == NORMAL.lower() else label
        v = videos.setdefault(
            video, {"line": line, "split": split, "label": label, "times": [], "empty": None}
        )
        if (v["split"], v["label"]) != (split, label):
            raise format_error(
                path,
                line,
                f"video {video!r}: split/label {split}/{label} disagree with "
                f"{v['split']}/{v['label']} at line {v['line']}",
            )
        if bool(start) != bool(end):
            raise format_error(path, line, "give both start_s and end_s, or neither")
        if not start:
            if v["empty"] is not None or v["times"]:
                raise format_error(
                    path, line, f"video {video!r}: a row without times must be its only row"
                )
            v["empty"] = line
            continue
        if v["empty"] is not None:
            raise format_error(
                path, line, f"video {video!r}: has a row without times at line {v['empty']}"
            )
        if label == NORMAL:
            raise format_error(path, line, "a normal video has no anomalous interval")
        s, e = _time(start, path, line, "start_s"), _time(end, path, line, "end_s")
        if s >= e:
            raise format_error(path, line, f"start_s {s} must be before end_s {e}")
        v["times"].append((s, e, line))

    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for video, v in videos.items():
        line = v["line"]
        vid = video_id(video)
        if vid in seen:
            raise format_error(path, line, f"video id {vid!r} also used at line {seen[vid]}")
        seen[vid] = line
        if v["split"] == "test" and v["label"] != NORMAL and not v["times"]:
            raise format_error(
                path, line, f"test video {video!r} is anomalous: give start_s,end_s per interval"
            )
        video_path = os.path.join(video_dir, video)
        if not os.path.isfile(video_path):
            raise format_error(path, line, f"video {video!r} not found ({video_path})")
        times = sorted(v["times"])
        for (_, e0, l0), (s1, _, l1) in zip(times, times[1:]):
            if s1 < e0:
                raise format_error(path, l1, f"interval overlaps the one at line {l0}")
        fps = n_frames = None
        if times and check_durations:
            info = _probe(video_path, path, line)
            fps, n_frames = info.fps, info.n_frames
            for _, e, row in times:
                if e > info.duration + DURATION_TOLERANCE_S:
                    raise format_error(
                        path, row, f"end_s {e} is past the video's duration {info.duration:.3f} s"
                    )
        records.append(
            VideoRecord(
                id=vid,
                path=video_path,
                fps=fps,
                n_frames=n_frames,
                label=v["label"],
                extra={
                    "dataset": "folder",
                    "split": v["split"],
                    "intervals_s": [(s, e) for s, e, _ in times],
                    "source": f"{path}:{line}",
                },
            )
        )
    return records
