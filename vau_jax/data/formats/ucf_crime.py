"""UCF-Crime temporal annotation (``Temporal_Anomaly_Annotation_for_Testing_Videos.txt``).

One line per test video, whitespace separated (the official file uses two spaces)::

    Abuse028_x264.mp4  Abuse  165  240  -1  -1
    Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1

columns ``name class s1 e1 s2 e2``; a ``-1 -1`` pair means "no interval". Frame numbers are
kept as written and read as 0-based half-open ``[s, e)``, the convention of the public
evaluation scripts (``gt[s:e] = 1``). Columns after the sixth are kept as strings in
``extra["columns"]``. TAD (:mod:`vau_jax.data.formats.tad`) shares this layout.
"""

from __future__ import annotations

import os

from vau_jax.data.formats.record import (
    NORMAL,
    VideoRecord,
    check_interval,
    content_lines,
    format_error,
    parse_int,
    video_id,
)

_N_FIXED = 6  # name, class, s1, e1, s2, e2


def parse_temporal_annotation(
    path: str | os.PathLike, *, video_dir: str | None = None, dataset: str = "ucf_crime"
) -> list[VideoRecord]:
    """Parse a UCF-Crime-layout temporal annotation file into records (file order).

    Args:
      path: the annotation text file.
      video_dir: if given, ``record.path`` is ``video_dir/<name as written>``.
      dataset: stored in ``extra["dataset"]``.
    """
    path = os.fspath(path)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, line in content_lines(path):
        cols = line.split()
        if len(cols) < _N_FIXED:
            raise format_error(
                path,
                lineno,
                f"expected {_N_FIXED} columns 'name class s1 e1 s2 e2', got {len(cols)}",
            )
        name, label = cols[0], cols[1]
        if label.lower() == NORMAL.lower():  # "normal" in any case is the normal class
            label = NORMAL
        nums = [parse_int(t, path, lineno, f"column {i + 3}") for i, t in enumerate(cols[2:6])]
        intervals = []
        for s, e in (nums[0:2], nums[2:4]):
            if s == -1 and e == -1:
                continue
            intervals.append(check_interval(s, e, path, lineno))
        if label == NORMAL and intervals:
            raise format_error(path, lineno, f"class {NORMAL!r} with an anomalous interval")
        vid = video_id(name)
        if vid in seen:
            raise format_error(path, lineno, f"duplicate video {vid!r} (first at line {seen[vid]})")
        seen[vid] = lineno
        extra: dict = {"dataset": dataset, "source": f"{path}:{lineno}"}
        if len(cols) > _N_FIXED:
            extra["columns"] = cols[_N_FIXED:]
        records.append(
            VideoRecord(
                id=vid,
                path=os.path.join(video_dir, name) if video_dir else None,
                label=label,
                intervals=intervals,
                extra=extra,
            )
        )
    return records


def read_ucf_crime(path: str | os.PathLike, *, video_dir: str | None = None) -> list[VideoRecord]:
    """Read the UCF-Crime temporal annotation file (see the module docstring)."""
    return parse_temporal_annotation(path, video_dir=video_dir, dataset="ucf_crime")
