"""UCA-style (UCF-Crime Annotation) event captions of SynthVAD videos, JSON and text layouts.

A video's captions are consecutive segments that cover it: every run of frames with one
constant per-frame caption is one segment ("People walking on the paths."), and every
anomalous run is one segment described by the video's event sentence. Times are rounded to
0.1 s, the precision UCA publishes; a run that rounds to nothing joins the segment before it.

JSON (``UCFCrime_<Split>.json``, as UCA publishes)::

    {"test_000003": {"duration": 3.0, "timestamps": [[0.0, 1.1], [1.1, 3.0]],
                     "sentences": ["People walking on the paths.", "Two people ..."]}}

Text (``UCFCrime_<Split>.txt``): one segment per line, clock times ``MM:SS.s``
(``HH:MM:SS.s`` from one hour on), a space, then ``##`` and the sentence::

    test_000003 00:00.0 00:01.1 ##People walking on the paths.
"""

from __future__ import annotations

import os
from typing import Any

from vau_jax.data.synthvad.types import SynthVideo
from vau_jax.data.synthvad.writers import write_json, write_text

UCA_SPLIT_NAMES = {"train": "Train", "validation": "Val", "test": "Test"}


def _tenths(seconds: float) -> float:
    return round(float(seconds), 1)


def uca_segments(video: SynthVideo) -> list[tuple[float, float, str]]:
    """``[(start_s, end_s, sentence), ...]`` covering the video (see the module docstring)."""
    runs: list[list] = []  # [start_frame, end_frame, key, sentence]
    for t in range(video.num_frames):
        if video.labels[t]:
            key, sentence = "anomaly", video.event_description
        else:
            caption = video.frame_captions[t]
            key, sentence = caption, caption[:1].upper() + caption[1:] + "."
        if runs and runs[-1][2] == key:
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1, key, sentence])
    segments: list[list] = []
    for _, end, _, sentence in runs:
        start_s = segments[-1][1] if segments else 0.0
        end_s = _tenths(end / video.fps)
        if end_s <= start_s:  # rounds to nothing: the segment before absorbs it
            continue
        segments.append([start_s, end_s, sentence])
    return [(s, e, sentence) for s, e, sentence in segments]


def uca_entry(video: SynthVideo) -> dict[str, Any]:
    """The UCA JSON entry ``{"duration", "timestamps", "sentences"}`` of one video."""
    segments = uca_segments(video)
    return {
        "duration": round(video.num_frames / video.fps, 3),
        "timestamps": [[s, e] for s, e, _ in segments],
        "sentences": [sentence for _, _, sentence in segments],
    }


def clock(seconds: float) -> str:
    """UCA clock time of a 0.1 s-rounded time: ``"00:01.2"``, ``"01:02:03.4"`` past an hour."""
    tenths = round(float(seconds) * 10)
    if tenths < 0:
        raise ValueError(f"clock: negative time {seconds}")
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    text = f"{minutes:02d}:{rest // 10:02d}.{rest % 10}"
    return f"{hours:02d}:{text}" if hours else text


def uca_txt(entries: dict[str, dict[str, Any]]) -> str:
    """UCA text layout of ``{video id: JSON entry}``: ``<id> <start> <end> ##<sentence>``."""
    return "".join(
        f"{vid} {clock(s)} {clock(e)} ##{sentence}\n"
        for vid, entry in entries.items()
        for (s, e), sentence in zip(entry["timestamps"], entry["sentences"])
    )


def write_uca(directory: str, split: str, entries: dict[str, dict[str, Any]]) -> list[str]:
    """Write ``UCFCrime_<Split>.json`` and ``.txt`` of ``entries``; returns the two paths."""
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"UCFCrime_{UCA_SPLIT_NAMES[split]}")
    write_json(stem + ".json", entries)
    write_text(stem + ".txt", uca_txt(entries))
    return [stem + ".json", stem + ".txt"]
