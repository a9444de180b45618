"""Chooses VA-GPT's ``tetg.smooth_s`` on SynthVAD *validation* videos, never train or test.

    python scripts/vagpt_tetg_smoothing.py RUN_DIR [--videos=96] [--smooth=0,0.125,0.25,0.5,1]

RUN_DIR is a finished tiny VA-GPT run (its TETG is read back). The run is prepared with
``--videos`` validation videos (``num_validation_videos``: rendered and encoded into the
run's data dir when missing), and its validation benchmark (the questions the main job asks
there, :func:`vau_jax.methods.vagpt.evaluation.benchmark_items`) is read by an exact reader
of TETG's sentence for every smoothing
(:func:`vau_jax.methods.vagpt.tetg.prior_reader_accuracy`), printed with its normal and
anomalous halves. The validation split's seeds are disjoint from train, test and pretrain.
"""

from __future__ import annotations

import argparse
from typing import Any


def on_validation(run_dir: str, videos: int) -> tuple[Any, list[tuple[int, Any]]]:
    """A finished tiny SynthVAD VA-GPT run prepared with ``videos`` validation videos (rendered
    and encoded into its data dir when missing), and its validation benchmark as ``(video
    index, MCQuestion)`` pairs; exits with ``error: RUN_DIR: ...`` for another dataset."""
    from vau_jax.inference import load_run
    from vau_jax.methods.vagpt.evaluation import benchmark_items

    m = load_run(run_dir).method
    c = m.config
    if c.dataset != "synthvad":
        raise SystemExit(f"error: {run_dir}: the run's dataset is {c.dataset!r}, not synthvad")
    with c.unlocked():
        c.num_validation_videos = videos
    m.prepare()
    return m, [(i, q) for i, q, _, _ in benchmark_items(m, "validation")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--smooth", default="0,0.125,0.25,0.5,1")
    args = p.parse_args()

    from vau_jax.methods.vagpt.tetg import prior_reader_accuracy

    m, questions = on_validation(args.run_dir, args.videos)
    c = m.config
    probs = m.tetg_probs["validation"]
    normal = [(i, q) for i, q in questions if q.options[q.answer_index].interval is None]
    anomalous = [(i, q) for i, q in questions if q.options[q.answer_index].interval is not None]
    fps, tau = float(m.specs["cls"].fps), float(c.tetg.threshold)
    print(f"{len(probs)} validation videos, {len(questions)} questions, tau {tau}, {fps:g} fps")
    print("| smooth_s | reader Total | normal half | anomalous half |\n|---|---|---|---|")
    for s in (float(x) for x in args.smooth.split(",")):
        acc = [
            prior_reader_accuracy(probs, qs, fps, tau, s) for qs in (questions, normal, anomalous)
        ]
        print(f"| {s:g} | {acc[0]:.3f} | {acc[1]:.3f} | {acc[2]:.3f} |")


if __name__ == "__main__":
    main()
