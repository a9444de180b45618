"""HIVAU-70k (Holmes-VAU) hierarchical anomaly annotations, JSON / JSON-lines.

Two layouts are read:

1. Instruction samples (a JSON list, or JSON lines), LLaVA style, one per clip / event /
   video::

       [{"video": "ucf/clips/Abuse001_x264_E0C2.mp4", "level": "clip",
         "label": "Abuse", "timestamps": [3.2, 6.4], "fps": 30,
         "conversations": [{"from": "human", "value": "<video>\\nDescribe ..."},
                           {"from": "gpt", "value": "A man ..."}]}]

   One record per sample (ids may repeat when several samples share a video):
   ``text`` = the last ``gpt`` answer, ``extra["conversations"]``, ``extra["level"]``.
2. Per-video hierarchy (a JSON object keyed by video id)::

       {"Abuse001_x264": {"label": "Abuse", "fps": 30, "n_frames": 2729,
                          "clips": [{"timestamps": [0.0, 3.2], "caption": "..."}],
                          "events": [{"timestamps": [3.2, 12.8], "summary": "..."}],
                          "summary": "..."}}

   One record per video: ``text`` = the video-level summary; clips / events in ``extra``.

Times are seconds. When ``fps`` is known, an anomalous sample's ``timestamps`` (layout 1)
or its abnormal events (layout 2: events whose ``label``/``anomaly`` is not normal, or all
events of an anomalous video) become frame intervals ``[floor(s*fps), ceil(e*fps))``.
Keys beyond the documented ones are kept in ``extra``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from vau_jax.data.formats.names import ucf_class_from_name
from vau_jax.data.formats.record import (
    NORMAL,
    FormatError,
    VideoRecord,
    check_n_frames,
    format_error,
    load_json,
    read_text,
    video_id,
)

ANOMALY = "Anomaly"
_SAMPLE_KEYS = {"video", "conversations", "label", "timestamps", "fps", "n_frames", "level"}
_VIDEO_KEYS = {"label", "fps", "n_frames", "summary", "clips", "events"}


def _load(path: str) -> tuple[Any, bool]:
    """(parsed JSON, is_json_lines)."""
    text = read_text(path)
    try:
        return load_json(text, path), False
    except FormatError as first:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, load_json(line, path, lineno)))
            except FormatError:
                if lineno == 1:
                    raise first from None
                raise
        return rows, True


def _span(stamp: Any, path: str, line: int | None, where: str) -> tuple[float, float]:
    if not isinstance(stamp, list | tuple) or len(stamp) != 2:
        raise format_error(path, line, f"{where}: 'timestamps' must be [start, end] seconds")
    try:
        start, end = float(stamp[0]), float(stamp[1])
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer > 1e308
        raise format_error(path, line, f"{where}: non-numeric timestamps {stamp!r}") from None
    if not (0 <= start <= end < math.inf):  # also refuses NaN
        raise format_error(path, line, f"{where}: bad time span [{start}, {end}]")
    return start, end


def _frames(
    span: tuple[float, float], fps: float, path: str, line: int | None, where: str
) -> tuple[int, int]:
    start, end = span[0] * fps + 1e-9, span[1] * fps - 1e-9
    if not (math.isfinite(start) and math.isfinite(end)):
        raise format_error(path, line, f"{where}: span {span} s at {fps} fps is not a frame range")
    return math.floor(start), math.ceil(end)


def _number(value: Any, cast, path: str, line: int | None, where: str):
    """``cast(value)`` of a finite number (``None`` stays ``None``), else a FormatError."""
    if value is None:
        return None
    try:
        out = cast(value)
        if not math.isfinite(out):
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise format_error(path, line, f"{where}: not a finite number: {value!r}") from None
    return out


def _n_frames(value: Any, path: str, line: int | None, where: str) -> int | None:
    n = _number(value, int, path, line, where)
    return None if n is None else check_n_frames(n, path, line, f"{where}: n_frames")


def _sample_record(entry: Any, path: str, line: int | None, where: str) -> VideoRecord:
    if not isinstance(entry, dict):
        raise format_error(path, line, f"{where}: expected an object")
    if not isinstance(entry.get("video"), str):
        raise format_error(path, line, f"{where}: missing 'video' path")
    convs = entry.get("conversations", [])
    if not isinstance(convs, list) or not all(
        isinstance(c, dict) and "from" in c and "value" in c for c in convs
    ):
        raise format_error(path, line, f"{where}: 'conversations' must be [{{from, value}}, ...]")
    answers = [c["value"] for c in convs if c["from"] in ("gpt", "assistant")]
    vid = video_id(entry["video"])
    label = entry.get("label") or ucf_class_from_name(vid) or ANOMALY
    fps = _number(entry.get("fps"), float, path, line, where)
    n_frames = _n_frames(entry.get("n_frames"), path, line, where)
    extra = {k: v for k, v in entry.items() if k not in _SAMPLE_KEYS}
    extra.update(dataset="hivau", conversations=convs, level=entry.get("level"))
    intervals = []
    if "timestamps" in entry:
        span = _span(entry["timestamps"], path, line, where)
        extra["timestamps"] = span
        if fps and label != NORMAL:
            intervals = [_frames(span, fps, path, line, where)]
    return VideoRecord(
        id=vid,
        path=entry["video"],
        fps=fps,
        n_frames=n_frames,
        label=label,
        intervals=intervals,
        text=answers[-1] if answers else None,
        extra=extra,
    )


def _video_record(key: str, entry: Any, path: str) -> VideoRecord:
    where = f"video {key!r}"
    if not isinstance(entry, dict):
        raise format_error(path, None, f"{where}: expected an object")
    vid = video_id(key)
    label = entry.get("label") or ucf_class_from_name(vid) or ANOMALY
    fps = _number(entry.get("fps"), float, path, None, where)
    n_frames = _n_frames(entry.get("n_frames"), path, None, where)
    parts: dict[str, list] = {}
    intervals = []
    for level in ("clips", "events"):
        items = entry.get(level, [])
        if not isinstance(items, list):
            raise format_error(path, None, f"{where}: '{level}' must be a list")
        parts[level] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "timestamps" not in item:
                raise format_error(path, None, f"{where}: {level}[{i}] needs 'timestamps'")
            span = _span(item["timestamps"], path, None, f"{where} {level}[{i}]")
            parts[level].append({**item, "timestamps": span})
            item_label = item.get("label", item.get("anomaly"))
            abnormal = (
                item_label not in (None, False, 0, NORMAL, "normal")
                if item_label is not None
                else label != NORMAL
            )
            if level == "events" and fps and abnormal:
                intervals.append(_frames(span, fps, path, None, f"{where} {level}[{i}]"))
    extra = {k: v for k, v in entry.items() if k not in _VIDEO_KEYS}
    extra.update(dataset="hivau", **parts)
    return VideoRecord(
        id=vid,
        fps=fps,
        n_frames=n_frames,
        label=label,
        intervals=sorted(intervals),
        text=entry.get("summary"),
        extra=extra,
    )


def read_hivau(path: str | os.PathLike) -> list[VideoRecord]:
    """Read HIVAU-70k annotations in either layout (see the module docstring)."""
    path = os.fspath(path)
    data, is_lines = _load(path)
    if is_lines:
        return [_sample_record(e, path, ln, "sample") for ln, e in data]
    if isinstance(data, list):
        return [_sample_record(e, path, None, f"entry {i}") for i, e in enumerate(data)]
    if isinstance(data, dict):
        return [_video_record(k, v, path) for k, v in data.items()]
    raise format_error(path, None, "expected a JSON list of samples or an object keyed by video")
