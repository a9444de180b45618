"""VA-GPT's ablations on SynthVAD (paper Tables 2 and 3), mean ± std over seeds.

    python scripts/vagpt_ablations.py [--seeds=0,1,2] [--out=runs/vagpt_ablations]
        [--llm=tiny|smollm2] [--tables=modules,ratio] [--seed_pretraining=true|false]
        [--set key=value ...]

Every cell is the generation-based Total / Temporal Acc (the model generates its answer, the
letter is parsed; chance 0.25 for both), in-domain (SynthVAD test) and cross-domain (the
domain-shifted test split), as ``in / xd``.
Table A, modules: the "baseline" rows (the base video LLM after generic caption pretraining
only, before VA-GPT's stages, with all tokens and with SETS at inference), then {none, SETS,
TETG, SETS+TETG} x {after stage 1, after stage 2}. Stage 1 always trains on all patch
tokens; with SETS, stage 2 and its evaluation use the selected tokens.
Table B, the SETS keep ratio K in {0.1, 0.3, 0.5, 0.7, 0.9} (TETG on).
Stage 1 trains on all tokens whatever SETS and K are, so it is trained once per (seed, TETG on
or off): the SETS run and every K run start from a copy of that run folder cut at its
stage-1 boundary checkpoint, and the trainer resumes there (exactly the computation a
from-scratch run would do, since stage 1 is identical). Generate-and-parse is evaluated only
for every run (it is the headline metric).
Also reported per seed: the TETG classifier's frame AUC on the test frames.
Encoders, features and the tokenizer are shared (cached in the data dir). With
``--seed_pretraining`` (the default) each seed also pretrains its own text LLM and base video
LLM (``base_llm.seed`` and ``base_llm.text_pretrain.seed`` = the seed), as the main job's
3-seed tables do, so a seed's SETS+TETG cell is that seed's default main job; with
``--seed_pretraining=false`` every seed starts from seed 0's (cached) LLMs. Writes
``OUT/vagpt_ablations.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "configs"))

MODULES = {
    "none": dict(use_sets=False, use_tetg=False),
    "SETS": dict(use_sets=True, use_tetg=False),
    "TETG": dict(use_sets=False, use_tetg=True),
    "SETS+TETG": dict(use_sets=True, use_tetg=True),
}
RATIOS = (0.1, 0.3, 0.5, 0.7, 0.9)


def make_config(llm: str, seed: int, overrides: list[str], seed_pretraining: bool = True, **fields):
    import vagpt as vagpt_config
    from common import apply_overrides

    c = vagpt_config.get_config("tiny")
    c.seed = seed
    if seed_pretraining:
        c.base_llm.seed = seed
        c.base_llm.text_pretrain.seed = seed
    if llm == "smollm2":
        c.llm, c.chat_format, c.train_llm = "smollm2", "chatml", False
    apply_overrides(c, overrides)
    c.update(fields)
    return c


def run(c, workdir: str) -> dict[str, float]:
    from vau_jax import methods
    from vau_jax.methods import runner

    path = os.path.join(workdir, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return runner.run(methods.build(c, workdir), "train_and_eval")


def branch_at_stage1(src: str, dst: str, stage1_steps: int) -> None:
    """Copies ``src``'s run folder to ``dst`` without checkpoints after stage 1, so the trainer
    resumes ``dst`` at the stage-1 boundary."""
    if os.path.isdir(dst):
        return
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src}: run it first (its stage 1 is shared)")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("metrics.json", "report.html"))
    ckpt = os.path.join(dst, "checkpoints")
    for name in os.listdir(ckpt):
        if name.isdigit() and int(name) > stage1_steps:
            shutil.rmtree(os.path.join(ckpt, name))


def fmt(values: list[float]) -> str:
    v = np.asarray(values, np.float64)
    return f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def baseline(c, out: str) -> dict[str, float]:
    """The base video LLM (caption pretraining only) on both benchmarks, with all tokens and
    with SETS (K = ``sets_keep_ratio``) at inference; cached as JSON in ``out``."""
    path = os.path.join(out, f"baseline_seed{c.seed}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    import jax

    from vau_jax import methods
    from vau_jax.methods.vagpt.evaluation import evaluate_all

    m = methods.build(c, os.path.join(out, f"baseline_seed{c.seed}"))
    m.prepare()
    params = m.load_pretrained(jax.jit(m.init_params)(jax.random.key(c.seed)))
    res = {}
    for tag, keep in (("all", 1.0), ("sets", float(c.sets_keep_ratio))):
        res.update({f"{tag}_{k}": v for k, v in evaluate_all(m, params, keep).items()})
    with open(path, "w") as f:
        json.dump(res, f)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/vagpt_ablations")
    ap.add_argument("--llm", default="tiny", choices=("tiny", "smollm2"))
    ap.add_argument("--tables", default="modules,ratio")
    ap.add_argument(
        "--seed_pretraining",
        default="true",
        choices=("true", "false"),
        help="each seed pretrains its own text and base video LLM (module docstring)",
    )
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    args = ap.parse_args()
    per_seed = args.seed_pretraining == "true"
    seeds = [int(s) for s in args.seeds.split(",")]
    tables = args.tables.split(",")
    out = os.path.join(args.out, args.llm)
    os.makedirs(out, exist_ok=True)
    res: dict[str, dict[str, list[float]]] = {}

    def add(name: str, m: dict[str, float], prefix: str = "", suffix: str = "") -> None:
        row = res.setdefault(name, {})
        for key in ("total_acc", "temporal_acc", "xd_total_acc", "xd_temporal_acc", "unparsed",
                    "xd_unparsed"):  # fmt: skip
            k = f"{prefix}{key}{suffix}"
            if k in m:
                row.setdefault(key, []).append(float(m[k]))

    for seed in seeds:
        if "modules" in tables and args.llm == "tiny":
            b = baseline(make_config(args.llm, seed, args.set, per_seed), out)
            add("baseline (caption pretraining only), all tokens", b, prefix="all_")
            add("baseline (caption pretraining only), SETS at inference", b, prefix="sets_")
        for name, fields in MODULES.items():
            if "modules" not in tables and name != "SETS+TETG":
                continue
            c = make_config(args.llm, seed, args.set, per_seed, **fields)
            workdir = os.path.join(out, f"{name}_seed{seed}")
            if fields["use_sets"]:  # stage 1 is the same as the run without SETS
                twin = "TETG" if fields["use_tetg"] else "none"
                branch_at_stage1(
                    os.path.join(out, f"{twin}_seed{seed}"), workdir, int(c.stage1.steps)
                )
            m = run(c, workdir)
            add(f"{name} / stage 1", m, suffix="_stage1")
            add(f"{name} / stage 2", m)
            if name == "SETS+TETG":
                res.setdefault("tetg", {}).setdefault("auc", []).append(m["tetg_frame_auc"])
                add("SETS+TETG log-likelihood (diagnostic)", m, suffix="_loglik")
        if "ratio" in tables:
            for k in RATIOS:
                if k == 0.5:  # the SETS+TETG run of table A
                    m = run(
                        make_config(args.llm, seed, args.set, per_seed),
                        os.path.join(out, f"SETS+TETG_seed{seed}"),
                    )
                else:
                    c = make_config(
                        args.llm,
                        seed,
                        args.set,
                        per_seed,
                        use_sets=True,
                        use_tetg=True,
                        sets_keep_ratio=k,
                    )
                    dst = os.path.join(out, f"K{k}_seed{seed}")
                    branch_at_stage1(
                        os.path.join(out, f"TETG_seed{seed}"), dst, int(c.stage1.steps)
                    )
                    m = run(c, dst)
                add(f"K={k}", m)
    n = len(seeds)
    lines = [
        f"LLM: {args.llm}; SynthVAD test (in) and its domain-shifted version (xd); generated "
        f"answers, letter parsed; mean ± std over {n} seed(s); chance 0.25 for both metrics."
    ]
    lines.append(
        "Each seed pretrained its own text and base video LLM."
        if per_seed
        else "Every seed started from seed 0's text and base video LLM."
    )
    if args.set:
        lines.append("Overrides: " + ", ".join(f"`{s}`" for s in args.set) + ".")
    lines += [
        "",
        "| setting | Total Acc (in / xd) | Temporal Acc (in / xd) | unparsed (in / xd) |",
        "|---|---|---|---|",
    ]
    nan = [float("nan")]

    def pair(v: dict[str, list[float]], key: str) -> str:
        return f"{fmt(v.get(key, nan))} / {fmt(v.get('xd_' + key, nan))}"

    for name, v in res.items():
        if name == "tetg":
            continue
        cells = [pair(v, "total_acc"), pair(v, "temporal_acc"), pair(v, "unparsed")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "tetg" in res:
        lines += ["", f"TETG frame AUC (test frames): {fmt(res['tetg']['auc'])}"]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(out, "vagpt_ablations.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "vagpt_ablations.json"), "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
