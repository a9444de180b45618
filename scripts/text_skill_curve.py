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
``synthvad_times`` needs 712); ``--time_embed=sin`` (an experiment, only here) starts the
time tokens' input embeddings from their value: half of each row sinusoids of the time
(periods 0.5-64 s), half the random init, at the random rows' mean norm, so that nearby
times start with similar rows.

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
    p.add_argument("--time_embed", default="", help="'sin': time tokens start from their value")
    args = p.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import text_pretrain

    from vau_jax.methods.pretrain.text_llm import TextPretrain
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
    mix = {k: 0.0 for k in ("mc", "qa", "summary")}
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
    if args.time_embed == "sin":
        params = sin_time_rows(params, m.tok)
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


def sin_time_rows(params, tok):
    """``params`` with the time tokens' input rows started from their value (``--time_embed``:
    half of each [D] row cos / sin of the time at D/4 periods from 0.5 s to 64 s, half the
    random init; every row at the random rows' mean norm)."""
    import numpy as np

    from vau_jax.data.corpus import TIME_TOKENS

    emb = np.array(params["model"]["embed_tokens"]["embedding"])
    d = emb.shape[1]
    periods = np.geomspace(0.5, 64.0, d // 4)
    norm = float(np.linalg.norm(emb, axis=1).mean())
    for piece in TIME_TOKENS:
        i = tok.sp.piece_to_id(piece)
        if tok.sp.id_to_piece(i) != piece:
            raise SystemExit(f"error: --time_embed=sin: the tokenizer has no {piece!r} token")
        t = float(piece[1:-1])
        f = np.concatenate([np.cos(2 * np.pi * t / periods), np.sin(2 * np.pi * t / periods)])
        f = f / np.linalg.norm(f) * norm
        emb[i] = np.concatenate([f, emb[i, d // 2 :] * np.sqrt(2.0)]) / np.sqrt(2.0)
    params["model"]["embed_tokens"]["embedding"] = emb
    return params


if __name__ == "__main__":  # SynthVAD renders in spawned workers: keep the guard
    main()
