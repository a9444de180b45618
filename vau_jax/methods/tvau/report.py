"""T-VAU's ``report.html`` (a run's test videos) and the explain page (any video).

Per video: the frame-score curve (AHD heatmap maximum per frame) against the ground truth;
sampled frames with the heatmap overlaid (:func:`vau_jax.eval.boxes.overlay`), predicted
boxes in red and ground-truth boxes in green; the accumulated-heatmap trajectory image
(:func:`vau_jax.eval.boxes.trajectory_image`, blue = early, red = late); and each question
with the generated answer and the truth.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vau_jax.methods.base import pick_videos
from vau_jax.methods.tvau import data as D

FRAMES_SHOWN = 4
PRED, GT = (255, 40, 40), (40, 220, 40)
CURVE = "AHD frame score (heatmap maximum)"


def draw_boxes(img: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """uint8 ``[H, W, 3]`` with 1-pixel outlines of inclusive boxes ``[K, 4+]`` drawn."""
    out = img.copy()
    h, w = out.shape[:2]
    for b in np.asarray(boxes).reshape(-1, np.shape(boxes)[-1] if len(boxes) else 4):
        x1, y1, x2, y2 = (int(round(float(v))) for v in b[:4])
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w - 1))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h - 1))
        out[y1, x1 : x2 + 1] = out[y2, x1 : x2 + 1] = colour
        out[y1 : y2 + 1, x1] = out[y1 : y2 + 1, x2] = colour
    return out


def panels(
    frames: np.ndarray,
    heat: np.ndarray,
    pick: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    times: np.ndarray,
) -> tuple[list[np.ndarray], list[str]]:
    """The overlay images of frames ``pick`` plus the trajectory image, and their captions.

    Args:
      frames: uint8 ``[T, S, S, 3]`` (the encoder's input square); heat ``[T, S, S]``.
      pred: ``[N, 6]`` rows ``t, x1, y1, x2, y2, score`` (``t`` indexes ``frames``).
      gt: ``[M, 5]`` rows ``t, x1, y1, x2, y2``.
      times: ``[T]`` seconds.
    """
    from vau_jax.eval.boxes import overlay, trajectory_image

    images, caps = [], []
    for t in pick:
        img = overlay(frames[t], heat[t])
        img = draw_boxes(img, gt[gt[:, 0] == t][:, 1:5], GT)
        img = draw_boxes(img, pred[pred[:, 0] == t][:, 1:5], PRED)
        images.append(img)
        caps.append(f"t = {float(times[t]):.2f} s · max {float(heat[t].max()):.2f}")
    images.append(trajectory_image(heat, frames[int(pick[-1])]))
    caps.append("trajectory (accumulated heatmap; blue early, red late)")
    return images, caps


def rgb_frames(video: Any, size: int) -> np.ndarray:
    """uint8 ``[T, size, size, 3]`` RGB frames of a dataset video (every native frame)."""
    from vau_jax.data.frames import FrameSpec

    chunks = list(video.frames(FrameSpec(fps=None, size=size, input="rgb")))
    return np.concatenate([c.frames for c in chunks])


def _qa_text(answers: list[dict]) -> str:
    return "\n".join(
        f"Q ({a['kind']}): {a['question']}\n  answer: {a['answer']}\n  truth:  {a['truth']}"
        for a in answers
    )


def write_report(method: Any, params: Any, metrics: dict[str, float], workdir: str) -> str:
    """``workdir/report.html`` over ``config.report_videos`` test videos; returns its path."""
    from vau_jax.eval.boxes import frame_scores, video_boxes
    from vau_jax.methods.tvau.evaluation import box_rule, heatmaps
    from vau_jax.report import ReportVideo
    from vau_jax.report import write_report as write_html

    videos, feats = method.dataset.split("test"), method.feats["test"]
    answers: dict[str, list[dict]] = {}
    path = os.path.join(workdir, "answers_test.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                a = json.loads(line)
                answers.setdefault(a["video"], []).append(a)
    out = []
    for i in pick_videos(videos, int(method.config.report_videos)):
        v, f = videos[i], feats.video(i)
        heat = heatmaps(method, params["ahd"], f["taps"])
        frames = rgb_frames(v, method.size)[: len(heat)]
        pred = video_boxes(heat, box_rule(method.config))  # frame column = position
        hw = D.native_size(v)
        rows = D.gt_track_rows(method.records[v.id])
        pos = {int(n): k for k, n in enumerate(f["indices"])}
        gt = np.array(
            [
                [pos[int(r[1])], *D.box_to_input(r[2:6], hw, method.size)]
                for r in rows
                if int(r[1]) in pos
            ],
            np.float64,
        ).reshape(-1, 5)
        pick = np.unique(D.sample_indices(len(heat), FRAMES_SHOWN))
        if v.is_anomalous and len(gt):  # show the anomaly: frames spread over its GT frames
            on = np.unique(gt[:, 0]).astype(int)
            pick = np.unique(on[D.sample_indices(len(on), FRAMES_SHOWN)])
        images, caps = panels(frames, heat, pick, pred, gt, f["timestamps"])
        fps = float(v.fps or method.predict_fps)
        out.append(
            ReportVideo(
                video_id=v.id,
                anomaly_type=v.label,
                fps=fps,
                duration=len(heat) / fps,
                gt_intervals=[tuple(x) for x in v.anomaly_seconds()] if v.is_anomalous else [],
                tetg_probs=frame_scores(heat),
                frames=np.stack(images),
                frame_times=[float(f["timestamps"][t]) for t in (*pick, pick[-1])],
                frame_captions=caps,
                curve_label=CURVE,
                texts={"questions": _qa_text(answers.get(v.id, []))} if v.id in answers else {},
            )
        )
    return write_html(
        os.path.join(workdir, "report.html"),
        f"T-VAU on {method.dataset.name} (test)",
        metrics,
        out,
        notes=[
            "Heatmaps from AHD; red boxes: predicted (config.box_rule), green: ground truth.",
            "Answers are greedy generations of the frozen LVLM reading RAE's prompts.",
        ],
    )


def write_explain_report(
    path: str, timeline: dict[str, Any], frames: np.ndarray, last: dict
) -> str:
    """The explain page of one video (no ground truth); returns its path."""
    from vau_jax.report import ReportVideo
    from vau_jax.report import write_report as write_html

    heat = np.asarray(last["heatmaps"])
    size = heat.shape[1]
    from vau_jax.data.frames import resize_crop

    square = resize_crop(frames, size)[: len(heat)]
    fps = float(timeline["fps"])
    pred = np.asarray(timeline["boxes"], np.float64).reshape(-1, 6)
    hw = frames.shape[1:3]
    local = pred.copy()
    if len(local):
        local[:, 1:5] = D.box_to_input(pred[:, 1:5], hw, size)
    pos = {int(n): k for k, n in enumerate(last["indices"])}
    local[:, 0] = [pos.get(int(x), -1) for x in local[:, 0]]
    pick = np.unique(D.sample_indices(len(heat), FRAMES_SHOWN))
    images, caps = panels(square, heat, pick, local, np.zeros((0, 5)), np.arange(len(heat)) / fps)
    video = ReportVideo(
        video_id=os.path.basename(str(timeline.get("video", "input"))),
        anomaly_type="no ground truth",
        fps=fps,
        duration=float(timeline["duration_s"]),
        gt_intervals=[],
        tetg_probs=np.asarray(timeline["frame_probs"], np.float32),
        tetg_threshold=float(timeline["threshold"]),
        frames=np.stack(images),
        frame_times=[float(t) / fps for t in (*pick, pick[-1])],
        frame_captions=caps,
        curve_label=CURVE,
        texts={
            "answers": "\n".join(
                f"Q: {a['question']}\n  A: {a['answer']}" for a in timeline["answers"]
            )
        },
    )
    probs = np.asarray(timeline["frame_probs"])
    return write_html(
        path,
        f"tvau on {video.video_id}",
        {"duration_s": float(timeline["duration_s"]), "max_frame_score": float(probs.max())},
        [video],
        tables={
            "intervals above the threshold": [
                {"start_s": a, "end_s": b} for a, b in timeline["intervals_s"]
            ]
        },
    )
