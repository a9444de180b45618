"""The one annotation record every dataset reader returns, and the error readers raise.

Frame conventions (all readers): frame indices are **0-based** and intervals are
**half-open** ``[start, end)``. The UCF-Crime / TAD / XD-Violence text files store
``start end`` pairs that the public evaluation scripts apply as ``gt[start:end] = 1``; the
readers keep those numbers unchanged, so ``frame_labels`` reproduces the published ground
truth frame for frame. Boxes are inclusive pixel boxes ``x1, y1, x2, y2`` (width = x2-x1+1).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from dataclasses import field
from typing import Any

import numpy as np

NORMAL = "Normal"
#: Most frames a video may claim (about 926 hours at 30 fps). A larger ``n_frames`` in an
#: annotation file is a lying count: refused before any per-frame array is built from it.
MAX_FRAMES = 10**8


class FormatError(ValueError):
    """Malformed annotation input; the message starts with ``file:line:`` (or ``file:``)."""


def format_error(path: str, line: int | None, reason: str) -> FormatError:
    """A :class:`FormatError` whose message is ``"{path}:{line}: {reason}"``."""
    where = f"{path}:{line}" if line is not None else str(path)
    return FormatError(f"{where}: {reason}")


@dataclasses.dataclass
class VideoRecord:
    """Ground truth (and known metadata) of one video, whatever the source format.

    Attributes:
      id: video id without extension, e.g. ``"Abuse028_x264"``.
      path: video or feature file if the format names one.
      fps: frames per second if known.
      n_frames: number of frames if known.
      label: class name; ``"Normal"`` for normal videos.
      intervals: anomalous frame intervals, 0-based, half-open ``[start, end)``.
      tracks: ``track_id -> int array [M, 5]`` of rows ``frame, x1, y1, x2, y2``
        (inclusive pixel boxes), rows sorted by frame.
      masks_path: directory or file holding pixel masks, if the format has them.
      text: description / caption if the format has one.
      extra: every field the format has beyond the above (never silently dropped).
    """

    id: str
    path: str | None = None
    fps: float | None = None
    n_frames: int | None = None
    label: str = NORMAL
    intervals: list[tuple[int, int]] = field(default_factory=list)
    tracks: dict[int, np.ndarray] = field(default_factory=dict)
    masks_path: str | None = None
    text: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_anomalous(self) -> bool:
        """True when the video has at least one non-empty anomalous interval."""
        return any(e > s for s, e in self.intervals)

    def frame_labels(self, n_frames: int | None = None) -> np.ndarray:
        """Per-frame labels, uint8 ``[n_frames]``: 1 inside any interval, else 0.

        ``n_frames`` defaults to ``self.n_frames``; intervals reaching past the end are
        clipped (the published annotation files contain a few such intervals).
        """
        n = self.n_frames if n_frames is None else n_frames
        if n is None:
            raise ValueError(f"video {self.id!r}: n_frames unknown; pass n_frames explicitly")
        labels = np.zeros([int(n)], np.uint8)
        for start, end in self.intervals:
            labels[max(0, int(start)) : max(0, min(int(end), n))] = 1
        return labels

    def intervals_seconds(self, fps: float | None = None) -> list[tuple[float, float]]:
        """The intervals in seconds ``[start/fps, end/fps)`` (``fps`` defaults to ``self.fps``)."""
        rate = self.fps if fps is None else fps
        if not rate:
            raise ValueError(f"video {self.id!r}: fps unknown; pass fps explicitly")
        return [(s / rate, e / rate) for s, e in self.intervals]


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole text of a file (``encoding`` ``"utf-8"`` or ``"utf-8-sig"``).

    Raises:
      FormatError: ``"{path}:{line}: not UTF-8 text ..."`` naming the first bad line.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        byte = data[err.start : err.start + 1].hex()
        raise format_error(path, line, f"not UTF-8 text (byte 0x{byte})") from None


def text_lines(path: str, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line number from 1, raw line)`` of a UTF-8 text file (universal newlines, as
    ``open(path, encoding=...)`` splits them); :class:`FormatError` if it is not UTF-8."""
    with io.StringIO(read_text(path, encoding), newline=None) as f:
        yield from enumerate(f, start=1)


def content_lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, stripped text)`` of every non-blank, non-``#`` line of a text file."""
    for lineno, raw in text_lines(path):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, line


def load_json(text: str, path: str, line: int | None = None) -> Any:
    """``json.loads(text)``, every failure a :class:`FormatError` naming ``path``.

    ``line`` is the line of ``text`` in the file (JSON lines); without it the error names
    the line the decoder stopped at. Besides syntax errors this covers nesting past the
    recursion limit and integers longer than Python converts (``ValueError``).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise format_error(path, line or err.lineno, f"invalid JSON ({err.msg})") from None
    except RecursionError:
        raise format_error(path, line, "invalid JSON (nested too deeply)") from None
    except ValueError as err:  # e.g. "Exceeds the limit (4300 digits) for integer string"
        raise format_error(path, line, f"invalid JSON ({err})") from None


def parse_int(token: str, path: str, line: int, what: str) -> int:
    """``int(token)`` or a :class:`FormatError` naming ``path:line`` and ``what``."""
    try:
        return int(token)
    except ValueError:
        try:
            value = float(token)
        except ValueError:
            raise format_error(path, line, f"{what}: expected an integer, got {token!r}") from None
        if not value.is_integer():
            raise format_error(path, line, f"{what}: expected an integer, got {token!r}") from None
        return int(value)


def check_n_frames(n_frames: int, path: str, line: int | None, what: str = "n_frames") -> int:
    """``n_frames`` if it is in ``1..MAX_FRAMES``, else a :class:`FormatError` naming ``what``."""
    if n_frames <= 0:
        raise format_error(path, line, f"{what} must be positive, got {n_frames}")
    if n_frames > MAX_FRAMES:
        raise format_error(
            path, line, f"{what} {n_frames} is more than MAX_FRAMES={MAX_FRAMES} (a lying count?)"
        )
    return n_frames


def check_interval(start: int, end: int, path: str, line: int) -> tuple[int, int]:
    """Validate a ``[start, end)`` frame interval (non-negative, end >= start)."""
    if start < 0 or end < 0:
        raise format_error(path, line, f"negative frame index in interval ({start}, {end})")
    if end < start:
        raise format_error(path, line, f"interval end {end} before start {start}")
    return (start, end)


_KNOWN_EXTENSIONS = frozenset(
    {"mp4", "avi", "mkv", "mov", "webm", "mpg", "mpeg", "m4v", "wmv", "flv", "npy", "npz"}
)


def video_id(name: str) -> str:
    """Video id of a path or file name: base name without a known video/feature extension.

    Only known extensions are stripped, so dotted ids such as XD-Violence's
    ``A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A`` stay intact.
    """
    base = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return stem if dot and stem and ext.lower() in _KNOWN_EXTENSIONS else base
