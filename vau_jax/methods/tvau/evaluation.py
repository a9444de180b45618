"""T-VAU evaluation on the test split, its prediction files, and one-video prediction.

Metrics (``metrics.json``):

* ``micro_auc`` / ``macro_auc``: UBnormal's frame-level protocol
  (:func:`vau_jax.eval.metrics.ubnormal_auc`) on the frame score = the heatmap maximum,
  every native frame, smoothed over time by a Gaussian of ``score_sigma_s`` seconds
  (:func:`smooth_scores`; 0 = none). With several ``config.score_sigmas_s`` the one with
  the best micro-AUC on the **validation** split is used (:func:`choose_sigma`; UBnormal's
  validation lists, which SynthVAD's tree fills with ``config.num_validation_videos``);
  the test split never takes part in the choice. ``micro_auc_unsmoothed`` /
  ``macro_auc_unsmoothed`` are the raw heatmap maximum's, ``validation_micro_auc`` the
  chosen setting's on the validation split. Boxes are never smoothed (temporal smoothing of
  the heatmap itself smears moving objects: RBDC/TBDC fell in every trial);
* ``rbdc`` / ``tbdc``: :func:`vau_jax.eval.metrics.rbdc_tbdc` of the boxes of
  :func:`vau_jax.eval.boxes.video_boxes` (``config.box_rule``) against the layout's
  anomalous-object tracks, over ``test_frames`` frames. Both are written as
  ``predictions/boxes/<video>.txt`` (``frame, x1, y1, x2, y2, score``) and
  ``predictions/gt_tracks/<video>.txt`` (``track_id, frame, x1, y1, x2, y2``), so
  ``python -m vau_jax.evaluate --metric=rbdc_tbdc --gt=DIR/predictions/gt_tracks
  --pred=DIR/predictions/boxes --num_frames=<test_frames>`` gives the same numbers;
* ``bleu4_target`` / ``bleu4_trajectory``: corpus BLEU-4 (lowercase word tokens, no
  smoothing: ``evaluate --metric=bleu``'s BLEU-4) of the generated answers to the target and
  trajectory questions; ``yesno_acc``: Yes/No accuracy of the generated answers. Every
  answer is written to ``answers_test.jsonl`` beside the truth, and per question kind
  ``predictions/<kind>_gt.jsonl`` / ``<kind>_pred.jsonl`` (``{"id", "answer"}``: the
  ``evaluate --metric=bleu|yesno`` inputs). The same three on the validation split's
  questions, where the dataset construction wrote some, are ``validation_bleu4_target``,
  ``validation_bleu4_trajectory`` and ``validation_yesno_acc`` (``answers_validation.jsonl``):
  settings are chosen on them, never on the test split; per-frame scores go to
  ``predictions/frame_scores/<video>.txt`` and the test videos' names to
  ``predictions/test_videos.txt`` (``evaluate --metric=ubnormal_auc --gt=<layout root>
  --subset=...``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.eval.smoothing import smooth_scores
from vau_jax.methods.tvau import data as D

#: Frames per jitted AHD call (one compiled shape; the last batch is padded).
HEAT_BATCH = 64


def _heat_fn(method: Any) -> Any:
    """Jitted ``(ahd params, taps [n, N, D_k]...) -> (heatmap [n, size, size], patch-grid
    heatmap [n, g, g])`` (built once)."""
    if "heat" not in method._jit:
        from vau_jax.models.heads.ahd import upsample_heatmap

        size = method.size

        def fn(ahd_params: Any, taps: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
            h = method.heat(ahd_params, taps)["heatmap"]
            return upsample_heatmap(h, (size, size)), h

        method._jit["heat"] = jax.jit(fn)
    return method._jit["heat"]


def heatmaps(
    method: Any, ahd_params: Any, taps: list[np.ndarray], grid: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """float32 ``[T, size, size]`` heatmaps of one video's tapped tokens (``[T, N, D_k]``);
    with ``grid`` also AHD's own ``[T, g, g]`` patch-grid heatmaps."""
    fn, n = _heat_fn(method), len(taps[0])
    up, coarse = [], []
    for s in range(0, n, HEAT_BATCH):
        chunk = [t[s : s + HEAT_BATCH] for t in taps]
        pad = HEAT_BATCH - len(chunk[0])
        chunk = [np.concatenate([t, np.repeat(t[-1:], pad, 0)]) if pad else t for t in chunk]
        a, b = fn(ahd_params, [jnp.asarray(t) for t in chunk])
        up.append(np.asarray(a)[: HEAT_BATCH - pad])
        coarse.append(np.asarray(b)[: HEAT_BATCH - pad])
    return (np.concatenate(up), np.concatenate(coarse)) if grid else np.concatenate(up)


def box_rule(config: Any) -> Any:
    """The config's :class:`vau_jax.eval.boxes.BoxRule`."""
    from vau_jax.eval.boxes import BoxRule

    r = config.box_rule
    return BoxRule(
        levels=tuple(float(x) for x in r.levels),
        relative=bool(r.relative),
        min_area=int(r.min_area),
        nms_iou=float(r.nms_iou),
        max_boxes=int(r.max_boxes),
    )


def native_boxes(
    method: Any, heat: np.ndarray, indices: np.ndarray, native_hw: tuple[int, int], rule: Any
) -> np.ndarray:
    """float ``[K, 6]`` rows ``(frame, x1, y1, x2, y2, score)`` of one video's heatmaps
    ``[T, size, size]`` under ``rule`` (:func:`vau_jax.eval.boxes.video_boxes`), frames
    numbered by ``indices`` ``[T]`` and boxes in native pixels of an ``(H, W)`` frame."""
    from vau_jax.eval.boxes import video_boxes

    rows = video_boxes(heat, rule, frames=indices)
    rows[:, 1:5] = D.box_to_native(rows[:, 1:5], native_hw, method.size)
    return rows


def _raw_scores(method: Any, params: Any, split: str) -> tuple[list, list, list]:
    """``(videos, encoded features, heatmap-maximum frame scores [T])`` of a split."""
    from vau_jax.eval.boxes import frame_scores

    videos = method.dataset.split(split)
    encoded = [D.full_video(method, split, i) for i in range(len(videos))]
    scores, grids = [], {}
    for i, f in enumerate(encoded):
        heat, grids[i] = heatmaps(method, params["ahd"], f["taps"], grid=True)
        scores.append(frame_scores(heat))
    _keep(method, params, split, grids)
    return videos, encoded, scores


def _keep(method: Any, params: Any, split: str, grids: dict[int, np.ndarray]) -> None:
    """Keeps a split's patch-grid heatmaps for its questions' RAE input, when RAE reads
    segments of every frame (:func:`vau_jax.methods.tvau.heat.keep_video_heat`)."""
    from vau_jax.methods.tvau.heat import keep_video_heat, reads_segment_means

    if reads_segment_means(method):
        keep_video_heat(method, params["ahd"], split, grids)


def _auc(videos: list, encoded: list, scores: list, sigma_s: float) -> dict[str, float]:
    from vau_jax.data.datasets import frame_records
    from vau_jax.eval.metrics import frame_metrics

    smoothed = {
        v.id: smooth_scores(s, f["timestamps"], sigma_s) for v, f, s in zip(videos, encoded, scores)
    }
    return frame_metrics("ubnormal_auc", frame_records(videos, encoded), smoothed)


def sigma_candidates(method: Any) -> list[float]:
    """``config.score_sigmas_s`` as floats, checked: seconds >= 0, and with more than one
    value the dataset must have validation videos to choose on (checked before training by
    the method's ``prepare``, so a run never trains only to fail here)."""
    candidates = [float(x) for x in method.config.get("score_sigmas_s", (0.0,))]
    if not candidates or min(candidates) < 0:
        raise ValueError(f"config.score_sigmas_s must be seconds >= 0, got {candidates}")
    if len(candidates) > 1 and not method.dataset.videos.get("validation"):
        raise ValueError(
            f"config.score_sigmas_s={tuple(candidates)}: choosing among them needs validation "
            "videos (config.num_validation_videos for SynthVAD, or a UBnormal tree whose "
            "scripts/*_validation_video_names.txt list some); give one value, e.g. "
            "--config.score_sigmas_s=0, to skip the choice"
        )
    return candidates


def choose_sigma(method: Any, params: Any) -> tuple[float, float]:
    """``(sigma_s, validation micro-AUC)``: the ``config.score_sigmas_s`` value with the best
    micro-AUC on the validation split (ties: the first listed). A single value is used as
    given (validation micro-AUC ``nan``, no validation video needed)."""
    candidates = sigma_candidates(method)
    if len(candidates) == 1:
        return candidates[0], float("nan")
    videos, encoded, scores = _raw_scores(method, params, "validation")
    aucs = [float(_auc(videos, encoded, scores, s)["micro_AUC"]) for s in candidates]
    if not all(np.isfinite(aucs)):
        raise ValueError(
            "the validation split needs normal and anomalous frames to choose "
            f"config.score_sigmas_s (micro-AUC per candidate: {aucs})"
        )
    best = int(np.argmax(aucs))
    return candidates[best], aucs[best]


def localisation(method: Any, params: Any, workdir: str) -> dict[str, float]:
    """Frame AUCs and RBDC/TBDC on the test split; writes the prediction folders."""
    from vau_jax.data.datasets import frame_records
    from vau_jax.eval.boxes import frame_scores, write_boxes, write_gt_tracks
    from vau_jax.eval.metrics import frame_metrics, rbdc_tbdc

    sigma_s, val_auc = choose_sigma(method, params)
    videos = method.dataset.split("test")
    rule = box_rule(method.config)
    boxes_dir = os.path.join(workdir, "predictions", "boxes")
    gt_dir = os.path.join(workdir, "predictions", "gt_tracks")
    os.makedirs(boxes_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)
    score_dir = os.path.join(workdir, "predictions", "frame_scores")
    os.makedirs(score_dir, exist_ok=True)
    scores, raw, encoded, preds, gt, grids = {}, {}, [], {}, {}, {}
    for i, v in enumerate(videos):
        f = D.full_video(method, "test", i)
        heat, grids[i] = heatmaps(method, params["ahd"], f["taps"], grid=True)
        raw[v.id] = frame_scores(heat)
        scores[v.id] = smooth_scores(raw[v.id], f["timestamps"], sigma_s)
        _write_lines(os.path.join(score_dir, f"{v.id}.txt"), [f"{x:.6f}" for x in scores[v.id]])
        encoded.append(f)
        rows = native_boxes(method, heat, f["indices"], D.native_size(v), rule)
        preds[v.id] = rows
        write_boxes(os.path.join(boxes_dir, f"{v.id}.txt"), rows)
        truth = D.gt_track_rows(method.records[v.id])
        if len(truth):
            gt[v.id] = truth
            write_gt_tracks(os.path.join(gt_dir, f"{v.id}.txt"), truth)
    _write_lines(os.path.join(workdir, "predictions", "test_videos.txt"), [v.id for v in videos])
    _keep(method, params, "test", grids)
    recs = frame_records(videos, encoded)
    auc = frame_metrics("ubnormal_auc", recs, scores)
    unsmoothed = frame_metrics("ubnormal_auc", recs, raw)
    test_frames = int(sum(len(f["indices"]) for f in encoded))
    loc = rbdc_tbdc(gt, preds, test_frames)
    return {
        "micro_auc": float(auc["micro_AUC"]),
        "macro_auc": float(auc["macro_AUC"]),
        "micro_auc_unsmoothed": float(unsmoothed["micro_AUC"]),
        "macro_auc_unsmoothed": float(unsmoothed["macro_AUC"]),
        "score_sigma_s": sigma_s,
        **({"validation_micro_auc": val_auc} if np.isfinite(val_auc) else {}),
        "rbdc": float(loc["RBDC"]),
        "tbdc": float(loc["TBDC"]),
        "test_frames": float(test_frames),
    }


def _write_lines(path: str, lines: list[str]) -> None:
    """Text lines written atomically (:func:`vau_jax.data.features.atomic_write`)."""
    from vau_jax.data.features import atomic_write

    atomic_write(path, lambda f: f.write("".join(line + "\n" for line in lines)), mode="w")


def scorer(method: Any) -> Any:
    """The run's :class:`vau_jax.eval.scoring.Scorer` (built once)."""
    if "scorer" not in method._jit:
        from vau_jax.eval.scoring import Scorer

        method._jit["scorer"] = Scorer(lambda p, b: None, method.prefix_embeds)
    return method._jit["scorer"]


def answer_questions(method: Any, params: Any, split: str) -> list[dict[str, Any]]:
    """Greedy answers to a split's evaluation questions: ``{"video", "kind", "question",
    "answer", "truth"}`` per question."""
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.heat import reads_segment_means, split_heat
    from vau_jax.models.llama import LlamaForCausalLM

    rows, items = Q.eval_rows(method, split)
    attach = lambda b: D.attach(method, split, b)  # noqa: E731
    if reads_segment_means(method):
        videos = sorted({int(v) for r in rows for v in np.atleast_1d(r["video"])})
        heat = split_heat(method, params["ahd"], split, videos)
        attach = lambda b: {  # noqa: E731
            **D.attach(method, split, b),
            "heat": np.stack([heat[int(v)] for v in b["video"]]),
        }
    texts = scorer(method).generate(
        {**params, "llm": params["vlm"]["llm"]},  # the scorer decodes with params["llm"]
        LlamaForCausalLM(method.llm_cfg),
        rows,
        method.tok,
        attach=attach,
        max_new_tokens=int(method.config.max_answer_tokens),
    )
    return [{**item, "answer": t} for item, t in zip(items, texts)]


def language(method: Any, params: Any, workdir: str) -> dict[str, float]:
    """BLEU-4 of target / trajectory answers and Yes/No accuracy on the test split; writes
    the answers. The same on the validation split's questions, where the dataset has them,
    as ``validation_*`` (for choosing settings without the test split)."""
    answers = answer_questions(method, params, "test")
    _write_lines(os.path.join(workdir, "answers_test.jsonl"), [json.dumps(a) for a in answers])
    folder = os.path.join(workdir, "predictions")
    os.makedirs(folder, exist_ok=True)
    for kind in ("target", "trajectory", "yes_no", "spatial"):
        got = [(f"q{k}", a) for k, a in enumerate(answers) if a["kind"] == kind]
        gt = [json.dumps({"id": i, "answer": a["truth"]}) for i, a in got]
        pred = [json.dumps({"id": i, "answer": a["answer"]}) for i, a in got]
        _write_lines(os.path.join(folder, f"{kind}_gt.jsonl"), gt)
        _write_lines(os.path.join(folder, f"{kind}_pred.jsonl"), pred)
    out = _answer_scores(answers)
    out["questions"] = float(len(answers))
    if method.dataset.videos.get("validation") and _has_questions(method, "validation"):
        val = answer_questions(method, params, "validation")
        _write_lines(
            os.path.join(workdir, "answers_validation.jsonl"), [json.dumps(a) for a in val]
        )
        out.update({f"validation_{k}": v for k, v in _answer_scores(val).items()})
    return out


def _answer_scores(answers: list[dict[str, Any]]) -> dict[str, float]:
    """``bleu4_target``, ``bleu4_trajectory`` and ``yesno_acc`` of answered questions (each
    only when its kind is present)."""
    from vau_jax.eval.metrics import bleu_scores, yes_no_accuracy

    out: dict[str, float] = {}
    for kind in ("target", "trajectory"):
        got = [a for a in answers if a["kind"] == kind]
        if got:
            b = bleu_scores([a["answer"] for a in got], [a["truth"] for a in got])
            out[f"bleu4_{kind}"] = float(b["BLEU-4"])
    yn = [a for a in answers if a["kind"] == "yes_no"]
    if yn:
        out["yesno_acc"] = yes_no_accuracy([a["answer"] for a in yn], [a["truth"] for a in yn])
    return out


def _has_questions(method: Any, split: str) -> bool:
    """Whether the dataset construction wrote questions about ``split``'s videos (a
    questions cache built before validation questions existed has none)."""
    ids = {v.id for v in method.dataset.split(split)}
    return any(q["video"] in ids for q in method.qa["questions"])


def evaluate(method: Any, params: Any, workdir: str) -> dict[str, float]:
    """Every test metric (module docstring); without AHD (``use_ahd=False``, an ablation)
    there is no heatmap, so no localisation metric."""
    loc = localisation(method, params, workdir) if method.use_ahd else {}
    return {**loc, **language(method, params, workdir)}
