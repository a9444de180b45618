"""RBDC / TBDC of a finished T-VAU run's heatmaps under several heatmap → box rules, on the
**validation** split (how ``configs/tvau.py``'s ``box_rule`` was chosen; the test split is
not read).

    python scripts/tvau_box_rules.py RUN_DIR [--split=validation]

The run's AHD is restored and its heatmaps computed once per video; each rule of the grid
(absolute levels as before, and levels relative to each frame's heatmap maximum, at two
``min_area`` values) turns them into boxes scored against the split's tracks.
"""

from __future__ import annotations

import argparse
import dataclasses

LEVELS = ((0.3, 0.5, 0.7), (0.2, 0.4, 0.6), (0.4, 0.6, 0.8), (0.5, 0.7, 0.9), (0.5,), (0.7,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--split", default="validation", choices=("validation", "train"))
    args = ap.parse_args()

    from vau_jax.eval.metrics import rbdc_tbdc
    from vau_jax.inference import load_run
    from vau_jax.methods.tvau import data as D
    from vau_jax.methods.tvau import evaluation as E

    run = load_run(args.run)
    method = run.method
    method.prepared = None
    method.prepare()  # training mode: every split's features
    videos, feats = method.dataset.split(args.split), method.feats[args.split]
    heat, encoded, truth = [], [], {}
    for i, v in enumerate(videos):
        f = feats.video(i)
        encoded.append(f)
        heat.append(E.heatmaps(method, run.params["ahd"], f["taps"]))
        rows = D.gt_track_rows(method.records[v.id])
        if len(rows):
            truth[v.id] = rows
    frames = int(sum(len(f["indices"]) for f in encoded))
    base = E.box_rule(method.config)
    print(f"{args.split}: {len(videos)} videos, {frames} frames; config rule {base}")
    for relative in (False, True):
        for levels in LEVELS:
            for min_area in (4, 16):
                rule = dataclasses.replace(
                    base, relative=relative, levels=levels, min_area=min_area
                )
                preds = {
                    v.id: E.native_boxes(method, h, f["indices"], D.native_size(v), rule)
                    for v, f, h in zip(videos, encoded, heat)
                }
                got = rbdc_tbdc(truth, preds, frames)
                print(
                    f"relative={relative!s:5} levels={levels!s:17} min_area={min_area:2d}: "
                    f"RBDC {got['RBDC']:.4f}  TBDC {got['TBDC']:.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
