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
