"""Whether VA-GPT's TETG could see motion anomalies from the frozen features it is given.

    python scripts/vagpt_tetg_inputs.py RUN_DIR [--videos=96] [--windows=0;-1,1;-2,-1,1,2;-8,-4,4,8]

RUN_DIR is a finished tiny VA-GPT run on SynthVAD; its cached features are read back (the
run is prepared with ``--videos`` validation videos, encoded when missing). Two readouts:

1. **TETG on neighbouring frames.** For each ``--windows`` entry (frame offsets, ``;``
   between entries; ``0`` = the paper's input, one frame's class token) a TETG is trained
   from scratch with the run's settings (the MLP, SGD with momentum, batch, steps and seed of
   ``config.tetg``) on each train frame's standardised class token concatenated with its
   differences to the frames at those offsets (clipped at the ends), the motion a single
   frame cannot show. Printed: frame AUC on the test videos, per anomaly type how many
   validation videos the sentence gives an interval for, how many normal validation videos it
   flags, and an exact reader's accuracy on the validation benchmark (smoothing and
   threshold as the run's).
2. **Motion energy of the patch tokens.** Per train video, the norm of each patch token's
   change between consecutive sampled frames (mean over patches, and mean of the 4 largest),
   scored by AUC per anomaly type against the normal frames, for the ``visual`` (CLIP) and
   ``dino`` stores: whether any frozen feature separates running or falling at all.

A diagnostic for choosing TETG's input on validation videos; nothing is saved.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def window(z, offsets: tuple[int, ...]):
    """Each frame's features ``z [T, D]`` followed by their differences to the frames at
    ``offsets`` (indices clipped to ``[0, T)``): float32 ``[T, D * (1 + len(offsets))]``."""
    import numpy as np

    idx = np.arange(len(z))
    parts = [z] + [z[np.clip(idx + o, 0, len(z) - 1)] - z for o in offsets]
    return np.concatenate(parts, -1).astype(np.float32)


def fit(x, y, t_cfg, seed: int):
    """A TETG (``t_cfg``'s MLP, SGD with momentum, batch and steps) trained on frames ``x
    [N, F]`` with labels ``y [N]``; returns ``z [T, F] -> probabilities [T]``."""
    import jax
    import numpy as np
    import optax

    from vau_jax.models.heads.tetg import TETG, TETGConfig, tetg_loss

    model = TETG(TETGConfig(hidden=tuple(t_cfg.hidden)))
    params = model.init(jax.random.key(seed), x[:1])["params"]
    opt = optax.sgd(float(t_cfg.lr), momentum=float(t_cfg.momentum))
    state = opt.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        grads = jax.grad(lambda p: tetg_loss(model.apply({"params": p}, xb), yb))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(seed)
    for _ in range(int(t_cfg.steps)):
        b = rng.integers(0, len(x), int(t_cfg.batch_size))
        params, state = step(params, state, x[b], y[b])
    prob = jax.jit(lambda p, z: jax.nn.sigmoid(model.apply({"params": p}, z)))
    return lambda z: np.asarray(prob(params, z))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--windows", default="0;-1,1;-2,-1,1,2;-8,-4,4,8")
    args = p.parse_args()

    import numpy as np
    from sklearn.metrics import roc_auc_score
    from vagpt_tetg_smoothing import on_validation

    from vau_jax.methods.base import standardise
    from vau_jax.methods.vagpt.tetg import prior_reader_accuracy, tetg_auc, tetg_prompt

    m, items = on_validation(args.run_dir, args.videos)
    c = m.config
    t_cfg = c.tetg
    fps, tau, smooth = float(m.specs["cls"].fps), float(t_cfg.threshold), float(t_cfg.smooth_s)

    def cls(split: str) -> list[np.ndarray]:
        fs = m.feats[split].cls
        return [standardise(fs[i]["cls"]) for i in range(len(fs))]

    train, val, test = cls("train"), cls("validation"), cls("test")
    y_train = np.concatenate(m._frame_labels("train")).astype(np.float32)
    test_labels = m._frame_labels("test")
    anomalous = [(i, q) for i, q in items if q.options[q.answer_index].interval is not None]
    normal_videos = {i for i, q in items if q.options[q.answer_index].interval is None}

    print(f"{args.run_dir}: {len(train)} train, {len(val)} validation videos, {fps:g} fps")
    print(
        "\n| offsets | test frame AUC | validation videos with an interval, per type | "
        "normal flagged | exact reader (validation) |\n|---|---|---|---|---|"
    )
    for spec in args.windows.split(";"):
        offsets = tuple(int(o) for o in spec.split(",") if int(o) != 0)
        x = np.concatenate([window(z, offsets) for z in train])
        prob = fit(x, y_train, t_cfg, int(c.seed))
        p_val = [prob(window(z, offsets)) for z in val]
        p_test = [prob(window(z, offsets)) for z in test]
        auc = tetg_auc(p_test, test_labels, [f"v{i}" for i in range(len(p_test))])
        found: dict[str, set] = {}
        seen: dict[str, set] = {}
        for i, q in anomalous:
            kind = q.options[q.answer_index].anomaly_type
            seen.setdefault(kind, set()).add(i)
            if tetg_prompt(p_val[i], fps, tau, (), smooth)[1] is not None:
                found.setdefault(kind, set()).add(i)
        flagged = sum(
            tetg_prompt(p_val[i], fps, tau, (), smooth)[1] is not None for i in normal_videos
        )
        per_type = ", ".join(f"{k} {len(found.get(k, ()))}/{len(seen[k])}" for k in sorted(seen))
        reader = prior_reader_accuracy(p_val, items, fps, tau, smooth)
        print(
            f"| {spec} | {auc:.3f} | {per_type} | {flagged} of {len(normal_videos)} | "
            f"{reader:.3f} |"
        )

    videos = m.dataset.split("train")
    print(
        "\n| store | anomaly type | frames | AUC, mean change | AUC, top-4 change |\n"
        "|---|---|---|---|---|"
    )
    for store in ("visual", "dino"):
        fs = getattr(m.feats["train"], store)
        rows = []
        for i, v in enumerate(videos):
            rec = fs[i]
            tok = np.asarray(rec["patches"], np.float32)  # [T, P, C]
            lab = v.frame_labels(rec["indices"], rec["timestamps"])
            d = np.linalg.norm(tok[1:] - tok[:-1], axis=-1)  # [T-1, P]
            mean, top = d.mean(1), np.sort(d, 1)[:, -4:].mean(1)
            kind = v.info.get("anomaly_type", "?")
            rows += [(kind, max(lab[t], lab[t + 1]), mean[t], top[t]) for t in range(len(d))]
        neg = [r for r in rows if r[1] == 0]
        for kind in sorted({r[0] for r in rows if r[1]}):
            pos = [r for r in rows if r[1] and r[0] == kind]
            y = [0] * len(neg) + [1] * len(pos)
            aucs = [roc_auc_score(y, [r[k] for r in neg + pos]) for k in (2, 3)]
            print(f"| {store} | {kind} | {len(pos)} | {aucs[0]:.3f} | {aucs[1]:.3f} |")


if __name__ == "__main__":
    main()
