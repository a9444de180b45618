"""AHD settings compared on the validation split, without training RAE or answering questions.

    python scripts/tvau_ahd_sweep.py --data_dir=DIR [--seeds=0,1,2] [--splits=validation] \
        [--set ahd.frames_per_video=48 --set ahd_stage.steps=3000 ...]
    python scripts/tvau_ahd_sweep.py --run=RUN_DIR [...]   # a finished run's config instead

T-VAU's Yes/No answers are bounded by how well the AHD's heatmaps separate anomalous from
normal videos (README, T-VAU), and an AHD trains in under a minute where a whole T-VAU run
takes ten, so AHD settings are screened here first. The config is ``configs/tvau.py`` (tiny),
or a finished run's (``--run``), with ``--set`` overrides (``configs/common.py``
``apply_overrides``: a tuple field takes a comma list, e.g. ``taps=1,2,3,4``); the layout
tree, features and encoders come from (and are cached in) ``--data_dir`` as the main job's.
One AHD per seed is trained on every training video's AHD rows, all seeds side by side
(:func:`vau_jax.methods.tvau.crossfit.train_ahds`: the AHD stage's optimizer, step count and
batch size; a plain seeded loop, not the trainer's, so the AHDs are not the main job's).

Per split and seed it prints the frame score's micro-AUC (heatmap maximum smoothed by each of
``score_sigmas_s``; the main job picks the width by validation micro-AUC), and at that width
the video-level AUC of each video's maximum frame score, the accuracy of the best threshold on
it (chosen on the split itself: an upper bound on Yes/No, not a result) and, per anomaly
type, the share of anomalous videos whose maximum passes the 90th percentile of the normal
videos' maxima (``passed``: the recall at a 10% false-alarm rate). Choose on
``validation``; name ``test`` only to report a setting already chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))


def make_config(data_dir: str, overrides: list[str], run: str = ""):
    """``configs/tvau.py`` (tiny) under ``data_dir``, or the config of the finished run
    ``run`` (its own data dir unless ``data_dir`` is given), with ``key=value`` overrides."""
    from common import apply_overrides

    if run:
        from vau_jax.inference import load_run

        c = load_run(run).config
        if c.method != "tvau":
            raise SystemExit(f"error: {run}: a {c.method} run, not a T-VAU one")
    else:
        import tvau as tvau_config

        c = tvau_config.get_config("tiny")
    if data_dir:
        c.data_dir = data_dir
    apply_overrides(c, overrides)
    return c


def split_videos(method, split: str) -> tuple[list, list, list]:
    """``(videos, encoded features, anomaly type or "normal")`` of a split (the type from the
    constructed annotations, else the label); read once, whichever AHD scores them."""
    videos, feats = method.dataset.split(split), method.feats[split]
    encoded = [feats.video(i) for i in range(len(videos))]
    kinds = []
    for v in videos:
        entry = method.qa["videos"].get(v.id, {})
        normal = not method.records[v.id].is_anomalous
        kinds.append("normal" if normal else str(entry.get("anomaly_type") or v.label))
    return videos, encoded, kinds


def frame_scores_of(method, params, encoded: list) -> list:
    """Raw frame scores ``[T]`` (heatmap maximum) of each encoded video under one AHD."""
    from vau_jax.eval.boxes import frame_scores
    from vau_jax.methods.tvau import evaluation as E

    return [frame_scores(E.heatmaps(method, params, f["taps"])) for f in encoded]


def summarise(videos, encoded, kinds, scores, sigmas: list[float], chosen: float | None) -> dict:
    """Micro-AUC per width; at the ``chosen`` width (``None``: the best of this split, as the
    main job chooses on validation) the video-level separation (see the module docstring)."""
    from vau_jax.eval.metrics.auc import roc_auc
    from vau_jax.eval.smoothing import smooth_scores
    from vau_jax.methods.tvau.evaluation import _auc

    micro = {s: float(_auc(videos, encoded, scores, s)["micro_AUC"]) for s in sigmas}
    best = chosen if chosen is not None else max(sigmas, key=lambda s: (micro[s], -sigmas.index(s)))
    peak = np.array(
        [smooth_scores(x, f["timestamps"], best).max() for x, f in zip(scores, encoded)]
    )
    kinds = np.array(kinds)
    y = kinds != "normal"
    acc = max(float(np.mean((peak >= t) == y)) for t in peak)
    bar = float(np.quantile(peak[~y], 0.9))
    passed = {k: float(np.mean(peak[kinds == k] > bar)) for k in sorted(set(kinds[y]))}
    return {
        "micro_auc": micro,
        "sigma_s": best,
        "video_auc": float(roc_auc(y.astype(np.int64), peak)),
        "best_threshold_acc": acc,
        "passed": passed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data_dir",
        default="",
        help="default: the config's ($VAU_JAX_DATA_DIR or ./data_cache), or the run's",
    )
    ap.add_argument("--run", default="", help="a finished T-VAU run whose config to start from")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", default="validation")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", default="", help="append one JSON line of the results here")
    args = ap.parse_args()

    import jax

    from vau_jax.methods.tvau.crossfit import stack_rows, train_ahds
    from vau_jax.methods.tvau.data import ahd_rows_by_video
    from vau_jax.methods.tvau.method import TVAU

    seeds = [int(s) for s in args.seeds.split(",")]
    config = make_config(args.data_dir, args.overrides, args.run)
    with tempfile.TemporaryDirectory() as work:
        method = TVAU(config, work)
        method.prepare()
    rows = stack_rows(ahd_rows_by_video(method, "train"), len(method.taps))
    everything = [np.ones(len(rows[1]), bool)] * len(seeds)
    stacked = train_ahds(method, rows, everything, seeds[0])
    sigmas = [float(s) for s in config.score_sigmas_s]
    result = {"overrides": args.overrides, "seeds": seeds, "splits": {}}
    splits = args.splits.split(",")
    if "validation" in splits:  # first: its widths are the other splits'
        splits = ["validation"] + [s for s in splits if s != "validation"]
    chosen: dict[int, float] = {}
    for split in splits:
        per_seed = []
        videos, encoded, kinds = split_videos(method, split)
        for k, seed in enumerate(seeds):
            params = jax.tree.map(lambda x, k=k: x[k], stacked)
            scores = frame_scores_of(method, params, encoded)
            r = summarise(videos, encoded, kinds, scores, sigmas, chosen.get(k))
            if split == "validation":
                chosen[k] = r["sigma_s"]
            per_seed.append(r)
            micro = " ".join(f"{s:g}s {a:.3f}" for s, a in r["micro_auc"].items())
            types = " ".join(f"{t} {p:.2f}" for t, p in r["passed"].items())
            print(
                f"{split} AHD {seed}: micro-AUC {micro} | at {r['sigma_s']:g} s video AUC "
                f"{r['video_auc']:.3f} best threshold {r['best_threshold_acc']:.3f} | "
                f"passed {types}",
                flush=True,
            )
        mean = {
            key: float(np.mean([r[key] for r in per_seed]))
            for key in ("video_auc", "best_threshold_acc")
        }
        mean["micro_auc"] = float(np.mean([r["micro_auc"][r["sigma_s"]] for r in per_seed]))
        print(
            f"{split} mean over {len(seeds)}: " + " ".join(f"{k} {v:.4f}" for k, v in mean.items())
        )
        result["splits"][split] = {"per_seed": per_seed, "mean": mean}
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
