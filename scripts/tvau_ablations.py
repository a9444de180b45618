"""T-VAU's ablations on SynthVAD (its paper's ablation table and one-shot setting), mean ± std
over seeds.

    python scripts/tvau_ablations.py [--seeds=0,1,2] [--out=runs/tvau_ablations] [--set key=value ...]

Rows (every cell retrains what the row trains, with that seed; encoders, features, the frozen
LVLM and the constructed questions are shared through the data dir):

* **full**: AHD, then RAE's curriculum (the main job);
* **w/o AHD**: RAE trained on all-zero heatmaps (its learned base prompts remain, the heatmap
  evidence is gone); no localisation;
* **w/o RAE**: AHD only; the frozen LVLM answers without RAE's prompts;
* **w/o AHD & RAE**: the frozen LVLM alone (nothing trained; evaluated directly);
* **one-shot AHD**: AHD trained on the frames of one anomalous training video
  (``ahd.one_shot``); localisation only.

Columns: micro-AUC, RBDC, TBDC, BLEU-4 (target), BLEU-4 (trajectory), Yes/No accuracy on the
SynthVAD test split written in the UBnormal layout. Writes ``OUT/tvau_ablations.md`` / ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))

ROWS = {
    "full": {},
    "w/o AHD": {"use_ahd": False},
    "w/o RAE": {"use_rae": False},
    "w/o AHD & RAE": {"use_ahd": False, "use_rae": False},
    "one-shot AHD": {"use_rae": False, "one_shot": True},
}
COLUMNS = (
    ("micro_auc", "micro-AUC"),
    ("rbdc", "RBDC"),
    ("tbdc", "TBDC"),
    ("bleu4_target", "BLEU-4 target"),
    ("bleu4_trajectory", "BLEU-4 trajectory"),
    ("yesno_acc", "Yes/No"),
)


def make_config(seed: int, overrides: list[str], fields: dict):
    import tvau as tvau_config
    from common import apply_overrides

    c = tvau_config.get_config("tiny")
    c.seed = seed
    apply_overrides(c, overrides)
    fields = dict(fields)
    if fields.pop("one_shot", False):
        c.ahd.one_shot = True
    c.update(fields)
    return c


def frozen_lvlm(c, workdir: str) -> dict[str, float]:
    """The frozen LVLM alone (no AHD, no RAE): its answers to the test questions."""
    import jax

    from vau_jax import methods
    from vau_jax.methods.tvau.evaluation import language

    m = methods.build(c, workdir)
    m.prepare()
    params = m.load_lvlm(m.init_params(jax.random.key(int(c.seed))))
    os.makedirs(workdir, exist_ok=True)
    return language(m, params, workdir)


def run(c, workdir: str, name: str) -> dict[str, float]:
    path = os.path.join(workdir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    if not c.use_ahd and not c.use_rae:
        out = frozen_lvlm(c, workdir)
        with open(path, "w") as f:
            json.dump(out, f)
        return out
    from vau_jax import methods
    from vau_jax.methods import runner

    if name == "one-shot AHD":  # localisation only: skip the language evaluation
        from vau_jax.methods.runner import run_method
        from vau_jax.methods.tvau.evaluation import localisation

        m = methods.build(c, workdir)
        m.prepare()
        params, _ = run_method(m, c, workdir, "train")
        out = localisation(m, params, workdir)
        with open(path, "w") as f:
            json.dump(out, f)
        return out
    return runner.run(methods.build(c, workdir), "train_and_eval")


def fmt(values: list[float]) -> str:
    v = np.asarray(values, np.float64)
    if not len(v):
        return "n/a"
    return f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/tvau_ablations")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for r in ROWS if r in args.rows.split(",")]
    res: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        for name in rows:
            c = make_config(seed, args.set, ROWS[name])
            slug = name.replace("/", "").replace("&", "and").replace(" ", "_")
            m = run(c, os.path.join(args.out, f"{slug}_seed{seed}"), name)
            for key, _ in COLUMNS:
                if key in m:
                    res.setdefault(name, {}).setdefault(key, []).append(float(m[key]))
    lines = [
        f"SynthVAD test split in the UBnormal layout; mean ± std over {len(seeds)} seed(s); "
        "n/a: the row has no heatmap (localisation) or no language evaluation.",
    ]
    if args.set:
        lines.append("Overrides: " + ", ".join(f"`{s}`" for s in args.set) + ".")
    lines += ["", "| setting | " + " | ".join(h for _, h in COLUMNS) + " |"]
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for name in rows:
        cells = [fmt(res.get(name, {}).get(k, [])) for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "tvau_ablations.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "tvau_ablations.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
