"""Explain one video with a finished VA-GPT run: timeline JSON, explanation and report.

    python -m vau_jax.explain --workdir=DIR --video=PATH [--out=DIR] [--question=TEXT] \
        [--num_options=8|4] [--free_form] [--max_seconds=S] [--max_new_tokens=32]

``DIR`` is a run of ``python -m vau_jax.main --config=configs/vagpt.py --workdir=DIR``; its
``config.json`` rebuilds the method (frozen CLIP and DINOv2, TETG's own run in ``DIR/tetg``,
the tokenizer and cached features in ``config.data_dir``; run from the folder the run was
started in when ``data_dir`` is relative) and the latest checkpoint gives the video LLM.

For the video (any file FFmpeg decodes):

1. decode at the run's SynthVAD frame rate and frame size (shorter side resized, centre crop;
   :mod:`vau_jax.data.video`);
2. encode it like the run's features (:func:`vau_jax.methods.vagpt_data.video_features`):
   CLIP class token per frame -> TETG anomaly probability per frame; CLIP patch tokens and
   DINOv2 patches of ``frames_per_video`` sampled frames -> SETS keep masks;
3. TETG's sentence (the longest run of frames with ``p >= threshold``, in seconds) goes into
   the prompt as during training (when the run used TETG);
4. options: "No anomaly happens in this video" and every anomaly type of the run's class
   list with TETG's interval (the whole video when TETG finds none), as one lettered
   multiple-choice prompt (``--num_options=8``: letters A-H; the tiny LLM was trained on
   four options A-D only, so ``--num_options=4`` re-asks the four best of the eight in an
   A-D prompt). Each option is scored by the log-likelihood of its answer line "X. text"
   (as ``VAGPT.evaluate_mc``); ``p`` is the softmax over the options asked last;
5. the explanation: the LLM's greedy answer (KV cache) to that prompt, with ``--question``
   replacing the question line (``--free_form``: the question alone, without options).

Outputs in ``--out`` (default ``DIR/explain/<video stem>``): ``timeline.json`` (written
atomically; fields in :func:`explain_video`) and ``report.html`` (TETG curve, frames with the
SETS patches, ranked options, prompt and answer). On the tiny preset the language model was
trained from scratch on SynthVAD multiple-choice questions only: the ranking and the answer
say which SynthVAD option the model prefers, nothing more; TETG's curve is the more
meaningful output on real footage, and even it has only seen synthetic frames.

Errors (missing run, no checkpoint, not a VA-GPT run, unreadable video, prompt too long)
print one line ``error: ...`` naming the path and exit with code 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.instruct import (
    MCOption,
    candidate_options,
    human_turn,
    mc_prompt,
    relettered,
)
from vau_jax.data.video import VideoDecodeError, probe, read_frames

HONESTY_NOTE = (
    "On the tiny preset every model here was trained on SynthVAD (synthetic 64x64 scenes) "
    "only, and the language model only on four-option multiple-choice questions about them: "
    "the options and the answer tell which SynthVAD option the model prefers, not a "
    "description of real footage."
)


class ExplainError(Exception):
    """A user-facing problem (bad run folder, unreadable video, ...): one line, exit code 1."""


@dataclasses.dataclass
class LoadedRun:
    """A restored VA-GPT run ready for inference.

    Attributes:
      workdir: the run folder.
      config: the run's config (from ``config.json``).
      method: the :class:`vau_jax.methods.vagpt.VAGPT` object (TETG restored).
      params: the video LLM's params of the latest checkpoint.
      step: that checkpoint's global step; ``stage`` its stage name.
      keep: SETS keep ratio of that stage (1.0 = all patches).
    """

    workdir: str
    config: Any
    method: Any
    params: Any
    step: int
    stage: str
    keep: float


# ------------------------------------------------------------------------------ the run


def load_config(workdir: str) -> Any:
    """The run's config from ``workdir/config.json`` (checked to be a VA-GPT run)."""
    import ml_collections

    if not os.path.isdir(workdir):
        raise ExplainError(f"{workdir}: no such run folder")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ExplainError(f"{path}: missing; not a run folder of python -m vau_jax.main")
    try:
        with open(path) as f:
            config = ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as err:
        raise ExplainError(f"{path}: cannot read the run's config: {err}") from None
    method = config.get("method", None)
    if method != "vagpt":
        raise ExplainError(
            f"{workdir}: a {method!r} run; explain needs a VA-GPT run (configs/vagpt.py)"
        )
    if config.get("preset", "tiny") == "paper" or config.get("llm", "") == "paper":
        raise ExplainError(f"{workdir}: the paper preset has no trained weights to explain with")
    return config


def _latest_step(directory: str) -> int | None:
    if not os.path.isdir(directory):
        return None
    from vau_jax.train.checkpoint import Checkpointer

    ckpt = Checkpointer(directory, async_save=False)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def check_run(workdir: str, config: Any) -> None:
    """Raises :class:`ExplainError` unless the run's checkpoints and frozen encoders exist
    (so that loading never silently trains anything)."""
    from vau_jax.methods import clip_pretrain

    ckpts = os.path.join(workdir, "checkpoints")
    if _latest_step(ckpts) is None:
        raise ExplainError(
            f"{ckpts}: no checkpoint; train first: python -m vau_jax.main "
            f"--config=configs/vagpt.py --workdir={workdir}"
        )
    tetg = os.path.join(workdir, "tetg", "checkpoints")
    if _latest_step(tetg) is None:
        raise ExplainError(f"{tetg}: no TETG checkpoint (the run did not finish TETG)")
    clip_dir = clip_pretrain.checkpoint_dir(config.clip_pretrain)
    if not os.path.isfile(os.path.join(clip_dir, "config.json")):
        raise ExplainError(
            f"{clip_dir}: the run's frozen CLIP is missing (config.data_dir="
            f"{config.data_dir!r}; run from the folder the run was started in)"
        )


def load_run(workdir: str, config: Any | None = None) -> LoadedRun:
    """Rebuilds the VA-GPT method of ``workdir`` and restores its latest params.

    The mesh is replaced by one over the local devices (inference on one video), so a run
    trained on more devices loads on fewer.
    """
    import ml_collections

    from vau_jax.methods.vagpt import VAGPT
    from vau_jax.train.trainer import Trainer

    config = load_config(workdir) if config is None else config
    check_run(workdir, config)
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.async_checkpointing = False
    method = VAGPT(config, workdir)
    trainer = Trainer(method, config, workdir)
    try:
        meta = trainer.ckpt.read_meta()
        params = trainer.restore_params()
    finally:
        trainer.close()
    stage = str(meta.get("stage", "stage2"))
    keep = float(method.keep.get(stage, method.keep["stage2"]))
    step = int(trainer.ckpt.latest_step() or 0)
    return LoadedRun(workdir, config, method, params, step, stage, keep)


# ------------------------------------------------------------------------------ prompts


def _tokenize(
    run: LoadedRun, human: str, question: str, answer: str | None, source: str
) -> dict[str, np.ndarray]:
    """One tokenised row (:func:`vagpt_data.chat_row`), padded to half the LLM's position
    limit (the padding is cut before the LLM runs)."""
    from vau_jax.methods import vagpt_data as D

    m = run.method
    limit = int(m.llm_cfg.max_position_embeddings) // 2
    try:
        return D.chat_row(
            m.tok, run.config, human, question, answer, 0, m.num_video_tokens, source, limit
        )
    except ValueError as err:
        raise ExplainError(f"{err} (half the LLM's position limit; shorten --question)") from None


def score_options(
    run: LoadedRun,
    feats: dict[str, np.ndarray],
    question: str,
    tetg_sentence: str | None,
    options: Sequence[MCOption],
    source: str,
) -> np.ndarray:
    """Log-likelihood ``[K]`` of each option's answer line "X. text" after the prompt
    (:meth:`VAGPT.option_scores`: the prompt runs once, the options continue it)."""
    human = human_turn(mc_prompt(question, options), tetg_sentence)
    rows = [_tokenize(run, human, question, f"{o.letter}. {o.text}", source) for o in options]
    scores = run.method.option_scores(run.params, rows, len(rows), feats, run.keep)
    return np.asarray(scores[0], np.float64)


def generate_answer(
    run: LoadedRun,
    feats: dict[str, np.ndarray],
    human: str,
    question: str,
    source: str,
    max_new_tokens: int = 32,
) -> str:
    """The LLM's greedy answer (KV cache, multimodal prefix) to the human turn ``human``."""
    row = _tokenize(run, human, question, None, source)
    texts = run.method.generate_rows(run.params, [row], feats, run.keep, int(max_new_tokens))
    return texts[0].strip()


# ------------------------------------------------------------------------------ explain


def decode_video(path: str, config: Any, max_seconds: float | None = None) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` frames at the run's SynthVAD fps and frame size (crop)."""
    s = config.synthvad
    fps = float(s.fps)
    max_frames = None
    if max_seconds is not None:
        max_frames = max(1, int(np.floor(float(max_seconds) * fps + 1e-6)))
    return read_frames(
        path,
        fps=fps,
        size=(int(s.height), int(s.width)),
        resize="crop",
        max_frames=max_frames,
    ).frames


def threshold_runs(probs: np.ndarray, fps: float, threshold: float) -> list[list[float]]:
    """Every run of frames with ``p >= threshold`` as ``[start, end]`` seconds (frame ``i``
    covers ``[i / fps, (i + 1) / fps)``), rounded to 1 ms."""
    from vau_jax.data.synthvad.types import label_runs

    runs = label_runs(np.asarray(probs) >= threshold)  # [K, 2] half-open frame runs
    return [[round(float(a) / fps, 3), round(float(b) / fps, 3)] for a, b in runs]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()


def explain_frames(
    run: LoadedRun,
    frames: np.ndarray,
    video: str,
    question: str | None = None,
    num_options: int = 8,
    free_form: bool = False,
    max_new_tokens: int = 32,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Explains decoded frames (at the run's fps and frame size).

    Returns:
      ``(timeline, feats)``: the ``timeline.json`` dict (see :func:`explain_video`) and the
      one-video features of :func:`vau_jax.methods.vagpt_data.video_features`.
    """
    from vau_jax.methods import vagpt_data as D
    from vau_jax.methods.vagpt import CLASS_NAMES
    from vau_jax.models.heads.tetg import tetg_prompt

    if num_options not in (4, 8):
        raise ValueError(f"num_options must be 4 or 8, got {num_options}")
    c, m = run.config, run.method
    fps = float(c.synthvad.fps)
    feats = D.video_features(m.clip, m.dino, frames, fps, int(c.frames_per_video))
    probs = m.tetg_run.probs(m.tetg_params, feats)[0]  # [T]
    threshold = float(c.tetg.threshold)
    sentence, interval = tetg_prompt(probs, fps, threshold, CLASS_NAMES)
    prior = sentence if c.use_tetg else None
    duration = len(frames) / fps
    question = question or T.MC_QUESTIONS[0]
    source = f"{video} (explain)"

    options = candidate_options(CLASS_NAMES, interval, duration)
    scores = score_options(run, feats, T.MC_QUESTIONS[0], prior, options, source)
    asked = options
    if num_options == 4:
        top = sorted(np.argsort(-scores, kind="stable")[:4].tolist())
        asked = relettered([options[i] for i in top])
        scores = score_options(run, feats, T.MC_QUESTIONS[0], prior, asked, source)
    p = _softmax(scores)
    order = np.argsort(-scores, kind="stable")
    ranked = [
        {
            "letter": asked[int(i)].letter,
            "text": asked[int(i)].text,
            "anomaly_type": asked[int(i)].anomaly_type,
            "interval_s": None if asked[int(i)].interval is None else list(asked[int(i)].interval),
            "logprob": round(float(scores[i]), 4),
            "p": round(float(p[i]), 6),
        }
        for i in order
    ]
    prompt = question if free_form else mc_prompt(question, asked)
    human = human_turn(prompt, prior)
    explanation = generate_answer(run, feats, human, question, source, max_new_tokens)

    timeline = {
        "video": os.path.abspath(video),
        "fps": fps,
        "n_frames": int(len(frames)),
        "duration_s": round(duration, 4),
        "frame_probs": [round(float(x), 6) for x in probs],
        "threshold": threshold,
        "intervals_s": threshold_runs(probs, fps, threshold),
        "tetg_interval_s": None if interval is None else [float(interval[0]), float(interval[1])],
        "tetg_sentence": sentence,
        "tetg_in_prompt": bool(c.use_tetg),
        "question": question,
        "prompt": human,
        "explanation": explanation,
        "options": ranked,
        "sampled_frames_s": [round(float(i) / fps, 4) for i in feats["sample_index"][0]],
        "sets_keep_ratio": run.keep,
        "run": {
            "workdir": os.path.abspath(run.workdir),
            "checkpoint_step": run.step,
            "stage": run.stage,
            "preset": str(c.get("preset", "tiny")),
            "llm": str(c.llm),
        },
        "note": HONESTY_NOTE if c.llm == "tiny" else "",
    }
    return timeline, feats


def explain_video(
    run: LoadedRun,
    video: str,
    question: str | None = None,
    num_options: int = 8,
    free_form: bool = False,
    max_seconds: float | None = None,
    max_new_tokens: int = 32,
) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """Decodes ``video`` and explains it.

    Returns:
      ``(timeline, frames, feats)``. ``timeline`` (the ``timeline.json`` content):
      ``video`` (absolute path), ``fps`` (of the decoded frames, the run's SynthVAD fps),
      ``n_frames``, ``duration_s``, ``frame_probs [n_frames]`` (TETG, frame ``i`` at
      ``i / fps`` s), ``threshold``, ``intervals_s`` (every run above the threshold,
      ``[[start, end], ...]`` s), ``tetg_interval_s`` (the longest run, or None) and
      ``tetg_sentence``, ``question``, ``prompt`` (the human turn), ``explanation`` (the greedy
      answer), ``options`` (best first: ``letter``, ``text``, ``anomaly_type``,
      ``interval_s``, ``logprob``, ``p``), ``sampled_frames_s``, ``sets_keep_ratio``, ``run``
      and ``note``. ``frames`` are the decoded uint8 ``[T, H, W, 3]``.

    Raises:
      VideoDecodeError: the video cannot be decoded.
    """
    frames = decode_video(video, run.config, max_seconds)
    timeline, feats = explain_frames(
        run, frames, video, question, num_options, free_form, max_new_tokens
    )
    timeline["max_seconds"] = max_seconds
    return timeline, frames, feats


# ------------------------------------------------------------------------------ outputs


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (temporary file + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def default_out(workdir: str, video: str) -> str:
    """``workdir/explain/<video stem>``."""
    return os.path.join(workdir, "explain", os.path.splitext(os.path.basename(video))[0])


def summary(timeline: dict[str, Any], paths: Sequence[str]) -> str:
    """A few lines for the terminal."""
    iv = timeline["tetg_interval_s"]
    best = timeline["options"][0]
    lines = [
        f"{timeline['video']}: {timeline['n_frames']} frames at {timeline['fps']:g} fps "
        f"({timeline['duration_s']:.1f} s)",
        f"  TETG: max p {max(timeline['frame_probs']):.3f}, "
        + (
            f"longest run above {timeline['threshold']:g}: {iv[0]:.1f}-{iv[1]:.1f} s "
            f"({len(timeline['intervals_s'])} runs)"
            if iv is not None
            else f"no frame above {timeline['threshold']:g}"
        ),
        f"  top option: {best['text']} (p={best['p']:.2f})",
        f"  explanation: {timeline['explanation']}",
    ]
    lines += [f"  wrote {p}" for p in paths]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI


def run(
    workdir: str,
    video: str,
    out: str | None = None,
    question: str | None = None,
    num_options: int = 8,
    free_form: bool = False,
    max_seconds: float | None = None,
    max_new_tokens: int = 32,
    loaded: LoadedRun | None = None,
) -> dict[str, Any]:
    """Explains ``video`` with the run in ``workdir``; writes ``timeline.json`` and
    ``report.html`` into ``out``; returns the timeline (with ``"paths"`` added).

    ``loaded`` reuses an already restored run of ``workdir`` (several videos, tests).

    Raises:
      ExplainError: the run folder is unusable; VideoDecodeError: the video is unreadable.
    """
    probe(video)  # an unreadable video fails before anything loads
    if loaded is None:
        loaded = load_run(workdir, load_config(workdir))
    timeline, frames, feats = explain_video(
        loaded, video, question, num_options, free_form, max_seconds, max_new_tokens
    )
    out = out or default_out(workdir, video)
    json_path = os.path.join(out, "timeline.json")
    write_json(json_path, timeline)
    from vau_jax.methods.vagpt_report import write_explain_report

    html_path = write_explain_report(os.path.join(out, "report.html"), timeline, frames, feats)
    return {**timeline, "paths": [json_path, html_path]}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m vau_jax.explain", description=__doc__.split("\n")[0]
    )
    p.add_argument("--workdir", required=True, help="a finished VA-GPT run folder")
    p.add_argument("--video", required=True, help="the video file to explain")
    p.add_argument("--out", default=None, help="output folder (default DIR/explain/<stem>)")
    p.add_argument(
        "--question", default=None, help=f"question for the answer (default: {T.MC_QUESTIONS[0]})"
    )
    p.add_argument(
        "--num_options",
        type=int,
        choices=(4, 8),
        default=8,
        help="8: all types + no anomaly (A-H); 4: the best four re-asked as A-D",
    )
    p.add_argument("--free_form", action="store_true", help="ask --question without the options")
    p.add_argument("--max_seconds", type=float, default=None, help="only the first seconds")
    p.add_argument("--max_new_tokens", type=int, default=32, help="answer length limit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1 with a one-line ``error:`` on failure)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        result = run(
            args.workdir,
            args.video,
            args.out,
            args.question,
            args.num_options,
            args.free_form,
            args.max_seconds,
            args.max_new_tokens,
        )
    except (ExplainError, VideoDecodeError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    print(summary(result, result["paths"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
