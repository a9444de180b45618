"""XD-Violence ``annotations.txt``: anomalous test videos and their frame intervals.

One line per anomalous video, whitespace separated::

    Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0 67 256 441 591

``name s1 e1 [s2 e2 ...]``; frames 0-based half-open ``[s, e)`` (``gt[s:e] = 1``, the public
scripts' convention). Test videos not listed are normal: pass ``test_videos`` (names or a list
file, one path per line) to get records for them too. The class comes from the name's
``_label_<codes>`` suffix (``A`` normal, ``B1`` fighting, ``B2`` shooting, ``B4`` riot,
``B5`` abuse, ``B6`` car accident, ``G`` explosion; ``0`` = none); all codes go to
``extra["labels"]``. ``S1``..``S4`` are not XD-Violence codes: SynthVAD's XD-Violence tree
uses them for its types XD has no class for (``Running``, ``Falling``, ``Fire``,
``AbandonedObject``, :mod:`vau_jax.data.synthvad.layouts`); an unknown code is kept as is.
A name without that suffix gets the label ``"Anomaly"``. Odd trailing columns are kept in
``extra["columns"]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from vau_jax.data.formats.record import (
    NORMAL,
    VideoRecord,
    check_interval,
    content_lines,
    format_error,
    parse_int,
    text_lines,
    video_id,
)

XD_CLASSES = {
    "A": NORMAL,
    "B1": "Fighting",
    "B2": "Shooting",
    "B4": "Riot",
    "B5": "Abuse",
    "B6": "Car accident",
    "G": "Explosion",
    # SynthVAD-only codes (vau_jax.data.synthvad.layouts.XD_CODES), the SynthVAD class names
    "S1": "Running",
    "S2": "Falling",
    "S3": "Fire",
    "S4": "AbandonedObject",
}
ANOMALY = "Anomaly"


def xd_labels(name: str) -> list[str]:
    """Class names encoded in an XD-Violence video name (``..._label_B2-G-0`` → 2 names)."""
    _, sep, codes = name.rpartition("_label_")
    if not sep:
        return []
    return [XD_CLASSES.get(c, c) for c in codes.split("-") if c and c != "0"]


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def read_xd_violence(
    path: str | os.PathLike,
    *,
    test_videos: str | os.PathLike | Iterable[str] | None = None,
    video_dir: str | None = None,
) -> list[VideoRecord]:
    """Read ``annotations.txt``; with ``test_videos``, unlisted test videos become normal.

    Args:
      path: the annotation file.
      test_videos: optional names/paths of all test videos (or a text file listing them).
      video_dir: if given, ``record.path`` is ``video_dir/<id>.mp4``.
    Returns:
      annotated videos in file order, then the unlisted test videos in the given order
      (feature-file names ``<video>__<crop>.npy`` count once per video).
    """
    path = os.fspath(path)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, line in content_lines(path):
        name, *rest = line.split()
        n_int = 0
        while n_int < len(rest) and _is_int(rest[n_int]):
            n_int += 1
        if n_int == 0:
            raise format_error(path, lineno, "expected 'name s1 e1 [s2 e2 ...]', no interval")
        if n_int % 2:
            raise format_error(
                path, lineno, f"odd number of frame numbers ({n_int}): intervals need pairs"
            )
        nums = [parse_int(t, path, lineno, f"column {i + 2}") for i, t in enumerate(rest[:n_int])]
        intervals = [check_interval(nums[i], nums[i + 1], path, lineno) for i in range(0, n_int, 2)]
        vid = video_id(name)
        if vid in seen:
            raise format_error(path, lineno, f"duplicate video {vid!r} (first at line {seen[vid]})")
        seen[vid] = lineno
        labels = xd_labels(vid)
        extra: dict = {"dataset": "xd_violence", "source": f"{path}:{lineno}", "labels": labels}
        if n_int < len(rest):
            extra["columns"] = rest[n_int:]
        records.append(
            VideoRecord(
                id=vid,
                path=os.path.join(video_dir, vid + ".mp4") if video_dir else None,
                label=labels[0] if labels else ANOMALY,
                intervals=intervals,
                extra=extra,
            )
        )
    if test_videos is not None:
        for name, where in _test_names(test_videos):
            vid = _strip_crop(name)
            if vid in seen:
                continue
            seen[vid] = 0
            labels = xd_labels(vid)
            extra = {"dataset": "xd_violence", "labels": labels or [NORMAL]}
            if where[1] is not None:
                extra["source"] = f"{where[0]}:{where[1]}"
            if labels and labels != [NORMAL]:
                # Ground truth is all-normal (not in annotations.txt); keep the disagreement.
                extra["name_says_anomalous"] = True
            records.append(
                VideoRecord(
                    id=vid,
                    path=os.path.join(video_dir, vid + ".mp4") if video_dir else None,
                    label=NORMAL,
                    extra=extra,
                )
            )
    return records


def _strip_crop(name: str) -> str:
    """``<video>__3.npy`` (a feature file of crop 3) → ``<video>``; other names unchanged."""
    vid = video_id(name)
    stem, sep, crop = vid.rpartition("__")
    return stem if sep and crop.isdigit() else vid


def _test_names(
    test_videos: str | os.PathLike | Iterable[str],
) -> list[tuple[str, tuple[str, int | None]]]:
    if isinstance(test_videos, str | os.PathLike):
        list_path = os.fspath(test_videos)
        return [
            (raw.split()[0], (list_path, lineno))
            for lineno, raw in text_lines(list_path)
            if raw.strip()
        ]
    return [(n, ("test_videos", None)) for n in test_videos]
