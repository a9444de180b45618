"""UMIL / VAD-LLaMA test lists: ``path n_frames class [s1 e1 [s2 e2 ...]]``, and their JSON.

One line per video, whitespace separated (the lists of the UMIL repository, which VAD-LLaMA's
evaluation reads; ``labels/UCF_test.txt``, ``labels/TAD_test.txt``)::

    frames/Abuse/Abuse028_x264.mp4 1412 1 165 240 -1 -1
    frames/Normal/Normal_Videos_003_x264.mp4 2822 0 -1 -1 -1 -1
    frames/normal/Normal_008.mp4 77 0 0 77
    Abuse/Abuse028_x264.mp4 1412 Abuse 165 240 -1 -1

The class is a name or an integer index (``0`` = normal; with ``classes`` the index is
mapped to a name, else an anomalous index becomes ``"Anomaly"``; the index is kept in
``extra["class_index"]``). Interval pairs use the UCF-Crime convention (0-based,
half-open ``[s, e)``; ``-1 -1`` = none). Non-numeric trailing columns are kept in
``extra["columns"]``.

**Normal videos.** A video whose class is normal (the name ``normal`` in any case, or index
``0`` without ``classes``) gets the label ``"Normal"`` and **no anomalous frames, whatever
its columns say**: TAD's list writes every normal video as ``0 n_frames`` (the whole video),
which read literally would make it anomalous from start to end. Such intervals are dropped
(kept in ``extra["ignored_intervals"]``) and the reader warns once per file
(:class:`NormalIntervalsWarning`). The intervals of anomalous videos are kept as written,
including those that start at frame 0 (13 of TAD's 60 anomalous test videos). VAD-LLaMA's
public evaluation ignores those too (it sets ``gt[s:e] = 1`` only when ``s > 0``), which
``protocol="vadllama"`` of :mod:`vau_jax.eval.metrics.frame_level` reproduces.

**Ends past the last frame.** An interval may end after ``n_frames`` (5 of the 290
UCF-Crime test videos, e.g. ``Arson011 1266 ... 680 1267``, and 22 of TAD's 100): it is
kept as written, and ``VideoRecord.frame_labels`` and every frame protocol clip it to the
video. An interval that *starts* at or after ``n_frames`` is an error.

**JSON.** VAD-LLaMA publishes the same lists as JSON (``data/UCF_Eval.json``,
``data/TAD_Eval.json``): a list of objects ::

    {"video": "frames/Abuse/Abuse028_x264.mp4", "temporal_label": [165, 240, -1, -1],
     "length": 1412, "QA": [{"q": "Is there any anomaly in the video?", "a": "Yes."}]}

read by :func:`read_vadllama_json` (and by :func:`read_umil` for a ``.json`` path). The
object has no class field: the class is the folder holding the video (``Abuse``;
``normal`` / ``Normal`` = normal, with the rule above; TAD's ``abnormal`` = ``"Anomaly"``).
``QA`` and any other fields go to ``extra``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

from vau_jax.data.formats.record import (
    NORMAL,
    VideoRecord,
    check_interval,
    check_n_frames,
    content_lines,
    format_error,
    load_json,
    parse_int,
    read_text,
    video_id,
)

ANOMALY = "Anomaly"


class NormalIntervalsWarning(UserWarning):
    """A list gives videos of class normal anomalous intervals; they were read as normal."""


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def is_normal_class(label: str) -> bool:
    """True for the class names that mean "normal video" (``normal`` in any case)."""
    return label.strip().lower() == NORMAL.lower()


class _Intervals:
    """Checks one file's interval pairs and collects the normal videos' dropped intervals."""

    def __init__(self, path: str):
        self.path = path
        self.ignored: list[str] = []  # "line N" / "entry N" of normal videos with intervals

    def build(
        self, nums: Sequence[int], n_frames: int, normal: bool, where: int | None, name: str
    ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(intervals, ignored)`` of the flat ``s1 e1 s2 e2 ...`` numbers of one video."""
        pairs = [(nums[i], nums[i + 1]) for i in range(0, len(nums), 2)]
        pairs = [(s, e) for s, e in pairs if not (s == -1 and e == -1)]
        if normal:
            if pairs:
                self.ignored.append(name)
            return [], pairs
        for s, e in pairs:
            check_interval(s, e, self.path, where)
            if s >= n_frames:
                raise format_error(
                    self.path,
                    where,
                    f"interval ({s}, {e}) starts after the last frame {n_frames - 1}",
                )
        return pairs, []

    def warn(self) -> None:
        if not self.ignored:
            return
        first = ", ".join(self.ignored[:3]) + (", ..." if len(self.ignored) > 3 else "")
        warnings.warn(
            f"{self.path}: {len(self.ignored)} video(s) of class normal list anomalous "
            f"intervals ({first}); they are read as normal (no anomalous frames)",
            NormalIntervalsWarning,
            stacklevel=3,
        )


def read_umil(
    path: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    video_root: str | None = None,
) -> list[VideoRecord]:
    """Read a UMIL / VAD-LLaMA list file (see the module docstring).

    A path ending in ``.json`` is read as VAD-LLaMA's JSON list (:func:`read_vadllama_json`).

    Args:
      path: the list file.
      classes: optional class names indexed by the integer class column.
      video_root: if given, relative video paths are joined to it.
    """
    path = os.fspath(path)
    if path.lower().endswith(".json"):
        return read_vadllama_json(path, video_root=video_root)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    checker = _Intervals(path)
    for lineno, line in content_lines(path):
        cols = line.split()
        if len(cols) < 3:
            raise format_error(
                path,
                lineno,
                f"expected 'path n_frames class [s1 e1 ...]', got {len(cols)} columns",
            )
        vpath, n_tok, cls = cols[0], cols[1], cols[2]
        n_frames = check_n_frames(parse_int(n_tok, path, lineno, "n_frames"), path, lineno)
        extra: dict[str, Any] = {"dataset": "umil", "source": f"{path}:{lineno}"}
        if _is_int(cls):
            index = parse_int(cls, path, lineno, "class index")
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
        normal = is_normal_class(label)
        if normal:
            label = NORMAL
        rest = cols[3:]
        n_int = 0
        while n_int < len(rest) and _is_int(rest[n_int]):
            n_int += 1
        if n_int % 2:
            raise format_error(path, lineno, f"odd number of interval numbers ({n_int})")
        nums = [parse_int(t, path, lineno, f"column {i + 4}") for i, t in enumerate(rest[:n_int])]
        intervals, ignored = checker.build(nums, n_frames, normal, lineno, f"line {lineno}")
        if ignored:
            extra["ignored_intervals"] = ignored
        if n_int < len(rest):
            extra["columns"] = rest[n_int:]
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
    checker.warn()
    return records


def _json_int(value: Any, path: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise format_error(path, None, f"{what}: expected an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise format_error(path, None, f"{what}: expected an integer, got {value!r}")
    return int(value)


def read_vadllama_json(
    path: str | os.PathLike, *, video_root: str | None = None
) -> list[VideoRecord]:
    """Read VAD-LLaMA's JSON test list (``UCF_Eval.json`` / ``TAD_Eval.json``; module docstring).

    Args:
      path: the JSON file (a list of ``{"video", "length", "temporal_label", ...}`` objects).
      video_root: if given, relative video paths are joined to it.
    Raises:
      FormatError: ``"<path>: entry <i>: <reason>"`` (entries counted from 0).
    """
    path = os.fspath(path)
    entries = load_json(read_text(path), path)
    if not isinstance(entries, list):
        raise format_error(path, None, "expected a JSON list of video objects")
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    checker = _Intervals(path)
    for i, entry in enumerate(entries):
        where = f"entry {i}"
        if not isinstance(entry, dict):
            raise format_error(path, None, f"{where}: expected an object")
        for key in ("video", "length"):
            if key not in entry:
                raise format_error(path, None, f"{where}: missing field {key!r}")
        vpath = entry["video"]
        if not isinstance(vpath, str) or not vpath.strip():
            raise format_error(path, None, f"{where}: 'video' must be a non-empty string")
        n_frames = _json_int(entry["length"], path, f"{where}: 'length'")
        check_n_frames(n_frames, path, None, f"{where}: 'length'")
        raw = entry.get("temporal_label", [])
        if not isinstance(raw, list):
            raise format_error(path, None, f"{where}: 'temporal_label' must be a list")
        if len(raw) % 2:
            raise format_error(path, None, f"{where}: odd number of interval numbers ({len(raw)})")
        nums = [_json_int(v, path, f"{where}: 'temporal_label'") for v in raw]
        folder = vpath.replace("\\", "/").rstrip("/").rsplit("/", 2)
        cls = folder[-2] if len(folder) >= 2 and folder[-2] else ANOMALY
        normal = is_normal_class(cls)
        label = NORMAL if normal else (ANOMALY if cls.lower() == "abnormal" else cls)
        try:
            intervals, ignored = checker.build(nums, n_frames, normal, None, where)
        except ValueError as e:  # FormatError "<path>: reason" -> name the entry
            reason = str(e).removeprefix(f"{path}: ")
            raise format_error(path, None, f"{where}: {reason}") from None
        extra: dict[str, Any] = {"dataset": "vadllama", "source": f"{path}:{where}"}
        extra.update({k: v for k, v in entry.items() if k not in ("video", "length")})
        if ignored:
            extra["ignored_intervals"] = ignored
        vid = video_id(vpath)
        if vid in seen:
            raise format_error(
                path, None, f"{where}: duplicate video {vid!r} (first at entry {seen[vid]})"
            )
        seen[vid] = i
        records.append(
            VideoRecord(
                id=vid,
                path=os.path.join(video_root, vpath) if video_root else vpath,
                n_frames=n_frames,
                label=label,
                intervals=intervals,
                extra=extra,
            )
        )
    checker.warn()
    return records
