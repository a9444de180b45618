"""Explain one video with a finished run of any method: timeline JSON and a report.

    python -m vau_jax.explain --workdir=DIR --video=PATH [--out=DIR] [--max_seconds=S] \
        [--question=TEXT] [--num_options=8|4] [--free_form] [--max_new_tokens=32]

``DIR`` is a run of ``python -m vau_jax.main`` (VA-GPT or VAD-LLaMA). The run is restored
with :func:`vau_jax.load_run` (frozen encoders and heads only: the training features are not
touched), the video (any file FFmpeg decodes) is decoded at the run's frame rate and frame
size (shorter side resized, centre crop), and the method predicts:

* VA-GPT: TETG's per-frame anomaly probability, its sentence in the prompt, every anomaly
  class (+ "no anomaly") as a lettered option ranked by the log-likelihood of its answer line
  (``--num_options=4`` re-asks the best four as A-D, the tiny LLM's training format), and the
  LLM's greedy explanation (``--question`` replaces the question; ``--free_form`` asks it
  without options);
* VAD-LLaMA: the phase-2 VADor's clip scores (LTC carried through the video), per frame.

Outputs in ``--out`` (default ``DIR/explain/<video stem>``): ``timeline.json`` (atomic;
``frame_probs``, ``intervals_s``, ``fps``, ``n_frames``, ``method`` + the method's extras) and
``report.html``. Errors (missing run, no checkpoint, a run without prediction, an unreadable
video, a bad option) print one line ``error: PATH: reason`` and exit with code 2; nothing is
written into the run folder then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from vau_jax.cli import ArgumentParser, report
from vau_jax.data.video import VideoDecodeError, probe, read_frames


def decode(video: str, fps: float, size: int, max_seconds: float | None = None) -> np.ndarray:
    """uint8 ``[T, size, size, 3]`` frames of ``video`` at ``fps``."""
    max_frames = None
    if max_seconds is not None:
        max_frames = max(1, int(np.floor(float(max_seconds) * fps + 1e-6)))
    return read_frames(video, fps=fps, size=size, resize="crop", max_frames=max_frames).frames


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically (temporary file + rename)."""
    from vau_jax.data.features import atomic_write

    atomic_write(path, lambda f: (json.dump(obj, f, indent=2), f.write("\n")), mode="w")


def default_out(workdir: str, video: str) -> str:
    """``workdir/explain/<video stem>``."""
    return os.path.join(workdir, "explain", os.path.splitext(os.path.basename(video))[0])


def write_report(path: str, run: Any, timeline: dict[str, Any], frames: np.ndarray) -> str:
    """The explanation's ``report.html`` for the run's method; returns its path."""
    if run.name == "vagpt":
        from vau_jax.methods.vagpt.report import write_explain_report

        return write_explain_report(path, timeline, frames, run.method.last_prediction)
    if run.name == "tvau":
        from vau_jax.methods.tvau.report import write_explain_report as tvau_page

        return tvau_page(path, timeline, frames, run.method.last_prediction)
    from vau_jax.report import ReportVideo
    from vau_jax.report import write_report as write_html

    fps = float(timeline["fps"])
    pick = np.round(np.linspace(0, len(frames) - 1, min(6, len(frames)))).astype(int)
    video = ReportVideo(
        video_id=os.path.basename(timeline["video"]),
        anomaly_type="no ground truth",
        fps=fps,
        duration=float(timeline["duration_s"]),
        gt_intervals=[],
        tetg_probs=np.asarray(timeline["frame_probs"], np.float32),
        tetg_threshold=float(timeline["threshold"]),
        frames=frames[pick],
        frame_times=[float(i) / fps for i in pick],
    )
    probs = np.asarray(timeline["frame_probs"])
    metrics = {
        "duration_s": float(timeline["duration_s"]),
        "frames": float(timeline["n_frames"]),
        "max_frame_prob": float(probs.max()),
        "frames_above_threshold": float((probs >= timeline["threshold"]).sum()),
    }
    rows = [{"start_s": a, "end_s": b} for a, b in timeline["intervals_s"]]
    return write_html(
        path,
        f"{run.name} on {os.path.basename(timeline['video'])}",
        metrics,
        [video],
        tables={"intervals above the threshold": rows},
        notes=[f"run {run.workdir} (step {run.step}, {run.stage}); no ground truth"],
    )


def summary(timeline: dict[str, Any], paths: Sequence[str]) -> str:
    """A few lines for the terminal."""
    probs = timeline["frame_probs"]
    lines = [
        f"{timeline['video']}: {timeline['n_frames']} frames at {timeline['fps']:g} fps "
        f"({timeline['duration_s']:.1f} s), {timeline['method']}",
        f"  max p {max(probs):.3f}; {len(timeline['intervals_s'])} intervals above "
        f"{timeline['threshold']:g}: {timeline['intervals_s'][:4]}",
    ]
    if timeline.get("options"):
        best = timeline["options"][0]
        lines.append(f"  top option: {best['text']} (p={best['p']:.2f})")
    if "explanation" in timeline:
        lines.append(f"  explanation: {timeline['explanation']}")
    lines += [f"  wrote {p}" for p in paths]
    return "\n".join(lines)


def describe(
    loaded: Any, video: str, timeline: dict[str, Any], max_seconds: float | None
) -> dict[str, Any]:
    """The ``timeline.json`` record: ``video`` (its name), the prediction's timeline,
    ``max_seconds`` and the ``run`` that made it (workdir, method, step, stage, preset, llm)."""
    return {
        "video": video,
        **timeline,
        "max_seconds": max_seconds,
        "run": {
            "workdir": os.path.abspath(loaded.workdir),
            "method": loaded.name,
            "checkpoint_step": loaded.step,
            "stage": loaded.stage,
            "preset": str(loaded.config.get("preset", "tiny")),
            "llm": str(loaded.config.get("llm", "")),
        },
    }


def run(
    workdir: str,
    video: str,
    out: str | None = None,
    max_seconds: float | None = None,
    loaded: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """Explains ``video`` with the run in ``workdir``; writes ``timeline.json`` and
    ``report.html`` into ``out``; returns the timeline (with ``"paths"`` added).

    ``loaded`` reuses an already restored :class:`vau_jax.inference.Run` of ``workdir``.
    ``options`` go to the method's ``predict`` (VA-GPT: ``question``, ``num_options``,
    ``free_form``, ``max_new_tokens``).

    Raises:
      RunError: the run folder is unusable; VideoDecodeError: the video is unreadable.
    """
    import vau_jax

    probe(video)  # an unreadable video fails before anything loads
    loaded = loaded or vau_jax.load_run(workdir)
    fps = loaded.frame_rate()
    frames = decode(video, fps, loaded.frame_size(), max_seconds)
    kwargs = {**options, "source": video} if loaded.name == "vagpt" else {}
    timeline, _ = loaded.predict(frames, fps, None, **kwargs)
    timeline = describe(loaded, os.path.abspath(video), timeline, max_seconds)
    out = out or default_out(workdir, video)
    json_path = os.path.join(out, "timeline.json")
    write_json(json_path, timeline)
    html_path = write_report(os.path.join(out, "report.html"), loaded, timeline, frames)
    return {**timeline, "paths": [json_path, html_path]}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m vau_jax.explain", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a finished run folder (VA-GPT, VAD-LLaMA)")
    p.add_argument("--video", required=True, help="the video file to explain")
    p.add_argument("--out", default=None, help="output folder (default DIR/explain/<stem>)")
    p.add_argument("--max_seconds", type=float, default=None, help="only the first seconds")
    p.add_argument("--question", default=None, help="VA-GPT: question for the answer")
    p.add_argument(
        "--num_options",
        type=int,
        choices=(4, 8),
        default=8,
        help="VA-GPT: 8 = all types + no anomaly (A-H); 4 = the best four as A-D",
    )
    p.add_argument("--free_form", action="store_true", help="VA-GPT: ask without options")
    p.add_argument("--max_new_tokens", type=int, default=32, help="VA-GPT: answer length")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 with a one-line ``error:`` on failure)."""
    from vau_jax.inference import RunError

    args = _parse(sys.argv[1:] if argv is None else argv)
    options = {
        "question": args.question,
        "num_options": args.num_options,
        "free_form": args.free_form,
        "max_new_tokens": args.max_new_tokens,
    }
    try:
        result = run(args.workdir, args.video, args.out, args.max_seconds, **options)
    except (RunError, VideoDecodeError) as err:
        return report(err)
    print(summary(result, result["paths"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
