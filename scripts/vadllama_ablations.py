"""VAD-LLaMA's two LTC ablations on SynthVAD (paper Tables 3 and 4), mean ± std over seeds.

    python scripts/vadllama_ablations.py [--seeds=0,1,2] [--out=runs/ablations]

Table A, LTC components: baseline (no lists), +N, +A, +N+A, +N+A+H (K=4).
Table B, list length K in {0, 2, 4, 6, 8} with all three lists.
Each cell trains phases 1-2 of ``configs/vadllama.py`` (tiny: its default MIL objective,
``mil_loss="paper"``; past-clips-only LTC lists) from scratch with that seed and reports
frame-level AUC_O / AUC_A on the SynthVAD *test* split. The frozen tiny CLIP (pretrained on
SynthVAD's own ``pretrain`` split) and its cached features are shared by every run; run it
from the folder whose ``data_cache`` holds them. Writes ``OUT/vadllama_ablations.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))

COMPONENTS = {
    "baseline": dict(k=0, use_normal=False, use_abnormal=False, use_history=False),
    "+N": dict(k=4, use_normal=True, use_abnormal=False, use_history=False),
    "+A": dict(k=4, use_normal=False, use_abnormal=True, use_history=False),
    "+N+A": dict(k=4, use_normal=True, use_abnormal=True, use_history=False),
    "+N+A+H": dict(k=4, use_normal=True, use_abnormal=True, use_history=True),
}
LENGTHS = (0, 2, 4, 6, 8)


def run_one(ltc: dict, seed: int, out: str) -> dict[str, float]:
    import vadllama as vadllama_config

    from vau_jax import methods
    from vau_jax.methods import runner

    c = vadllama_config.get_config("tiny")
    c.seed = seed
    c.ltc.update(ltc)
    name = "_".join(f"{k}{int(v)}" for k, v in sorted(ltc.items())) + f"_seed{seed}"
    workdir = os.path.join(out, name)
    if os.path.isfile(os.path.join(workdir, "metrics.json")):
        with open(os.path.join(workdir, "metrics.json")) as f:
            return json.load(f)
    return runner.run(methods.build(c, workdir), "train_and_eval")


def table(title: str, rows: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        f"**{title}** (SynthVAD test, mean ± std over {len(next(iter(rows.values())))} seeds)",
        "",
        "| setting | AUC_O | AUC_A |",
        "|---|---|---|",
    ]
    for name, runs in rows.items():
        cells = []
        for key in ("AUC_O", "AUC_A"):
            v = np.array([r[key] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join("runs", "ablations"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.makedirs(args.out, exist_ok=True)
    comp = {name: [run_one(ltc, s, args.out) for s in seeds] for name, ltc in COMPONENTS.items()}
    full = dict(use_normal=True, use_abnormal=True, use_history=True)
    lengths = {f"K={k}": [run_one(dict(full, k=k), s, args.out) for s in seeds] for k in LENGTHS}
    text = (
        table("LTC components (K=4)", comp)
        + "\n\n"
        + table("List length K (N+A+H)", lengths)
        + "\n"
    )
    with open(os.path.join(args.out, "vadllama_ablations.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "vadllama_ablations.json"), "w") as f:
        json.dump({"components": comp, "lengths": lengths}, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
