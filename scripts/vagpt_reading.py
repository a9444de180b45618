"""Where a finished VA-GPT run's generated answers part from TETG's prior, on one benchmark.

    python scripts/vagpt_reading.py RUN_DIR [--benchmark=validation|in_domain|cross_domain]

RUN_DIR is a finished tiny VA-GPT run: its questions and generated answers are read from
``benchmark_<name>.jsonl`` / ``answers_<name>.jsonl``, its TETG is read back and each
video's prior recomputed with the run's own threshold and smoothing. Printed:

1. per anomaly type, how many of the benchmark's anomalous videos TETG's sentence gives an
   interval for (the rest it calls normal);
2. the questions split by half (normal / anomalous), by what the prior says, by whether an
   exact reader of it is right and whether the model's letter agrees with the reader
   (:func:`vau_jax.data.benchmark.reading_breakdown`);
3. where the reader is right and the model is not, what the model chose and which letter;
4. per half, how often the option text written after the answer's letter names another
   option than the letter does, and which of the two is right
   (:func:`vau_jax.data.benchmark.letter_text_breakdown`; Total Acc reads the letter).

Use ``--benchmark=validation`` when the answer feeds a choice: the test benchmarks are for
reporting only.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument(
        "--benchmark", default="validation", choices=("validation", "in_domain", "cross_domain")
    )
    args = p.parse_args()

    from vau_jax.data.benchmark import letter_text_breakdown, reading_breakdown
    from vau_jax.eval.metrics import parse_choice
    from vau_jax.inference import load_run
    from vau_jax.methods.vagpt.evaluation import BENCHMARKS, benchmark_items

    path = os.path.join(args.run_dir, f"answers_{args.benchmark}.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no generated answers (a run with eval_generate=True)")
    with open(path, encoding="utf-8") as fh:
        answers = {r["id"]: r["answer"] for r in map(json.loads, fh)}
    m = load_run(args.run_dir).method
    m.prepare()
    items = benchmark_items(m, BENCHMARKS[args.benchmark][0])
    if len(items) != len(answers):
        raise SystemExit(
            f"error: {path}: {len(answers)} answers for the run's {len(items)} questions"
        )
    qs = [q for _, q, _, _ in items]
    priors = [iv for _, _, _, iv in items]
    chosen = [parse_choice(answers[f"q{n}"], [o.text for o in q.options]) for n, q in enumerate(qs)]

    found: dict[str, set] = {}
    seen: dict[str, set] = {}
    for i, q, _, iv in items:
        truth = q.options[q.answer_index]
        if truth.interval is not None:
            seen.setdefault(truth.anomaly_type, set()).add(i)
            if iv is not None:
                found.setdefault(truth.anomaly_type, set()).add(i)
    print(f"{args.run_dir}, {args.benchmark}: {len(qs)} questions")
    print("\n| anomaly type | videos with an interval in TETG's sentence |\n|---|---|")
    for t in sorted(seen):
        print(f"| {t} | {len(found.get(t, ()))} of {len(seen[t])} |")

    out = reading_breakdown(qs, priors, chosen)
    print(
        "\n| half | prior says | exact reader | model's letter | questions |\n|---|---|---|---|---|"
    )
    for key, n in sorted(out["cells"].items()):
        print("| " + " | ".join(key) + f" | {n} |")
    lost: Counter = out["lost"]
    kinds = ("no anomaly", "same type", "other type", "unparsed")
    print("\nreader right, model not: " + ", ".join(f"{k} {lost[k]}" for k in kinds))
    print("  letters given there: " + ", ".join(f"{x} {lost[f'letter {x}']}" for x in "ABCD"))

    kinds = ("agree", "letter right", "text right", "neither right", "no letter")
    split = letter_text_breakdown(qs, [answers[f"q{n}"] for n in range(len(qs))])
    print("\n| half | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
    for half in ("normal", "anomalous"):
        print(f"| {half} | " + " | ".join(str(split.get((half, k), 0)) for k in kinds) + " |")


if __name__ == "__main__":
    main()
