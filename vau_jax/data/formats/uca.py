"""UCA (UCF-Crime Annotation) event captions, text and JSON layouts.

Text (one caption per line, ``##`` before the sentence, optionally after a space). UCA
publishes clock times ``MM:SS.s`` (``HH:MM:SS.s`` from one hour on); plain seconds are read
too::

    Abuse037_x264 00:01.2 00:08.2 ##A white car stops in front of the gate.
    Abuse001_x264 0.0 5.2##A woman in a white shirt stands at the counter.

JSON (ActivityNet-Captions style)::

    {"Abuse001_x264": {"duration": 71.0, "timestamps": [[0.0, 5.2], [5.2, 9.8]],
                       "sentences": ["A woman ...", "A man ..."]}}

One record per video (file order): ``text`` = the sentences joined by spaces,
``extra["segments"]`` = ``[(start_s, end_s, sentence), ...]``, ``extra["duration"]`` when
given, other JSON keys kept in ``extra``. UCA describes events, not anomalous frames, so
``intervals`` is empty (take them from the UCF-Crime annotation); the label is the
UCF-Crime class implied by the name (``"Anomaly"`` when the name has no class).
"""

from __future__ import annotations

import math
import os
import re
from decimal import Decimal

from vau_jax.data.formats.names import ucf_class_from_name
from vau_jax.data.formats.record import (
    VideoRecord,
    format_error,
    load_json,
    read_text,
    text_lines,
    video_id,
)

ANOMALY = "Anomaly"
_CLOCK = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:\.\d*)?)$")


def parse_clock(token: str) -> float | None:
    """Seconds of a clock time ``MM:SS.s`` / ``HH:MM:SS.s``; ``None`` if not one.

    Exact decimal arithmetic, so ``"01:05.3"`` gives the same float as ``65.3``.
    """
    m = _CLOCK.match(token.strip())
    if not m or (m.group("h") is not None and Decimal(m.group("m")) >= 60):
        return None
    seconds = Decimal(m.group("s"))
    if seconds >= 60:
        return None
    total = Decimal(m.group("h") or 0) * 3600 + Decimal(m.group("m")) * 60 + seconds
    return float(total)


def _seconds(token, path: str, line: int | None, what: str) -> float:
    value = parse_clock(token) if isinstance(token, str) and ":" in token else None
    try:
        value = float(token) if value is None else value
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer > 1e308
        raise format_error(
            path, line, f"{what}: expected seconds or a clock time [HH:]MM:SS.s, got {token!r}"
        ) from None
    if not math.isfinite(value):
        raise format_error(path, line, f"{what}: not a finite time: {token!r}")
    if value < 0:
        raise format_error(path, line, f"{what}: negative time {value}")
    return value


def _record(vid: str, segments: list, extra: dict) -> VideoRecord:
    return VideoRecord(
        id=vid,
        label=ucf_class_from_name(vid) or ANOMALY,
        text=" ".join(s for _, _, s in segments) or None,
        extra={"dataset": "uca", "segments": segments, **extra},
    )


def read_uca_txt(path: str | os.PathLike) -> list[VideoRecord]:
    """Read the UCA text layout ``<video> <start> <end> ##<sentence>`` (seconds or clock)."""
    path = os.fspath(path)
    per_video: dict[str, list] = {}
    for lineno, raw in text_lines(path):
        line = raw.strip()
        if not line:
            continue
        head, sep, sentence = line.partition("##")
        if not sep:
            raise format_error(path, lineno, "missing '##' between times and sentence")
        cols = head.split()
        if len(cols) != 3:
            raise format_error(
                path,
                lineno,
                f"expected '<video> <start> <end>##<sentence>', got {len(cols)} fields before '##'",
            )
        start = _seconds(cols[1], path, lineno, "start")
        end = _seconds(cols[2], path, lineno, "end")
        if end < start:
            raise format_error(path, lineno, f"end {end} s before start {start} s")
        if not sentence.strip():
            raise format_error(path, lineno, "empty sentence")
        per_video.setdefault(video_id(cols[0]), []).append((start, end, sentence.strip()))
    return [_record(vid, segs, {}) for vid, segs in per_video.items()]


def read_uca_json(path: str | os.PathLike) -> list[VideoRecord]:
    """Read the UCA JSON layout ``{video: {duration, timestamps, sentences}}``."""
    path = os.fspath(path)
    data = load_json(read_text(path), path)
    if not isinstance(data, dict):
        raise format_error(path, None, "expected a JSON object keyed by video id")
    records = []
    for key, entry in data.items():
        where = f"video {key!r}"
        if not isinstance(entry, dict):
            raise format_error(path, None, f"{where}: expected an object")
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        if not isinstance(stamps, list) or not isinstance(sentences, list):
            raise format_error(path, None, f"{where}: needs 'timestamps' and 'sentences' lists")
        if len(stamps) != len(sentences):
            raise format_error(
                path, None, f"{where}: {len(stamps)} timestamps but {len(sentences)} sentences"
            )
        segments = []
        for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
            if not isinstance(stamp, list | tuple) or len(stamp) != 2:
                raise format_error(
                    path, None, f"{where}: timestamps[{i}] is not a [start, end] pair"
                )
            start = _seconds(stamp[0], path, None, f"{where} timestamps[{i}][0]")
            end = _seconds(stamp[1], path, None, f"{where} timestamps[{i}][1]")
            if end < start:
                raise format_error(path, None, f"{where}: timestamps[{i}] ends before it starts")
            segments.append((start, end, str(sentence).strip()))
        extra = {k: v for k, v in entry.items() if k not in ("timestamps", "sentences")}
        records.append(_record(video_id(key), segments, extra))
    return records


def read_uca(path: str | os.PathLike) -> list[VideoRecord]:
    """Read UCA captions, choosing the layout from the extension (``.json`` or text)."""
    path = os.fspath(path)
    return read_uca_json(path) if path.lower().endswith(".json") else read_uca_txt(path)
