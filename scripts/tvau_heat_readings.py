"""How well each way of summarising a T-VAU run's AHD heatmaps per LVLM frame separates
anomalous from normal videos (how ``rae.heat_frames`` was chosen; methods/tvau/heat.py).

    python scripts/tvau_heat_readings.py RUN_DIR [--splits=train,validation,test]

The run's AHD is restored and every encoded frame's patch-grid heatmap computed once per
video. Per reading, a video's evidence is the maximum over its ``S`` (``frames_per_video``)
summarised heatmaps; per split the script prints the video-level AUC of that maximum
(anomalous = positive), the accuracy of the best threshold on it (chosen on that split
itself: an upper bound, not a result) and the median maximum of normal and anomalous videos.

Readings:

* ``sampled``: the heatmaps of the ``S`` frames the LVLM samples (``rae.heat_frames=sampled``);
* ``segment_mean``: per segment of the video the mean heatmap (``rae.heat_frames=segment_mean``);
* ``gauss_<s>``: every patch smoothed over time by a Gaussian of ``s`` seconds, at the sampled
  frames (not an option of RAE; measured beside it);
* ``segment_peak``: per segment the mean over its frames of each frame's heatmap maximum (the
  maximum taken before the mean over time, where ``segment_mean`` takes it after: a moving
  object's heat is spread over patches by the mean);
* ``frame_score``: not a per-frame reading but evaluation's own video evidence, the maximum of
  the frame score (heatmap maximum) smoothed by the run's chosen ``score_sigma_s``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

SIGMAS_S = (0.25, 0.5)


def readings(grid: np.ndarray, timestamps: np.ndarray, frames: int, sigma_s: float) -> dict:
    """The video evidence of every reading from one video's ``grid [T, g, g]`` heatmaps."""
    from scipy.ndimage import gaussian_filter1d

    from vau_jax.eval.smoothing import smooth_scores
    from vau_jax.methods.tvau.data import sample_indices
    from vau_jax.methods.tvau.heat import segment_means, segment_peaks

    idx = sample_indices(len(grid), frames)
    out = {
        "sampled": float(grid[idx].max()),
        "segment_mean": float(segment_means(grid, frames).max()),
    }
    step = float(np.median(np.diff(timestamps))) if len(timestamps) > 1 else 1.0
    for s in SIGMAS_S:
        g = gaussian_filter1d(grid.astype(np.float64), s / step, axis=0, mode="nearest")
        out[f"gauss_{s:g}"] = float(g[idx].max())
    frame = grid.reshape(len(grid), -1).max(axis=1)
    out["segment_peak"] = float(segment_peaks(grid, frames).max())  # what RAE reads
    out["frame_score"] = float(smooth_scores(frame, timestamps, sigma_s).max())
    return out


def separation(evidence: np.ndarray, anomalous: np.ndarray) -> dict[str, float]:
    """``auc``, ``best_acc`` (the best threshold's accuracy on these videos), medians."""
    from vau_jax.eval.metrics.auc import roc_auc

    best = max(float(np.mean((evidence >= t) == anomalous)) for t in evidence)
    return {
        "auc": float(roc_auc(anomalous.astype(np.int64), evidence)),
        "best_acc": best,
        "normal_median": float(np.median(evidence[~anomalous])),
        "anomalous_median": float(np.median(evidence[anomalous])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--splits", default="train,validation,test")
    args = ap.parse_args()

    from vau_jax.inference import load_run
    from vau_jax.methods.tvau import evaluation as E

    run = load_run(args.run)
    method = run.method
    method.prepared = None
    method.prepare()  # training mode: every split's features
    with open(os.path.join(args.run, "metrics.json"), encoding="utf-8") as f:
        sigma = float(json.load(f).get("score_sigma_s", 0.0))
    for split in args.splits.split(","):
        if split not in method.feats:
            print(f"{split}: no videos")
            continue
        videos, feats = method.dataset.split(split), method.feats[split]
        rows, labels = [], []
        for i, v in enumerate(videos):
            f = feats.video(i)
            _, grid = E.heatmaps(method, run.params["ahd"], f["taps"], grid=True)
            rows.append(readings(grid, f["timestamps"], method.frames, sigma))
            labels.append(str(v.label) != "Normal")
        y = np.asarray(labels, bool)
        print(f"{split}: {len(y)} videos ({int(y.sum())} anomalous), S = {method.frames}")
        if y.all() or not y.any():
            print("  one class only: no separation to measure")
            continue
        for name in rows[0]:
            r = separation(np.asarray([x[name] for x in rows]), y)
            print(
                f"  {name:13s} AUC {r['auc']:.3f}  best threshold {r['best_acc']:.3f}  "
                f"median max normal {r['normal_median']:.3f} anomalous {r['anomalous_median']:.3f}"
            )


if __name__ == "__main__":
    main()
