"""Benchmark of the evaluation metrics on dataset-scale synthetic input.

    python bench/metrics.py [--videos=200] [--frames=450] [--preds_per_frame=2.2] [--seed=0]

RBDC/TBDC at UBnormal scale (default: 200 videos x 450 frames = 90k frames, ~200k predicted
boxes, about half the videos with 1-3 anomalous tracks) and frame-level AUC_O/AUC_A at
UCF-Crime scale (290 videos, ~1.1M frames). Prints one line per measurement with the time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vau_jax.eval.metrics.frame_level import frame_auc
from vau_jax.eval.metrics.rbdc_tbdc import rbdc_tbdc


def synthetic_ubnormal(videos: int, frames: int, preds_per_frame: float, seed: int):
    """GT rows ``[M, 6]`` and prediction rows ``[K, 6]`` per video (tracks of moving boxes)."""
    rng = np.random.default_rng(seed)
    gt, preds = {}, {}
    for v in range(videos):
        vid = f"video_{v:04d}"
        rows = []
        if v % 2 == 0:
            for tid in range(int(rng.integers(1, 4))):
                start = int(rng.integers(0, frames - 50))
                length = int(rng.integers(30, frames - start))
                f = np.arange(start, start + length)
                x = rng.integers(0, 500) + np.cumsum(rng.integers(-2, 3, length))
                y = rng.integers(0, 300) + np.cumsum(rng.integers(-2, 3, length))
                w, h = rng.integers(20, 80), rng.integers(40, 120)
                rows.append(np.stack([np.full(length, tid), f, x, y, x + w, y + h], axis=1))
        g = np.concatenate(rows) if rows else np.zeros([0, 6], np.int64)
        gt[vid] = g
        n = int(rng.poisson(preds_per_frame * frames))
        pf = rng.integers(0, frames, n)
        px, py = rng.integers(0, 900, n), rng.integers(0, 600, n)
        pw, ph = rng.integers(10, 100, n), rng.integers(10, 150, n)
        p = np.stack([pf, px, py, px + pw, py + ph, rng.random(n)], axis=1).astype(np.float64)
        if len(g):  # a third of the regions also get a jittered, higher-scored detection
            take = g[rng.random(len(g)) < 0.33]
            jitter = rng.integers(-8, 9, [len(take), 4])
            boxes = take[:, 2:6] + jitter
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
            hits = np.concatenate([take[:, 1:2], boxes, 0.5 + 0.5 * rng.random([len(take), 1])], 1)
            p = np.concatenate([p, hits])
        preds[vid] = p
    return gt, preds, {f"video_{v:04d}": frames for v in range(videos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=450)
    parser.add_argument("--preds_per_frame", type=float, default=2.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt, preds, num_frames = synthetic_ubnormal(
        args.videos, args.frames, args.preds_per_frame, args.seed
    )
    n_regions = sum(len(g) for g in gt.values())
    n_preds = sum(len(p) for p in preds.values())
    t0 = time.perf_counter()
    result = rbdc_tbdc(gt, preds, num_frames)
    dt = time.perf_counter() - t0
    print(
        f"rbdc_tbdc: {sum(num_frames.values())} frames, {n_regions} GT regions, "
        f"{n_preds} predicted boxes: {dt:.2f} s  {result}"
    )

    rng = np.random.default_rng(args.seed)

    class Rec:  # minimal annotation record
        def __init__(self, vid, n, intervals):
            self.id, self.n_frames, self.intervals = vid, n, intervals

        def frame_labels(self, n):
            lab = np.zeros([n], np.uint8)
            for s, e in self.intervals:
                lab[s:e] = 1
            return lab

    records, scores = [], {}
    for v in range(290):
        t = int(rng.integers(50, 450))
        n = 16 * t
        iv = [(int(n * 0.3), int(n * 0.6))] if v < 140 else []
        records.append(Rec(f"v{v}", n, iv))
        scores[f"v{v}"] = rng.random(t)
    n_frames = sum(r.n_frames for r in records)
    for protocol, windows in (("ucf", 0), ("umil", 32)):
        t0 = time.perf_counter()
        result = frame_auc(records, scores, protocol=protocol, windows=windows)
        dt = time.perf_counter() - t0
        print(f"frame_auc[{protocol}, windows={windows}]: {n_frames} frames: {dt:.2f} s  {result}")


if __name__ == "__main__":
    main()
