"""RAE's training rows carry the frozen LVLM's visual tokens and the AHD heatmaps, computed
once per stage (methods/tvau/frozen.py): the same loss as recomputing them in the step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _stack(rows):
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_precomputed_rows_give_the_in_step_loss(tvau_run):
    import vau_jax
    from vau_jax.methods.tvau import data as D
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.frozen import CHUNK, attach_frozen

    run = vau_jax.load_run(tvau_run)
    m, params = run.method, run.params
    m.prepare()  # the training side: dataset, records, tapped features, questions
    # the in-step path computes the sampled frames' heat from their taps; segment means
    # (the tiny default) need every frame and always arrive precomputed (test_tvau_heat.py)
    m.heat_frames = "sampled"
    m.config.rae.heat_scale_min = 1.0  # the preset's training heat scaling off: same inputs
    rows = Q.rae_rows(m, "train", "anomaly")
    rows = (rows * (CHUNK + 1))[: CHUNK + 1]  # two chunks, the second padded
    done, heat = attach_frozen(m, params, rows, "train", None)
    assert sorted(heat) == sorted({int(r["video"]) for r in rows})
    assert heat[int(rows[0]["video"])].shape == (m.frames, m.grid, m.grid)
    attach = D.AttachTaps(m, "train", heat, keys=("frame_valid",))
    new = _stack([attach.map(r) for r in done])
    assert "visual" not in new and "tap_0" not in new  # nothing recomputed in the step
    assert new["vis"].shape == (len(rows), 2 * m.frames, m.llm_cfg.hidden_size)
    old = D.attach(m, "train", _stack(rows))
    for sl in (slice(0, CHUNK), slice(CHUNK, CHUNK + 1)):
        a = {k: jnp.asarray(v[sl]) for k, v in old.items()}
        b = {k: jnp.asarray(v[sl]) for k, v in new.items()}
        np.testing.assert_allclose(
            np.asarray(m.prefix_embeds(params, b)),
            np.asarray(m.prefix_embeds(params, a)),
            rtol=0,
            atol=2e-6,
        )
        la = float(m._rae_loss(params, a, jax.random.key(0))[0])
        lb = float(m._rae_loss(params, b, jax.random.key(0))[0])
        assert abs(la - lb) <= 2e-6 * abs(la), (la, lb)
    # another video's heatmaps in a row change its embeddings: heat is really read
    swapped = {**new, "heat": new["heat"][::-1].copy()}
    b = {k: jnp.asarray(v[:CHUNK]) for k, v in swapped.items()}
    ref = {k: jnp.asarray(v[:CHUNK]) for k, v in new.items()}
    assert not np.allclose(
        np.asarray(m.prefix_embeds(params, b)), np.asarray(m.prefix_embeds(params, ref))
    )


def test_target_positions_and_cached_prefix_give_the_full_logit_loss(tvau_run, monkeypatch):
    # RAE's rows carry target_pos / target_weight (questions.with_target_positions) and the
    # frozen prefix's keys / values (frozen.prefix_kv): the loss from the logits at the
    # targets only, and from positions P on after the cached prefix, equals lm_loss over
    # every position's logits, as does RAE's gradient.
    import vau_jax
    from vau_jax.methods.tvau import data as D
    from vau_jax.methods.tvau import frozen
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.frozen import attach_frozen, prefix_bytes, prefix_length

    run = vau_jax.load_run(tvau_run)
    m, params = run.method, run.params
    m.prepare()
    m.config.rae.heat_scale_min = 1.0  # the preset's training heat scaling off: same inputs
    m.prompt_order = "after"  # P_An after the visual tokens: the frozen prefix holds them
    first = {}  # one row per video: their prefixes (visual tokens) differ
    for r in Q.rae_rows(m, "train", "anomaly"):
        first.setdefault(int(r["video"]), r)
    rows = list(first.values())[:6]
    assert len(rows) >= 3
    assert all(r["target_weight"].sum() == r["loss_mask"][1:].sum() for r in rows)
    done, heat = attach_frozen(m, params, rows, "train", None)
    p = prefix_length(m, rows)
    cfg = m.llm_cfg
    assert p == int(np.argmax(rows[0]["video_mask"])) + 2 * m.frames
    assert done[0]["prefix_k"].shape == (cfg.num_hidden_layers, cfg.num_key_value_heads, p,
                                         cfg.head_dim)  # fmt: skip
    attach = D.AttachTaps(m, "train", heat, keys=("frame_valid",))
    batch = {k: jnp.asarray(v) for k, v in _stack([attach.map(r) for r in done]).items()}
    variants = {
        "full": {k: v for k, v in batch.items() if not k.startswith(("target_", "prefix_"))},
        "targets": {k: v for k, v in batch.items() if not k.startswith("prefix_")},
        "prefix": batch,
    }

    def loss(rae, b):
        return m._rae_loss({**params, "rae": rae}, b, jax.random.key(0))

    out = {
        name: jax.jit(jax.value_and_grad(loss, has_aux=True))(params["rae"], b)
        for name, b in variants.items()
    }
    (lf, aux_f), gf = out["full"]
    for name in ("targets", "prefix"):
        (la, aux_a), ga = out[name]
        assert abs(float(la) - float(lf)) <= 1e-6 * abs(float(lf)), (name, la, lf)
        assert float(aux_a["target_tokens"]) == float(aux_f["target_tokens"]) > 0
        for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gf)):  # measured <= 7.5e-7 rel
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # the prefix is really read: other videos' keys / values, or none, change the loss
    for name, k, v in (
        ("swapped", batch["prefix_k"][::-1], batch["prefix_v"][::-1]),
        ("zero values", batch["prefix_k"], jnp.zeros_like(batch["prefix_v"])),
    ):
        changed = abs(
            float(loss(params["rae"], {**batch, "prefix_k": k, "prefix_v": v})[0]) - float(lf)
        )
        print(f"loss change with {name} prefixes: {changed:.3g}")
        # measured 4.2e-5 (swapped) and 1.1e-2 (zero values) with 64 RAE base prompts, 1.4e-5
        # and 5.1e-4 with 128 (the preset since 2026-12-06: more prompts after the prefix)
        assert changed > (5e-6 if name == "swapped" else 1e-4), (name, changed)
    # over the host-memory cap the rows carry no prefix (the steps recompute it)
    assert prefix_bytes(cfg, len(rows), p) == 2 * len(rows) * done[0]["prefix_k"].nbytes
    monkeypatch.setattr(frozen, "PREFIX_CACHE_BYTES", prefix_bytes(cfg, len(rows), p) - 1)
    again, _ = attach_frozen(m, params, rows, "train", heat)
    assert "prefix_k" not in again[0] and "vis" in again[0]


def test_prefix_length_only_where_every_row_agrees():
    from types import SimpleNamespace

    from vau_jax.methods.tvau.frozen import prefix_length

    def row(start, length=20, target=15):
        vm = np.zeros(24, bool)
        vm[start : start + 8] = True  # 2S = 4 visual tokens, then 4 prompt slots
        am = np.arange(24) < length
        lm = np.zeros(24, bool)
        lm[target:length] = True
        return {"video_mask": vm, "attention_mask": am, "loss_mask": lm}

    m = SimpleNamespace(frames=2, config=SimpleNamespace(rae={"visual_dropout": 0.0}))
    assert prefix_length(m, [row(3), row(3, length=17)]) == 7
    assert prefix_length(m, [row(3), row(4)]) == 0  # video spans start apart
    assert prefix_length(m, [row(3), row(3, target=7)]) == 0  # a target right after it
    assert prefix_length(m, [row(3), row(3, length=6)]) == 0  # padding inside it
    m.config.rae["visual_dropout"] = 0.5  # hidden visual tokens move the later positions
    assert prefix_length(m, [row(3)]) == 0
    assert prefix_length(m, []) == 0


def test_without_ahd_the_rows_carry_zero_heatmaps(tvau_run):
    import vau_jax
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.frozen import attach_frozen

    run = vau_jax.load_run(tvau_run)
    m = run.method
    m.prepare()
    rows = Q.rae_rows(m, "train", "narration")[:3]
    m.use_ahd = False
    try:
        _, heat = attach_frozen(m, run.params, rows, "train", None)
    finally:
        m.use_ahd = True
    assert heat and all(not np.any(h) for h in heat.values())
    kept = {int(rows[0]["video"]): np.ones((m.frames, m.grid, m.grid), np.float32)}
    _, same = attach_frozen(m, run.params, rows[:1], "train", kept)
    assert same is kept  # cross-fitted heatmaps are passed through


def test_rae_data_needs_the_stage_params(tvau_run):
    import vau_jax

    run = vau_jax.load_run(tvau_run)
    m = run.method
    m.prepare()
    stage = {s.name: s for s in m.stages()}["rae_anomaly"]
    assert stage.before_data is not None
    with pytest.raises(RuntimeError, match="before_data"):
        stage.make_data()


@pytest.mark.parametrize("order", ["before", "base_first"])
def test_base_first_shared_prefix_gives_the_full_logit_loss(tvau_run, order):
    # rae.order "before" / "base_first": [text, P_base] is the same in every row
    # (frozen.shared_length), and the step computes its keys / values once for the batch
    # (TVAU.shared_prefix_kv): the loss and RAE's gradient equal those of the full-logit path.
    import vau_jax
    from vau_jax.methods.tvau import data as D
    from vau_jax.methods.tvau import questions as Q
    from vau_jax.methods.tvau.frozen import attach_frozen, prefix_length, shared_length

    run = vau_jax.load_run(tvau_run)
    m, params = run.method, run.params
    m.prepare()
    m.config.rae.heat_scale_min = 1.0
    m.prompt_order = order  # the order of the embeddings only: the same parameters
    first = {}
    for r in Q.rae_rows(m, "train", "anomaly"):
        first.setdefault(int(r["video"]), r)
    rows = list(first.values())[:6]
    done, heat = attach_frozen(m, params, rows, "train", None)
    start, nb, nv = int(np.argmax(rows[0]["video_mask"])), m.rcfg.num_base, 2 * m.frames
    assert prefix_length(m, rows) == 0 and "prefix_k" not in done[0]  # visual tokens follow
    assert shared_length(m, rows) == start + nb
    assert done[0]["shared_ids"].shape == (start,)
    attach = D.AttachTaps(m, "train", heat, keys=("frame_valid",))
    batch = {k: jnp.asarray(v) for k, v in _stack([attach.map(r) for r in done]).items()}
    full = {k: v for k, v in batch.items() if not k.startswith(("target_", "shared_"))}
    # the span's parts where rae.order puts them: P_base first, then the visual tokens
    span = np.asarray(m.prefix_embeds(params, full))[:, start : start + m.num_video_tokens]
    m.prompt_order = "after"
    ref = np.asarray(m.prefix_embeds(params, full))[:, start : start + m.num_video_tokens]
    m.prompt_order = order
    np.testing.assert_array_equal(span[:, :nb], ref[:, nv : nv + nb])
    np.testing.assert_array_equal(span[:, m.visual_offset() :][:, :nv], ref[:, :nv])
    rest = span[:, nb + nv :] if order == "base_first" else span[:, nb : m.visual_offset()]
    np.testing.assert_array_equal(rest, ref[:, nv + nb :])

    def loss(rae, b):
        return m._rae_loss({**params, "rae": rae}, b, jax.random.key(0))

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (lf, aux_f), gf = grad(params["rae"], full)
    (ls, aux_s), gs = grad(params["rae"], batch)
    assert abs(float(ls) - float(lf)) <= 1e-6 * abs(float(lf)), (ls, lf)
    assert float(aux_s["target_tokens"]) == float(aux_f["target_tokens"]) > 0
    for a, b in zip(jax.tree.leaves(gs), jax.tree.leaves(gf)):  # measured <= 1.1e-6 rel
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # the order is really changed: the loss of the same rows in the order "after" differs
    m.prompt_order = "after"
    after = float(loss(params["rae"], full)[0])
    print(f"loss with rae.order={order} {float(lf):.6f}, after {after:.6f}")
    assert abs(after - float(lf)) > 1e-4 * abs(float(lf))


def test_shared_length_only_where_every_row_agrees():
    from types import SimpleNamespace

    from vau_jax.methods.tvau.frozen import shared_length

    def row(start, length=20, target=15, text=7):
        ids = np.full(24, 9, np.int32)
        ids[:start] = text
        vm = np.zeros(24, bool)
        vm[start : start + 8] = True  # 2 base + 2 region prompts, then 4 visual tokens
        am = np.arange(24) < length
        lm = np.zeros(24, bool)
        lm[target:length] = True
        return {"input_ids": ids, "video_mask": vm, "attention_mask": am, "loss_mask": lm}

    m = SimpleNamespace(prompt_order="base_first", rcfg=SimpleNamespace(num_base=2))
    assert shared_length(m, [row(3), row(3, length=17)]) == 5
    assert shared_length(m, [row(3), row(4)]) == 0  # video spans start apart
    assert shared_length(m, [row(3), row(3, text=8)]) == 0  # other text before the span
    assert shared_length(m, [row(3), row(3, target=5)]) == 0  # a target right after it
    assert shared_length(m, [row(3), row(3, length=4)]) == 0  # padding inside it
    assert shared_length(m, []) == 0
    m.prompt_order = "after"  # P_An after the visual tokens: frozen.prefix_length instead
    assert shared_length(m, [row(3)]) == 0


def test_split_heat_runs_ahd_once_per_video_and_ahd(monkeypatch):
    # Both RAE stages read the frozen AHD's heat of the same videos, and evaluation's
    # questions the heat its frame scores came from: each video's is computed once per
    # AHD, kept read-only, and recomputed for other AHD parameters.
    from types import SimpleNamespace

    from vau_jax.methods.tvau import heat as H

    calls = []

    def fake(method, ahd_params, feats, grid=None):
        if grid is None:
            calls.append(feats["i"])
            grid = np.full((4, 3, 3), float(ahd_params["w"].sum()), np.float32)
        return grid[:2] * 1.0

    monkeypatch.setattr(H, "video_heat", fake)
    feats = SimpleNamespace(video=lambda i: {"i": i})
    kept = []  # each full read also keeps the video's sampled frames (D.full_video)
    keeper = SimpleNamespace(keep=lambda i, f: kept.append((i, f["i"])))
    m = SimpleNamespace(
        heat_frames="segment_peak", frames=2, feats={"train": feats}, sampled={"train": keeper}
    )
    p = {"w": np.ones(4, np.float32)}
    a = H.split_heat(m, p, "train", [1, 2])
    b = H.split_heat(m, {"w": np.ones(4, np.float32)}, "train", [2, 1])
    assert b[1] is a[1] and b[2] is a[2] and calls == [1, 2]
    assert kept == [(1, 1), (2, 2)]
    with pytest.raises(ValueError):
        a[1][0, 0, 0] = 5.0  # shared between the stages: read-only
    c = H.split_heat(m, {"w": np.full(4, 2.0, np.float32)}, "train", [1, 3])
    assert calls == [1, 2, 1, 3] and float(c[1][0, 0, 0]) == 8.0
    # heatmaps the caller already has (evaluation's) are kept and not recomputed
    H.keep_video_heat(m, p, "test", {5: np.full((4, 3, 3), 0.5, np.float32)})
    got = H.split_heat(m, p, "test", [5])
    assert calls == [1, 2, 1, 3] and float(got[5][0, 0, 0]) == 0.5
    assert "train" not in m._segment_heat  # the other AHD's entries were dropped
