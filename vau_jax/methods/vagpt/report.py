"""VA-GPT's ``report.html``: per test video the TETG curve against the ground truth, frames
with the SETS-selected patches highlighted, and every question with the model's choice."""

from __future__ import annotations

import os
from typing import Any

import jax.numpy as jnp
import numpy as np

from vau_jax.models.heads import sets as S
from vau_jax.report import ReportQuestion, ReportVideo, write_report

FRAMES_SHOWN = 6


def report_videos(videos: list[Any], count: int) -> list[int]:
    """Up to ``count`` test videos, anomalous and normal alternating (in split order)."""
    normal = [i for i, v in enumerate(videos) if not v.is_anomalous]
    anomalous = [i for i, v in enumerate(videos) if v.is_anomalous]
    out: list[int] = []
    for a, n in zip(anomalous + [None] * count, normal + [None] * count):
        out += [i for i in (a, n) if i is not None]
        if len(out) >= count or (a is None and n is None):
            break
    return out[:count]


def sampled_frames(video: Any, spec: Any) -> np.ndarray:
    """The frames a video's ``visual`` store saw, as pixels (no background subtraction)."""
    import dataclasses

    return np.concatenate([c.frames for c in video.frames(dataclasses.replace(spec, input="rgb"))])


def sets_masks(dino: np.ndarray, keep: float) -> np.ndarray:
    """SETS keep-masks ``[S, g, g]`` bool of one video's sampled frames (``dino [S, N, C]``)."""
    n = dino.shape[1]
    g = int(round(n**0.5))
    d = S.frame_distances(jnp.asarray(dino, jnp.float32)[None])  # [1, S, N]
    idx = S.select_indices(d, S.num_keep(n, keep))
    return np.asarray(S.keep_mask(idx, n))[0].reshape(-1, g, g)


def write_vagpt_report(method: Any, params: Any, metrics: dict[str, float], workdir: str) -> str:
    """Writes ``workdir/report.html`` from the method's last evaluation; returns its path."""
    del params
    c = method.config
    test = method.dataset.split("test")
    feats = method.feats["test"]
    ev = method.last_eval
    by_video: dict[int, list[int]] = {}
    for k, (i, *_rest) in enumerate(ev["items"]):
        by_video.setdefault(i, []).append(k)
    keep = method.keep["stage2"]
    fps = float(method.specs["cls"].fps)
    videos = []
    for i in report_videos(test, int(c.report_videos)):
        v, f = test[i], feats.video(i)
        count = len(f["sample_times"])
        pick = np.round(np.linspace(0, count - 1, min(FRAMES_SHOWN, count))).astype(int)
        try:
            shown = sampled_frames(v, method.specs["visual"])[pick]
        except (ValueError, OSError):  # the report never fails the run
            shown = None
        masks = sets_masks(f["dino"], keep)[pick] if keep < 1.0 else None
        questions, texts = [], {}
        for k in by_video.get(i, []):
            _, q, sentence, _ = ev["items"][k]
            # the generated answer's parsed choice (the headline); log-likelihood's otherwise
            parsed = ev.get("parsed", [None] * len(ev["items"]))[k]
            chosen = int(parsed) if parsed is not None else int(ev["chosen"][k])
            questions.append(
                ReportQuestion(
                    prompt=q.prompt(),
                    options=[f"{o.letter}. {o.text}" for o in q.options],
                    chosen=chosen,
                    answer=q.answer_index,
                    temporally_correct=q.is_temporally_correct(chosen),
                    scores=[float(s) for s in ev["scores"][k]],
                )
            )
            if sentence:
                texts["TETG prior sentence"] = sentence
            if "generated" in ev:
                note = (
                    ""
                    if parsed is not None
                    else " (unparsed: the row shows the best option by log-likelihood)"
                )
                texts[f"generated answer (question {len(questions)}){note}"] = ev["generated"][k]
        _, tetg_interval = method.tetg_sentence("test", i)
        videos.append(
            ReportVideo(
                video_id=v.id,
                anomaly_type=v.info.get("anomaly_type", v.label),
                fps=fps,
                duration=len(f["cls"]) / fps,
                gt_intervals=v.anomaly_seconds(),
                tetg_probs=np.asarray(method.tetg_probs["test"][i], np.float32),
                tetg_threshold=float(c.tetg.threshold),
                tetg_interval=tetg_interval,
                frames=shown,
                frame_times=None if shown is None else [float(f["sample_times"][p]) for p in pick],
                patch_masks=masks if shown is not None else None,
                questions=questions,
                texts=texts,
            )
        )
    notes = [
        f"{method.dataset.name} test split, {int(metrics.get('questions', 0))} four-option "
        "questions (in-domain benchmark); the model generates its answer and the parsed letter "
        "is scored; Total and Temporal chance are both 0.25.",
        f"SETS keeps {keep:.0%} of the patches per frame (highlighted; others dimmed).",
        "TETG: frame probabilities of the frozen MLP on CLIP class tokens; shaded = ground "
        "truth, band = the longest run above the threshold (the interval written in the prompt).",
    ]
    return write_report(
        os.path.join(workdir, "report.html"),
        f"VA-GPT on {method.dataset.name} ({c.preset} preset, llm={c.llm})",
        metrics,
        videos,
        notes=notes,
    )


FRAMES_SHOWN = 6  # sampled frames shown in the explain report


def write_explain_report(
    path: str,
    timeline: dict[str, Any],
    frames: np.ndarray,
    feats: dict[str, np.ndarray],
) -> str:
    """The ``explain`` CLI's ``report.html`` for one unlabelled video: TETG curve, sampled
    frames with SETS patches, ranked options, texts. Returns the path."""
    fps, keep = float(timeline["fps"]), float(timeline["sets_keep_ratio"])
    tetg_fps = float(timeline.get("tetg_fps", fps))
    times = np.asarray(feats["sample_times"])
    pick = np.round(np.linspace(0, len(times) - 1, min(FRAMES_SHOWN, len(times)))).astype(int)
    idx = np.minimum(np.round(times[pick] * fps).astype(int), len(frames) - 1)
    masks = sets_masks(feats["dino"], keep)[pick] if keep < 1.0 else None
    iv = timeline["tetg_interval_s"]
    best = timeline["options"][0]
    name = os.path.basename(timeline["video"])
    texts = {
        "Explanation (greedy answer of the video LLM)": timeline["explanation"],
        "Prompt (human turn)": timeline["prompt"],
        "TETG sentence": timeline["tetg_sentence"],
    }
    if timeline.get("note"):
        texts["Note"] = timeline["note"]
    video = ReportVideo(
        video_id=name,
        anomaly_type=f"no ground truth; top option: {best['anomaly_type']}",
        fps=tetg_fps,
        duration=float(timeline["duration_s"]),
        gt_intervals=[],
        tetg_probs=np.asarray(timeline["tetg_probs"], np.float32),
        tetg_threshold=float(timeline["threshold"]),
        tetg_interval=None if iv is None else (float(iv[0]), float(iv[1])),
        frames=frames[idx],
        frame_times=[float(i) / fps for i in idx],
        patch_masks=masks,
        texts=texts,
    )
    probs = np.asarray(timeline["frame_probs"], np.float64)
    metrics = {
        "duration_s": float(timeline["duration_s"]),
        "frames": float(timeline["n_frames"]),
        "max_frame_prob": float(probs.max()),
        "frames_above_threshold": float((probs >= timeline["threshold"]).sum()),
        "top_option_p": float(best["p"]),
    }
    rows = [
        {
            "rank": r + 1,
            "letter": o["letter"],
            "option": o["text"],
            "log-lik": o["logprob"],
            "p": o["p"],
        }
        for r, o in enumerate(timeline["options"])
    ]
    run = timeline["run"]
    notes = [
        f"Run {run['workdir']} (step {run['checkpoint_step']}, {run['stage']}, "
        f"preset {run['preset']}, llm={run['llm']}); no ground truth for this video.",
        f"Frames decoded at {fps:g} fps on the run's frame size (shorter side resized, centre "
        "crop); the curve is TETG's per-frame anomaly probability, the band its longest run "
        "above the threshold (the interval written into the prompt).",
        f"SETS keeps {keep:.0%} of the patches of each sampled frame (highlighted).",
        "Options are scored by the log-likelihood of their answer line; p = softmax over them.",
    ]
    if timeline.get("note"):
        notes.append(timeline["note"])
    return write_report(
        path,
        f"VA-GPT explanation of {name}",
        metrics,
        [video],
        tables={"Options ranked by log-likelihood": rows},
        notes=notes,
    )
