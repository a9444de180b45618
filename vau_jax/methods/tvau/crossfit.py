"""Out-of-fold AHD heatmaps for RAE's training videos (ours, not the paper's).

RAE is trained on AHD's heatmaps, and AHD was trained on the same training videos: on them
its heatmaps separate anomalous from normal videos perfectly (SynthVAD, tiny preset, seed 0:
video-level AUC of the smoothed heatmap maximum 1.000 on train, 0.969 on validation, 0.939
on test), so RAE learns to trust evidence that is cleaner than any test video's, and the
LVLM's Yes/No answers were right on 97.5% of the training videos against 81% of the test
videos. Stacked models have the same problem, and the usual answer is cross-fitting: with
``config.rae.heatmap_folds = K >= 2`` the training videos are dealt into ``K`` folds
(stratified: anomalous and normal videos separately, in a seeded order), one AHD per fold is
trained on the other folds' videos with the AHD stage's own rows, optimizer and step count
(the ``K`` AHDs in one ``vmap``-ed loop), and RAE trains on each video's heatmaps from the
AHD that never saw it. Evaluation and prediction still read the AHD trained on every
training video (the ``ahd`` stage's); nothing here touches a validation or test video.

``heatmap_folds = 0`` (or 1): RAE reads the final AHD's heatmaps of its training videos.

:func:`faint_heat` (``config.rae.faint_heat_max``, ours) answers the same gap from the other
side: on normal training rows it adds faint anomaly-shaped heat under their "no" answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import linen as nn

from vau_jax.methods.tvau import data as D
from vau_jax.methods.tvau import frozen
from vau_jax.models.heads.ahd import ahd_loss
from vau_jax.train.optimizer import make_optimizer


def fold_assignment(anomalous: Sequence[bool], folds: int, seed: int) -> np.ndarray:
    """int ``[V]`` fold of each video, ``0..folds-1``: the anomalous and the normal videos
    are each shuffled (seeded) and dealt in turn, so every fold holds both kinds (as far as
    the counts allow) and fold sizes differ by at most one per kind."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    flags = np.asarray(anomalous, bool)
    if len(flags) < folds:
        raise ValueError(f"{len(flags)} training videos cannot fill {folds} folds")
    rng = np.random.default_rng([int(seed), folds])
    out = np.empty(len(flags), np.int64)
    offset = 0
    for kind in (True, False):
        idx = rng.permutation(np.flatnonzero(flags == kind))
        out[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)  # the next kind continues the deal: fold sizes stay even
    return out


def stack_rows(per_video: list[tuple[int, list[dict[str, np.ndarray]]]], taps: int):
    """``(taps [R, N, D_k] per tap, targets [R, g, g], video [R])`` of AHD's rows."""
    rows = [(i, r) for i, rs in per_video for r in rs]
    if not rows:
        raise ValueError("no AHD training row to cross-fit on")
    tap = [np.stack([r[f"tap_{k}"] for _, r in rows]) for k in range(taps)]
    return tap, np.stack([r["target"] for _, r in rows]), np.array([i for i, _ in rows])


def train_fold_ahds(method: Any, folds: np.ndarray, seed: int) -> Any:
    """AHD parameters stacked over folds (leading axis ``K``): AHD ``k`` trained on the rows
    of the training videos outside fold ``k``, with ``config.ahd_stage``'s optimizer, step
    count and ``config.ahd.batch_size``; batches drawn per fold by a seeded permutation of
    its rows (a new one every epoch)."""
    k_folds = int(folds.max()) + 1
    rows = stack_rows(D.ahd_rows_by_video(method, "train"), len(method.taps))
    return train_ahds(method, rows, [folds[rows[2]] != k for k in range(k_folds)], seed)


def train_ahds(
    method: Any,
    rows: tuple[list[np.ndarray], np.ndarray, np.ndarray],
    members: Sequence[np.ndarray],
    seed: int,
) -> Any:
    """``K = len(members)`` AHDs trained side by side (one ``vmap``-ed loop), AHD ``k`` on the
    rows where ``members[k]`` (bool ``[R]``) holds, with ``config.ahd_stage``'s optimizer and
    step count and ``config.ahd.batch_size``; each from its own initialisation (key ``k`` of
    ``seed``) with batches drawn by its own seeded permutation of its rows (a new one every
    epoch). ``rows``: ``(taps [R, N, D_k] per tap, targets [R, g, g], video [R])``. Returns
    the parameters stacked over ``K`` (leading axis)."""
    c = method.config
    tap, target, _ = rows
    k_folds = len(members)
    pools = [np.flatnonzero(m) for m in members]
    if any(len(p) == 0 for p in pools):
        raise ValueError("an AHD with no training row")
    batch, steps = int(c.ahd.batch_size), int(c.ahd_stage.steps)
    prompts = jnp.asarray(method.prompts)
    dummy = method._dummy()[0]

    def init(key: jax.Array) -> Any:
        return nn.unbox(method.ahd.init(key, dummy, prompts)["params"])

    keys = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), 7919), k_folds)
    params = jax.jit(jax.vmap(init))(keys)
    opt = make_optimizer(dict(c.ahd_stage.optimizer), init(keys[0]))
    state = jax.jit(jax.vmap(opt.tx.init))(params)
    pos_weight = float(c.ahd.pos_weight)

    def one(p: Any, s: Any, taps: list[jax.Array], y: jax.Array):
        def loss(q: Any) -> jax.Array:
            return ahd_loss(method.heat(q, taps)["logits"], y, pos_weight=pos_weight)

        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    step = jax.jit(jax.vmap(one), donate_argnums=(0, 1))
    rngs = [np.random.default_rng([int(seed), 104729, k]) for k in range(k_folds)]
    orders = [rng.permutation(pool) for rng, pool in zip(rngs, pools)]
    cursor = [0] * k_folds
    losses = None
    for i in range(steps):
        pick = []
        for k in range(k_folds):
            if cursor[k] + batch > len(orders[k]):
                orders[k], cursor[k] = rngs[k].permutation(pools[k]), 0
            pick.append(orders[k][cursor[k] : cursor[k] + batch])
            cursor[k] += batch
        sel = np.stack(pick)  # [K, B]
        params, state, losses = step(params, state, [t[sel] for t in tap], target[sel])
        if (i + 1) % max(1, steps // 5) == 0 or i + 1 == steps:
            logging.info(
                "AHD folds: step %d/%d loss %s", i + 1, steps, np.round(np.asarray(losses), 4)
            )
    return params


def out_of_fold_heatmaps(method: Any, seed: int) -> dict[int, np.ndarray]:
    """Per training video (its index in the train split) float32 ``[S, g, g]``: from the fold
    AHD that did not see it, the heatmaps RAE reads (``rae.heat_frames``,
    :mod:`vau_jax.methods.tvau.heat`): those of its
    :func:`~vau_jax.methods.tvau.data.sampled` frames, or its segment means."""
    c = method.config
    if bool(c.ahd.get("one_shot", False)):
        raise ValueError("rae.heatmap_folds needs AHD trained on every training video, "
                         "not ahd.one_shot")  # fmt: skip
    videos = method.dataset.split("train")
    labels = np.array([method.records[v.id].is_anomalous for v in videos])
    folds = fold_assignment(labels, int(c.rae.heatmap_folds), seed)
    params = train_fold_ahds(method, folds, seed)
    out: dict[int, np.ndarray] = {}
    for k in range(int(folds.max()) + 1):  # each fold's videos through the AHD that never saw them
        fold_params = jax.tree.map(lambda x, k=k: x[k], params)
        members = [int(i) for i in np.flatnonzero(folds == k)]
        out.update(frozen.rae_heat(method, fold_params, members, "train"))
    if 0 < labels.sum() < len(labels):
        from vau_jax.eval.metrics.auc import roc_auc

        peak = np.array([out[i].max() for i in range(len(videos))])
        logging.info(
            "out-of-fold heatmaps of %d training videos: video-level AUC of their maximum %.4f",
            len(videos),
            roc_auc(labels.astype(np.int64), peak),
        )
    return out


#: A training row whose heatmaps peak under this is a normal video's (the AHD separates its
#: own training videos: their anomalous ones peak near 1, their normal ones near 0).
NORMAL_PEAK = 0.5


def faint_heat(heat: jax.Array, high: float, rng: jax.Array) -> jax.Array:
    """RAE's training heatmaps ``[B, S, g, g]`` with, on every normal row (peak under
    :data:`NORMAL_PEAK`) whose previous row in the batch looks anomalous (its peak at least
    that), that row's heatmaps scaled by ``U(0, high)`` per row, kept where they exceed the
    row's own (ours, ``rae.faint_heat_max``): the AHD lights its own training videos'
    anomalies near 1 and their normal frames near 0, while on unseen normal videos it leaves
    faint anomaly-shaped heat, which RAE then never saw under a "no" answer."""
    peak = jnp.max(heat, axis=(1, 2, 3))  # [B]
    donor = jnp.roll(heat, 1, axis=0)
    use = (peak < NORMAL_PEAK) & (jnp.roll(peak, 1) >= NORMAL_PEAK)  # [B]
    scale = high * jax.random.uniform(rng, peak.shape)
    return jnp.where(
        use[:, None, None, None], jnp.maximum(heat, scale[:, None, None, None] * donor), heat
    )
