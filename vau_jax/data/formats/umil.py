"""UMIL / VAD-LLaMA video lists: ``path n_frames class [s1 e1 [s2 e2 ...]]``.

One line per video, whitespace separated::

    Abuse/Abuse028_x264.mp4 1412 Abuse 165 240 -1 -1
    Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4 1800 Normal -1 -1 -1 -1
    Arrest/Arrest001_x264.mp4 2374 2

The class is a name or an integer index (``0`` = normal; with ``classes`` the index is
mapped to a name, else an anomalous index becomes ``"Anomaly"``; the index is kept in
``extra["class_index"]``). Interval pairs use the UCF-Crime convention (0-based,
half-open ``[s, e)``; ``-1 -1`` = none) and are checked against ``n_frames``. Non-numeric
trailing columns are kept in ``extra["columns"]``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from vau_jax.data.formats.record import (
    NORMAL,
    VideoRecord,
    check_interval,
    content_lines,
    format_error,
    parse_int,
    video_id,
)

ANOMALY = "Anomaly"


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def read_umil(
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    video_root: str | None = None,
) -> list[VideoRecord]:
    """Read a UMIL / VAD-LLaMA list file (see the module docstring).

    Args:
      path: the list file.
      classes: optional class names indexed by the integer class column.
      video_root: if given, relative video paths are joined to it.
    """
    path = os.fspath(path)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, line in content_lines(path):
        cols = line.split()
        if len(cols) < 3:
            raise format_error(
                path,
                lineno,
                f"expected 'path n_frames class [s1 e1 ...]', got {len(cols)} columns",
            )
        vpath, n_tok, cls = cols[0], cols[1], cols[2]
        n_frames = parse_int(n_tok, path, lineno, "n_frames")
        if n_frames <= 0:
            raise format_error(path, lineno, f"n_frames must be positive, got {n_frames}")
        extra: dict = {"dataset": "umil", "source": f"{path}:{lineno}"}
        if _is_int(cls):
            index = int(cls)
            extra["class_index"] = index
            if classes is not None:
                if not 0 <= index < len(classes):
                    raise format_error(
                        path, lineno, f"class index {index} outside 0..{len(classes) - 1}"
                    )
                label = classes[index]
            else:
                label = NORMAL if index == 0 else ANOMALY
        else:
            label = cls
        rest = cols[3:]
        n_int = 0
        while n_int < len(rest) and _is_int(rest[n_int]):
            n_int += 1
        if n_int % 2:
            raise format_error(path, lineno, f"odd number of interval numbers ({n_int})")
        nums = [parse_int(t, path, lineno, f"column {i + 4}") for i, t in enumerate(rest[:n_int])]
        intervals = []
        for i in range(0, n_int, 2):
            s, e = nums[i], nums[i + 1]
            if s == -1 and e == -1:
                continue
            check_interval(s, e, path, lineno)
            if s >= n_frames:
                raise format_error(
                    path,
                    lineno,
                    f"interval ({s}, {e}) starts after the last frame {n_frames - 1}",
                )
            intervals.append((s, e))
        if n_int < len(rest):
            extra["columns"] = rest[n_int:]
        if label == NORMAL and intervals:
            raise format_error(path, lineno, f"class {NORMAL!r} with an anomalous interval")
        vid = video_id(vpath)
        if vid in seen:
            raise format_error(path, lineno, f"duplicate video {vid!r} (first at line {seen[vid]})")
        seen[vid] = lineno
        full = os.path.join(video_root, vpath) if video_root else vpath
        records.append(
            VideoRecord(
                id=vid,
                path=full,
                n_frames=n_frames,
                label=label,
                intervals=intervals,
                extra=extra,
            )
        )
    return records
