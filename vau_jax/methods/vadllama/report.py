"""VAD-LLaMA's ``report.html``: the metrics, and per test video the phase-2 frame scores
against the ground truth (a few anomalous and normal videos), with sampled frames."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vau_jax.methods.base import pick_videos
from vau_jax.report import ReportVideo, write_report

FRAMES_SHOWN = 4


def write_vadllama_report(method: Any, params: Any, metrics: dict[str, float], workdir: str) -> str:
    """Writes ``workdir/report.html``; returns its path."""
    videos = method.dataset.split("test")
    feats = method.feats["test"]
    chosen = pick_videos(videos, int(method.config.get("report_videos", 6)))
    scores = method.frame_scores(params, "test", 2)
    recs = method.records("test")
    rows = []
    for i in chosen:
        v, rec, s = videos[i], recs[i], scores[i]
        fps = float(method.spec.fps) if method.encoder is not None else 1.0 / 16
        gt = [(a / fps, b / fps) for a, b in rec.intervals]
        frames = times = None
        if method.encoder is not None and hasattr(v, "frames"):
            spec = method.spec
            pick = np.round(np.linspace(0, len(s) - 1, FRAMES_SHOWN)).astype(int)
            ts = feats[i]["timestamps"]
            try:
                shown = np.concatenate(
                    [c.frames for c in v.frames(spec.__class__(fps=spec.fps, size=spec.size))]
                )
                frames = shown[np.minimum(pick, len(shown) - 1)]
                times = [float(ts[p]) for p in pick]
            except (ValueError, OSError):  # a report never fails the run
                frames = times = None
        rows.append(
            ReportVideo(
                video_id=v.id,
                anomaly_type=v.label,
                fps=fps,
                duration=len(s) / fps,
                gt_intervals=gt,
                tetg_probs=np.asarray(s),
                tetg_threshold=float(method.config.get("threshold", 0.5)),
                frames=frames,
                frame_times=times,
                texts={"scores": "phase-2 VADor clip scores, repeated over each clip's frames"},
            )
        )
    notes = [
        f"dataset {method.dataset.name}: {len(videos)} test videos; metrics follow its protocol",
        "weak supervision: the VADor was trained with video-level labels only",
    ]
    return write_report(
        os.path.join(workdir, "report.html"), "VAD-LLaMA evaluation", metrics, rows, notes=notes
    )
