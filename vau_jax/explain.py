"""Explain one video with a finished run of any method: timeline JSON and a report.

    python -m vau_jax.explain --workdir=DIR --video=PATH [--out=DIR] [--max_seconds=S] \
        [--question=TEXT] [--num_options=8|4] [--free_form] [--max_new_tokens=32]
    python -m vau_jax.explain --stream --workdir=DIR --video=PATH|- [--window_seconds=1] \
        [--threshold=P | --false_alarms_per_hour=R] [--idle_seconds=10]

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

``--stream`` follows a growing MPEG-TS / Matroska file, or standard input with
``--video=-``, window by window and prints one JSON line per window (``t_s``, ``p``,
``event``, ``type``): see :mod:`vau_jax.stream`.

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
    p.add_argument(
        "--video", required=True, help="the video file to explain (--stream: a growing file or -)"
    )
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
    s = p.add_argument_group("streaming (--stream; see vau_jax.stream)")
    s.add_argument(
        "--stream",
        action="store_true",
        help="follow a growing MPEG-TS/MKV file (or stdin with --video=-): a JSON line a window",
    )
    s.add_argument("--window_seconds", type=float, default=1.0, help="stream window length")
    s.add_argument(
        "--threshold", type=float, default=None, help="alert threshold (default: the run's)"
    )
    s.add_argument(
        "--false_alarms_per_hour",
        type=float,
        default=None,
        help="calibrate the threshold for this false-alert rate on SynthVAD's validation split",
    )
    s.add_argument(
        "--calibration_videos", type=int, default=64, help="validation videos to calibrate on"
    )
    s.add_argument(
        "--idle_seconds",
        type=float,
        default=10.0,
        help="a growing file that stops growing this long has ended",
    )
    s.add_argument(
        "--type_seconds",
        type=float,
        default=4.0,
        help="VA-GPT: seconds an alert's type is read from",
    )
    args = p.parse_args(argv)
    if args.stream:
        if args.threshold is not None and args.false_alarms_per_hour is not None:
            p.error("give --threshold or --false_alarms_per_hour, not both")
        for name in ("window_seconds", "idle_seconds", "type_seconds"):
            if not getattr(args, name) > 0:
                p.error(f"--{name} must be positive, got {getattr(args, name)}")
        if args.false_alarms_per_hour is not None and args.false_alarms_per_hour < 0:
            p.error(f"--false_alarms_per_hour must be >= 0, got {args.false_alarms_per_hour}")
        if args.calibration_videos < 1:
            p.error(f"--calibration_videos must be >= 1, got {args.calibration_videos}")
    elif args.video == "-":
        p.error("--video=- (standard input) needs --stream")
    return args


def stream(args: argparse.Namespace) -> int:
    """``--stream``: JSON lines on stdout, a summary on stderr (see :mod:`vau_jax.stream`)."""
    import vau_jax
    from vau_jax import stream as S

    name, fileobj = S.open_source(args.video, args.idle_seconds)
    try:
        loaded = vau_jax.load_run(args.workdir)
        scorer = S.window_scorer(loaded)
        threshold = scorer.threshold if args.threshold is None else float(args.threshold)
        if args.false_alarms_per_hour is not None:
            cal = S.calibrate(
                scorer, args.false_alarms_per_hour, args.calibration_videos, args.window_seconds
            )
            threshold = cal.threshold
            print(
                f"calibrated threshold {cal.threshold}: {cal.false_alarms_per_hour:.3g} false "
                f"alerts/hour over {cal.normal_hours * 60:.1f} min of normal validation footage "
                f"({cal.streams} videos; target {cal.target:g})",
                file=sys.stderr,
                flush=True,
            )
        windows = S.iter_windows(
            name, fileobj, loaded.frame_rate(), loaded.frame_size(), args.window_seconds
        )
        done = S.follow(windows, scorer, threshold, S.print_record, args.type_seconds)
    finally:
        fileobj.close()
    speed = done.stream_seconds / done.wall_seconds if done.wall_seconds > 0 else float("inf")
    print(
        f"{name}: {done.windows} windows, {done.stream_seconds:.1f} s of stream in "
        f"{done.wall_seconds:.1f} s ({speed:.1f}x real time), {done.alerts} alerts at "
        f"threshold {done.threshold:.6g}",
        file=sys.stderr,
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 with a one-line ``error:`` on failure)."""
    from vau_jax.inference import RunError

    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.stream:
        try:
            return stream(args)
        except (RunError, VideoDecodeError) as err:
            return report(err)
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
    from vau_jax.host_memory import exec_with_hugepages

    exec_with_hugepages("vau_jax.explain")  # first: 2 MB pages for XLA's buffers
    sys.exit(main())
