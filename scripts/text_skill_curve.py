"""Learning curve of one text skill: the tiny LLaMA trained from scratch on it alone.

    python scripts/text_skill_curve.py --data_dir=DIR --mix=lookup:1 --steps=2000 --every=250
    python scripts/text_skill_curve.py --data_dir=DIR --mix=prior_mc:1 --steps=1000

Asks how many steps the 4-layer LLM needs before it reads lettered options at all, apart
from the rest of the text pretraining mix (``configs/text_pretrain.py``): the corpus is
``--examples`` conversations of the ``--mix`` kinds (``kind:weight,...``; the default mix's
other kinds get weight 0) about the first ``num_train_videos`` pretrain-split reports,
packed as text pretraining packs them, and trained with text pretraining's optimizer and
schedule (AdamW 3e-3, 100 warm-up steps, cosine to ``--steps``, batch 16). Every ``--every``
steps the generated letter is scored on ``--reports`` held-out reports (from
``num_train_videos`` on: never trained on), each ``--eval`` kind on its own.

``--tokenizer`` / ``--vocab_size`` pick another SynthVAD tokenizer (``data/corpus.py``:
``synthvad_times`` needs 712); ``--time_embedding=sinusoid`` starts the time tokens' input
embeddings from their value (``text_pretrain.time_embedding``,
``prior_text.sinusoid_time_rows``).

Printed: one JSON line per evaluation, ``{"step", "loss", "seconds", KIND: [Total, normal
half, anomalous half]}`` (``seconds``: wall time since the first step, the evaluations
included). On the anomalous half the intervals decide (module docstring of
``scripts/text_reading.py``). Nothing is saved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True, help="a data dir (SynthVAD renders, tokenizer)")
    p.add_argument("--mix", default="lookup:1", help="kind:weight,... of the trained rows")
    p.add_argument("--eval", default="", help="kinds scored (default: the --mix kinds)")
    p.add_argument("--examples", type=int, default=24000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--reports", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", default="", help="a corpus.TOKENIZERS name (default: config's)")
    p.add_argument("--vocab_size", type=int, default=0, help="tokenizer size (default: config's)")
    p.add_argument("--time_embedding", default="", help="random | sinusoid (default: config's)")
    args = p.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import text_pretrain

    from vau_jax.methods.pretrain.text_llm import KINDS, TextPretrain
    from vau_jax.train.optimizer import make_optimizer

    c = text_pretrain.get_config()
    c.data_dir = args.data_dir
    c.seed = args.seed
    c.num_train_examples = args.examples
    c.num_steps = args.steps
    if args.tokenizer:
        c.tokenizer = args.tokenizer
    if args.vocab_size:
        c.vocab_size = args.vocab_size
    if args.time_embedding:
        c.time_embedding = args.time_embedding
    mix = {k: 0.0 for k in KINDS}  # the default mix's kinds, off unless --mix names them
    for item in args.mix.split(","):
        kind, weight = item.split(":")
        mix[kind] = float(weight)
    c.mix = mix
    kinds = args.eval.split(",") if args.eval else [k for k, w in mix.items() if w > 0]

    m = TextPretrain(c, "")
    m.prepare()
    rows = m._source()
    data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    params = m.init_params(jax.random.key(args.seed))
    tx = make_optimizer(c.optimizer, params).tx
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, batch):
        (loss, _), grads = jax.value_and_grad(lambda q: m._loss(q, batch, None), has_aux=True)(
            params
        )
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for s in range(1, args.steps + 1):
        idx = rng.integers(0, len(rows), int(c.batch_size))
        params, opt, loss = step(params, opt, {k: jnp.asarray(v[idx]) for k, v in data.items()})
        if s % args.every and s != args.steps:
            continue
        out = {"step": s, "loss": round(float(loss), 4), "seconds": round(time.time() - t0)}
        for kind in kinds:
            r = m.letter_accuracy(params, kind, first=int(c.num_train_videos), count=args.reports)
            out[kind] = [
                round(r[k], 3) for k in ("Total_Acc", "Total_Acc_normal", "Total_Acc_anomalous")
            ]
        print(json.dumps(out), flush=True)


if __name__ == "__main__":  # SynthVAD renders in spawned workers: keep the guard
    main()
