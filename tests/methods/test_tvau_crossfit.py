"""Cross-fitted AHD heatmaps for RAE's training videos (methods/tvau/crossfit.py)."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vau_jax.methods.tvau import crossfit
from vau_jax.methods.tvau.method import TVAU
from vau_jax.models.heads.ahd import AHD, AHDConfig


def test_folds_are_stratified_even_and_seeded():
    flags = [True] * 10 + [False] * 7
    folds = crossfit.fold_assignment(flags, 4, seed=3)
    assert folds.shape == (17,) and set(folds.tolist()) == {0, 1, 2, 3}
    for kind in (True, False):
        sizes = np.bincount(folds[np.asarray(flags) == kind], minlength=4)
        assert sizes.max() - sizes.min() <= 1, (kind, sizes)
    total = np.bincount(folds, minlength=4)
    assert total.max() - total.min() <= 1, total
    np.testing.assert_array_equal(folds, crossfit.fold_assignment(flags, 4, seed=3))
    assert not np.array_equal(folds, crossfit.fold_assignment(flags, 4, seed=4))


def test_fold_errors():
    with pytest.raises(ValueError, match="at least 2 folds"):
        crossfit.fold_assignment([True, False], 1, seed=0)
    with pytest.raises(ValueError, match="cannot fill 4 folds"):
        crossfit.fold_assignment([True, False, True], 4, seed=0)


def _fake_method(grid: int = 2, width: int = 8):
    """Just what train_fold_ahds reads of a T-VAU method: two taps of ``grid²`` tokens."""
    cfg = ml_collections.ConfigDict(
        {
            "ahd": {"batch_size": 4, "pos_weight": 4.0, "one_shot": False},
            "ahd_stage": {
                "steps": 12,
                "optimizer": {
                    "name": "adamw",
                    "lr": 1e-2,
                    "warmup_steps": 2,
                    "total_steps": 12,
                    "grad_clip_norm": 1.0,
                },
            },
        }
    )
    m = types.SimpleNamespace(config=cfg, taps=(1, 2), grid=grid)
    m.prompts = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    m.ahd = AHD(AHDConfig(num_taps=2, text_width=6, mlp_hidden=8, init_temperature=0.07))
    m.heat = lambda p, taps: TVAU.heat(m, p, taps)
    m._dummy = lambda: ([jnp.zeros((1, 2, grid, grid, width), jnp.float32)] * 2,)
    rng = np.random.default_rng(1)

    def rows(v: int, poison: bool = False) -> list[dict[str, np.ndarray]]:
        out = []
        for _ in range(3):
            r = {
                f"tap_{k}": rng.normal(size=(grid * grid, width)).astype(np.float32) for k in (0, 1)
            }
            r["target"] = np.full((grid, grid), 1.0 if poison else float(v % 2), np.float32)
            out.append(r)
        return out

    return m, rows


def test_a_fold_ahd_never_learns_from_its_own_videos(monkeypatch):
    """Poisoning one video's training rows changes the fold AHDs that train on it, never
    the one that scores it."""
    m, make_rows = _fake_method()
    folds = crossfit.fold_assignment([v % 2 == 1 for v in range(8)], 2, seed=0)
    clean = [(v, make_rows(v)) for v in range(8)]
    poisoned = [(v, rows if v != 5 else [{**r, "target": 1.0 - r["target"]} for r in rows])
                for v, rows in clean]  # fmt: skip

    def trained(per_video):
        monkeypatch.setattr(crossfit.D, "ahd_rows_by_video", lambda method, split: per_video)
        return crossfit.train_fold_ahds(m, folds, seed=0)

    a, b = trained(clean), trained(poisoned)
    own, other = int(folds[5]), 1 - int(folds[5])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x)[own], np.asarray(y)[own])
    changed = [
        not np.array_equal(np.asarray(x)[other], np.asarray(y)[other])
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]
    assert any(changed)
    # the same inputs and seed give the same AHDs (a resumed run re-makes them)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(trained(clean))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fold_ahds_learn_their_rows(monkeypatch):
    """Each fold AHD's loss on its own training rows falls (the loop trains)."""
    m, make_rows = _fake_method()
    folds = crossfit.fold_assignment([v % 2 == 1 for v in range(8)], 2, seed=0)
    per_video = [(v, make_rows(v)) for v in range(8)]
    monkeypatch.setattr(crossfit.D, "ahd_rows_by_video", lambda method, split: per_video)
    m.config.ahd_stage.steps = 60
    m.config.ahd_stage.optimizer.total_steps = 60
    trained = crossfit.train_fold_ahds(m, folds, seed=0)
    init = crossfit.train_fold_ahds(
        types.SimpleNamespace(**{**vars(m), "config": _zero_steps(m.config)}), folds, seed=0
    )
    from vau_jax.models.heads.ahd import ahd_loss

    for k in (0, 1):
        rows = [r for v, rs in per_video if folds[v] != k for r in rs]
        taps = [jnp.asarray(np.stack([r[f"tap_{j}"] for r in rows])) for j in (0, 1)]
        y = jnp.asarray(np.stack([r["target"] for r in rows]))

        def loss(params, k=k, taps=taps, y=y):
            p = jax.tree.map(lambda x: x[k], params)
            return float(ahd_loss(m.heat(p, taps)["logits"], y, pos_weight=4.0))

        assert loss(trained) < 0.5 * loss(init), k


def _zero_steps(cfg):
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.ahd_stage.steps = 0
    return c


def test_rae_rows_carry_out_of_fold_heatmaps(tvau_run):
    """With ``rae.heatmap_folds`` RAE's training batches carry each video's cross-fitted
    heatmaps, and the LVLM's input embeddings are made from them instead of the AHD's."""
    import vau_jax
    from vau_jax.methods.tvau import data as D

    run = vau_jax.load_run(tvau_run)
    m = run.method
    m.config.rae.heatmap_folds = 2
    m.config.rae.heat_frames = "sampled"  # the sampled frames (test_tvau_heat: segment means)
    m.config.ahd_stage.steps = 8
    m.config.ahd_stage.optimizer.total_steps = 8
    m.config.ahd_stage.optimizer.warmup_steps = 2
    m.prepare()  # the training side: dataset, records, tapped features
    heat = m.out_of_fold_heat()
    videos = m.dataset.split("train")
    assert sorted(heat) == list(range(len(videos)))
    assert heat[0].shape == (m.frames, m.grid, m.grid)
    assert m.out_of_fold_heat() is heat  # made once
    row = {"video": np.int64(0)}
    with_heat = D.AttachTaps(m, "train", heat).map(row)
    plain = D.AttachTaps(m, "train").map(row)
    np.testing.assert_array_equal(with_heat["heat"], heat[0])
    assert "heat" not in plain
    own = np.asarray(
        m.heat(run.params["ahd"], [jnp.asarray(plain[f"tap_{k}"]) for k in range(len(m.taps))])[
            "heatmap"
        ]
    )
    assert not np.allclose(own, heat[0])  # a different AHD: the one that never saw video 0
    # prefix_embeds reads batch["heat"] when given: the AHD's own heatmaps give the same
    # embeddings as no "heat" at all, the cross-fitted ones different ones
    from vau_jax.methods.tvau import questions as Q

    rows = Q.rae_rows(m, "train", "anomaly")[:2]
    batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    batch = D.attach(m, "train", batch)
    taps = [jnp.asarray(batch[f"tap_{k}"]) for k in range(len(m.taps))]
    own_heat = m.heat(run.params["ahd"], taps)["heatmap"]
    base = np.asarray(m.prefix_embeds(run.params, batch))
    same = np.asarray(m.prefix_embeds(run.params, {**batch, "heat": own_heat}))
    np.testing.assert_allclose(same, base, rtol=0, atol=1e-6)
    oof = np.stack([heat[int(v)] for v in batch["video"]])
    other = np.asarray(m.prefix_embeds(run.params, {**batch, "heat": oof}))
    assert not np.allclose(other, base, atol=1e-4)


def test_hide_visual_tokens_masks_only_the_lvlm_tokens_of_chosen_rows():
    from vau_jax.methods.tvau.method import hide_visual_tokens

    video = np.zeros((3, 10), bool)
    video[:, 2:8] = True  # 4 visual tokens, then 2 RAE prompts
    video[2] = False
    video[2, 1:7] = True  # another row's span starts earlier
    mask = np.ones((3, 10), np.int32)
    mask[1, 9] = 0  # padding stays padding
    out = np.asarray(hide_visual_tokens(mask, video, 4, np.array([True, False, True])))
    want = mask.copy()
    want[0, 2:6] = 0
    want[2, 1:5] = 0
    np.testing.assert_array_equal(out, want)
    assert out.dtype == mask.dtype
    # rae.order: 2 prompts open the span, the visual tokens follow them
    out = np.asarray(hide_visual_tokens(mask, video, 4, np.array([True, False, True]), 2))
    want = mask.copy()
    want[0, 4:8] = 0
    want[2, 3:7] = 0
    np.testing.assert_array_equal(out, want)


def _rae_heat_probe(monkeypatch, heat):
    """The default T-VAU config, a method whose RAE loss records the heatmaps it reads (its
    LLM stubbed out), the record, and a batch of rows with ``heat [B, S, g, g]``."""
    import sys

    sys.path.insert(0, "configs")
    import tvau as tvau_config

    cfg = tvau_config.get_config()
    m = TVAU(cfg, "")
    seen = []
    monkeypatch.setattr(m, "prefix_embeds", lambda p, b: seen.append(b["heat"]) or b["embeds"])
    monkeypatch.setattr(m, "_lm_logits", lambda p, e, mask: jnp.zeros((*e.shape[:2], 7)))
    b = heat.shape[0]
    batch = {
        "heat": heat,
        "embeds": jnp.zeros((b, 4, 2)),
        "attention_mask": jnp.ones((b, 4), jnp.int32),
        "input_ids": jnp.zeros((b, 4), jnp.int32),
        "loss_mask": jnp.ones((b, 4), jnp.int32),
    }
    return cfg, m, seen, batch


def test_heat_scale_min_scales_each_rows_heatmaps_inside_its_range(monkeypatch):
    """``rae.heat_scale_min``: the loss reads each training row's heatmaps times one factor
    from ``U(heat_scale_min, 1)``, drawn per row and step from the step's rng; 1.0 leaves
    the batch as it is."""
    heat = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, (5, 3, 2, 2)), jnp.float32)
    cfg, m, seen, batch = _rae_heat_probe(monkeypatch, heat)
    assert cfg.rae.heat_scale_min == 0.75  # the tiny preset's default since 2026-12-06
    cfg.rae.heat_scale_min = 1.0
    m._rae_loss({}, batch, jax.random.key(0))
    np.testing.assert_array_equal(seen[-1], heat)  # 1.0: untouched
    cfg.rae.heat_scale_min = 0.3
    scales = []
    for step in range(3):
        m._rae_loss({}, batch, jax.random.key(step))
        ratio = np.asarray(seen[-1] / heat)  # [5, 3, 2, 2]
        per_row = ratio.reshape(5, -1)  # one factor per row: its columns are equal
        np.testing.assert_allclose(
            per_row, np.broadcast_to(per_row[:, :1], per_row.shape), rtol=1e-6
        )
        scales.append(per_row[:, 0])
    s = np.stack(scales)
    assert s.min() >= 0.3 - 1e-6 and s.max() <= 1.0 + 1e-6
    assert len(np.unique(np.round(s, 5))) == s.size  # differ across rows and steps


def test_faint_heat_lights_normal_rows_with_an_anomalous_rows_heat_scaled_down(monkeypatch):
    """``rae.faint_heat_max``: a normal row (peak under NORMAL_PEAK) whose previous row looks
    anomalous gets that row's heatmaps times U(0, high) where they exceed its own; anomalous
    rows, and normal rows after normal ones, stay as they are; off by default."""
    rng = np.random.default_rng(1)
    anomalous = np.zeros((3, 2, 2), np.float32)
    anomalous[1, 0, 1] = 0.9  # one lit patch in one frame
    normal = rng.uniform(0.0, 0.05, (3, 2, 2)).astype(np.float32)
    other = rng.uniform(0.0, 0.05, (3, 2, 2)).astype(np.float32)
    heat = jnp.asarray(np.stack([anomalous, normal, other]))
    lit = []
    for step in range(4):
        out = np.asarray(crossfit.faint_heat(heat, 0.3, jax.random.key(step)))
        np.testing.assert_array_equal(out[0], anomalous)  # anomalous: untouched
        np.testing.assert_array_equal(out[2], other)  # its previous row is normal: untouched
        assert np.all(out[1] >= normal)  # the normal row only gains heat ...
        changed = out[1] != normal
        assert set(zip(*np.nonzero(changed))) <= {(1, 0, 1)}  # ... where the donor is lit
        lit.append(float(out[1, 1, 0, 1]))
        assert lit[-1] <= 0.3 * 0.9 + 1e-7 and out[1].max() < crossfit.NORMAL_PEAK
    assert len(set(lit)) == 4 and max(lit) > 0.1  # a new scale per draw, not a no-op

    cfg, m, seen, batch = _rae_heat_probe(monkeypatch, heat)
    assert cfg.rae.faint_heat_max == 0.0
    cfg.rae.heat_scale_min = 1.0  # the faint heat alone (the preset also scales: 0.75)
    m._rae_loss({}, batch, jax.random.key(0))
    np.testing.assert_array_equal(seen[-1], heat)  # off: untouched
    cfg.rae.faint_heat_max = 0.3
    m._rae_loss({}, batch, jax.random.key(0))
    assert float(seen[-1][1, 1, 0, 1]) > float(heat[1, 1, 0, 1])
