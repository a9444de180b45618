"""T-VAU outputs and :func:`build`: per-video annotation entries, question lines,
refined frames, and the whole three-stage run (package docstring).
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import numpy as np

from vau_jax.data import instruct
from vau_jax.data import templates as T
from vau_jax.data.tvau_dataset.annotators import ANNOTATORS, NoiseConfig, parse_noise
from vau_jax.data.tvau_dataset.reading import read_frames_at, read_videos
from vau_jax.data.tvau_dataset.records import DROP_REASONS, FORMAT, Annotation, VideoInput
from vau_jax.data.tvau_dataset.stages import (
    Consistency,
    anomaly_mask,
    assign_anomalous,
    blur_outside,
    build_timelines,
    refine,
)


def video_entry(
    video: VideoInput, ann: Annotation, labels: np.ndarray, kept: list, dropped: list
) -> dict[str, Any]:
    """The ``tvau_annotations.json`` entry of one video (schema in the module docstring)."""
    from vau_jax.data.synthvad.types import label_runs

    runs = label_runs(labels).tolist()
    atype = "normal"
    if runs:
        atype = ann.anomaly_type if ann.anomaly_type not in (None, "normal") else video.record.label
    targets = [tl for tl in kept if tl.anomalous] if runs else []
    target = trajectory = spatial = ""
    if targets:
        target = T.TARGET_PHRASES.get(targets[0].kind, targets[0].kind)
        trajectory = targets[0].trajectory
        boxes = np.concatenate([tl.boxes[labels[tl.frames] == 1] for tl in targets])
        if len(boxes):  # mean pixel-centre box (inclusive boxes: centre at +0.5)
            spatial = instruct.spatial_word_from_box(boxes.mean(0) + 0.5, video.width, video.height)
    objects = [
        {
            **{k: getattr(tl, k) for k in ("object_id", "kind", "colour", "size", "action")},
            **dict(anomalous=bool(tl.anomalous), first_frame=int(tl.frames[0])),
            **dict(last_frame=int(tl.frames[-1]), frames=tl.frames.tolist()),
            **dict(boxes=tl.boxes.tolist(), spatial_word=tl.spatial_word),
            **dict(trajectory=tl.trajectory, displacement=round(tl.displacement, 4)),
        }
        for tl in kept
    ]
    return {
        "split": video.split,
        "fps": video.fps,
        "n_frames": video.n_frames,
        "width": video.width,
        "height": video.height,
        "anomaly_type": atype,
        "intervals_frames": runs,
        "intervals_seconds": [[s / video.fps, e / video.fps] for s, e in runs],
        "objects": objects,
        "targets": [tl.object_id for tl in targets],
        "target": target,
        "trajectory": trajectory,
        "spatial_word": spatial,
        "dropped": [
            {"object_id": tl.object_id, "kind": tl.kind, "action": tl.action, "reason": why}
            for tl, why in dropped
        ],
    }


QUESTION_BUILDERS = {
    "yes_no": instruct.yes_no_conversation,
    "target": instruct.target_conversation,
    "trajectory": instruct.trajectory_conversation,
    "spatial": instruct.spatial_conversation,
}


def question_lines(video_id: str, entry: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The ``questions.jsonl`` lines of one video (a question is left out when unknown)."""
    facts = instruct.VideoFacts(
        video_id=video_id,
        duration=entry["n_frames"] / entry["fps"],
        anomaly_type=entry["anomaly_type"],
        intervals=tuple((float(s), float(e)) for s, e in entry["intervals_seconds"]),
        spatial_word=entry["spatial_word"],
        target=entry["target"],
        trajectory=entry["trajectory"],
    )
    text_seed = (int(seed) + zlib.crc32(video_id.encode())) & 0xFFFFFFFF
    out = []
    for kind, builder in QUESTION_BUILDERS.items():
        conv = builder(facts, text_seed)
        if conv is not None:
            question = conv[0]["value"].removeprefix(f"{T.VIDEO_MARKER}\n")
            line = {"video": video_id, "split": entry["split"], "kind": kind}
            out.append(
                {**line, "question": question, "answer": conv[1]["value"], "conversations": conv}
            )
    return out


def write_refined_frames(
    out: str, video: VideoInput, frames: np.ndarray, labels: np.ndarray, kept: list, sigma: float
) -> int:
    """Stage 3a files ``out/refined/<video>/<frame:06d>.png``; returns how many."""
    from vau_jax.data.synthvad.writers import write_png

    hot = [int(t) for t in frames if labels[t]]
    images = read_frames_at(video.record.path, hot) if hot else {}
    folder = os.path.join(out, "refined", video.record.id)
    count = 0
    for t in hot:
        mask = anomaly_mask(video, t, kept)
        if t in images and mask.any():
            os.makedirs(folder, exist_ok=True)
            write_png(os.path.join(folder, f"{t:06d}.png"), blur_outside(images[t], mask, sigma))
            count += 1
    return count


def build(
    dataset: str,
    dataset_dir: str,
    out: str,
    annotator: str = "oracle",
    split: str = "all",
    seed: int = 0,
    *,
    noise: NoiseConfig | str | None = None,
    frame_stride: int = 1,
    write_refined: bool = True,
    blur_sigma: float = 2.0,
    fps: float | None = None,
    rules: Consistency = Consistency(),  # noqa: B008 (a frozen dataclass: immutable)
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the three stages on a dataset tree and write ``out`` (module docstring).

    Args:
      dataset, dataset_dir: ``"ubnormal"`` / ``"shanghaitech"`` and its root.
      out: output folder (created; files in it are replaced).
      annotator: a key of :data:`ANNOTATORS`; ``seed`` seeds it and the question wording.
      split: ``"train"``, ``"validation"`` (where the layout has one), ``"test"`` or ``"all"``.
      noise: ``noisy`` annotator settings (:class:`NoiseConfig` or ``"jitter=1,..."``).
      frame_stride: annotate every ``frame_stride``-th native frame.
      write_refined, blur_sigma: stage 3a files and their blur std in pixels.
      fps: frame rate of frame-folder videos whose layout gives none.
      rules: stage 3b thresholds.
      workers: processes that annotate ahead of the stages after it, for annotators whose
        class sets ``parallel = True`` (a pure function of the video: the built-in ones,
        which re-render SynthVAD's ground truth); default one per CPU for 16 videos or
        more (:func:`vau_jax.data.synthvad.parallel.render_workers`). Others run in this
        process. The output is identical for any number.
    Returns:
      the statistics written to ``out/stats.json``.
    """
    from vau_jax.data.synthvad.parallel import map_in_order, render_workers
    from vau_jax.data.synthvad.writers import write_json, write_text

    if annotator not in ANNOTATORS:
        raise ValueError(
            f"--annotator: unknown annotator {annotator!r}; registered: {sorted(ANNOTATORS)}"
        )
    if frame_stride < 1:
        raise ValueError(f"--frame_stride must be >= 1, got {frame_stride}")
    noise = parse_noise(noise) if isinstance(noise, str) or noise is None else noise
    labeller = ANNOTATORS[annotator](seed=seed, noise=noise)
    videos = read_videos(dataset, dataset_dir, split, fps)
    os.makedirs(out, exist_ok=True)
    stats: dict[str, Any] = {"dataset": dataset, "annotator": annotator, "split": split}
    stats.update(seed=int(seed), videos=0, anomalous_videos=0, objects=0, frames=0, records=0)
    stats.update(questions=0, refined_frames=0, skipped=0)
    stats["dropped"] = dict.fromkeys(DROP_REASONS, 0)
    stats["injected"] = dict.fromkeys(DROP_REASONS, 0)
    entries, lines = {}, []
    sampled = [(video, np.arange(0, video.n_frames, frame_stride)) for video in videos]
    if not getattr(labeller, "parallel", False):
        workers = 1  # an annotator that may hold state or a connection: this process only
    elif workers is None:
        workers = render_workers(len(videos))
    annotated = map_in_order(labeller.annotate, sampled, int(workers), phase=None)
    for (video, frames), ann in zip(sampled, annotated):
        labels = video.labels if video.has_truth else ann.labels
        if labels is None:  # an anomalous video whose frames nobody annotated
            stats["skipped"] += 1
            continue
        kept, dropped = refine(
            build_timelines(ann.records, video.width, video.height), video.fps, rules
        )
        assign_anomalous(kept, video.record, labels)
        entry = entries[video.record.id] = video_entry(video, ann, labels, kept, dropped)
        lines += question_lines(video.record.id, entry, seed)
        if write_refined and entry["intervals_frames"]:
            stats["refined_frames"] += write_refined_frames(
                out, video, frames, labels, kept, blur_sigma
            )
        stats["videos"] += 1
        stats["anomalous_videos"] += bool(entry["intervals_frames"])
        stats["objects"] += len(kept)
        stats["frames"] += len(frames)
        stats["records"] += len(ann.records)
        for _, why in dropped:
            stats["dropped"][why] += 1
        for why, n in ann.injected.items():
            stats["injected"][why] += n
    stats["questions"] = len(lines)
    doc = {"format": FORMAT, **{k: stats[k] for k in ("dataset", "annotator", "split", "seed")}}
    doc.update(frame_stride=frame_stride, videos=entries)
    write_json(os.path.join(out, "tvau_annotations.json"), doc)
    write_text(os.path.join(out, "questions.jsonl"), "".join(json.dumps(q) + "\n" for q in lines))
    write_json(os.path.join(out, "stats.json"), stats)
    return stats
