"""Chooses VA-GPT's ``tetg.smooth_s`` on SynthVAD *validation* videos, never train or test.

    python scripts/vagpt_tetg_smoothing.py RUN_DIR [--videos=96] [--smooth=0,0.125,0.25,0.5,1]

RUN_DIR is a finished tiny VA-GPT run (its TETG is read back). The validation videos are
rendered and encoded into the run's data dir; each gets the benchmark's two multiple-choice
questions; for every smoothing the accuracy of an exact reader of TETG's sentence
(:func:`vau_jax.methods.vagpt.tetg.prior_reader_accuracy`) is printed, with its normal and
anomalous halves. The validation split's seeds are disjoint from train, test and pretrain.
"""

from __future__ import annotations

import argparse
import dataclasses
import zlib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--smooth", default="0,0.125,0.25,0.5,1")
    args = p.parse_args()

    from vau_jax.data.benchmark import multiple_choice
    from vau_jax.data.datasets import synthvad_dataset
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.inference import load_run
    from vau_jax.methods.base import standardise
    from vau_jax.methods.vagpt import data as D
    from vau_jax.methods.vagpt.tetg import prior_reader_accuracy

    m = load_run(args.run_dir).method
    m.prepare()
    c = m.config
    if c.dataset != "synthvad":
        raise SystemExit(f"error: {args.run_dir}: the run's dataset is {c.dataset!r}, not synthvad")
    ds = synthvad_dataset(c.data_dir, SynthConfig(**dict(c.synthvad)), 0, 0, 0, args.videos)
    ds = dataclasses.replace(ds, name="synthvad")
    videos = ds.split("validation")
    feats = m._features("validation", ds, "validation")
    probs = m.tetg.probs(
        m.tetg_params, [standardise(feats.cls[i]["cls"]) for i in range(len(videos))]
    )
    questions = []
    for i, (v, iv) in enumerate(zip(videos, D.anomaly_intervals(videos))):
        f = D.facts(v, intervals=iv)
        base = zlib.crc32(f"validation/{v.id}".encode())
        per_video = int(c.questions_per_test_video)
        questions += [
            (i, multiple_choice(f, m.class_names, seed=base * 16 + k)) for k in range(per_video)
        ]
    fps, tau = float(m.specs["cls"].fps), float(c.tetg.threshold)
    normal = [(i, q) for i, q in questions if q.options[q.answer_index].interval is None]
    anomalous = [(i, q) for i, q in questions if q.options[q.answer_index].interval is not None]
    print(f"{len(videos)} validation videos, {len(questions)} questions, tau {tau}, {fps:g} fps")
    print("| smooth_s | reader Total | normal half | anomalous half |\n|---|---|---|---|")
    for s in (float(x) for x in args.smooth.split(",")):
        acc = [
            prior_reader_accuracy(probs, qs, fps, tau, s) for qs in (questions, normal, anomalous)
        ]
        print(f"| {s:g} | {acc[0]:.3f} | {acc[1]:.3f} | {acc[2]:.3f} |")


if __name__ == "__main__":
    main()
