"""TAD (Traffic Anomaly Dataset) test annotation: the UCF-Crime layout.

Lines ``name class s1 e1 s2 e2`` (``-1 -1`` = no interval), e.g.
``01_Accident_001.mp4  Accident  186  296  -1  -1``; frames 0-based half-open ``[s, e)``.
"""

from __future__ import annotations

import os

from vau_jax.data.formats.record import VideoRecord
from vau_jax.data.formats.ucf_crime import parse_temporal_annotation


def read_tad(path: str | os.PathLike, *, video_dir: str | None = None) -> list[VideoRecord]:
    """Read a TAD temporal annotation file (UCF-Crime layout)."""
    return parse_temporal_annotation(path, video_dir=video_dir, dataset="tad")
