"""How well a text-pretrained tiny LLM answers multiple choice on text, split by half.

    python scripts/text_reading.py RUN_DIR [RUN_DIR ...] [--first=500] [--reports=256]

RUN_DIR is a finished text pretraining run (``configs/text_pretrain.py``; VA-GPT's cached
ones are ``<data_dir>/text_pretrain_<hash>.run``) or a finished tiny VA-GPT run, whose LLM
(after its stages) is asked the same text questions, formatted as its text pretraining
(``base_llm.text_pretrain``) formatted them. Every run is asked the same questions
about ``--reports`` pretrain-split reports from the ``--first`` on (after those any of them
trained on or its own evaluation asked about, so none was seen): report questions (``mc``)
and prior-only ones (``prior_mc``). Printed:  each kind's generated-letter accuracy on the normal and the anomalous half. On the
anomalous half the intervals decide: every such question has two options of the right type
at different times.
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--first", type=int, default=500)
    p.add_argument("--reports", type=int, default=256)
    args = p.parse_args()

    import ml_collections

    from vau_jax.inference import load_config, load_run
    from vau_jax.methods.pretrain.text_llm import TextPretrain
    from vau_jax.train.trainer import Trainer

    print(
        "| run | kind | questions | Total | normal half | anomalous half |\n"
        "|---|---|---|---|---|---|"
    )
    for run in args.run_dirs:
        c = load_config(run)
        params = None
        if c.get("method") == "vagpt" and c.get("llm", "tiny") == "tiny":
            params = load_run(run).params["llm"]  # the VA-GPT run's LLM after its stages
            c = ml_collections.ConfigDict(
                dict(c.base_llm.text_pretrain.to_dict(), data_dir=c.data_dir)
            )
        elif c.get("method") == "text_pretrain":
            c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
        else:
            raise SystemExit(
                f"error: {run}: a {c.get('method')!r} run, not text_pretrain or tiny vagpt"
            )
        m = TextPretrain(c, run)
        m.prepare(inference=True)
        if params is None:  # a text pretraining run: its own checkpoint
            trainer = Trainer(m, c, run)
            try:
                params = trainer.restore_params()
            finally:
                trainer.close()
        first = int(c.num_train_videos) + int(c.num_eval_videos)
        if args.first < first:
            raise SystemExit(f"error: {run}: --first={args.first}, but it saw reports < {first}")
        for kind in ("mc", "prior_mc"):
            r = m.letter_accuracy(params, kind, first=args.first, count=args.reports)
            print(
                f"| {run} | {kind} | {r['questions']:.0f} | {r['Total_Acc']:.3f} | "
                f"{r['Total_Acc_normal']:.3f} | {r['Total_Acc_anomalous']:.3f} |"
            )


if __name__ == "__main__":
    main()
