"""VADor: shapes, phases, streaming equals full, MIL loss values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.models.heads.ltc import LTCConfig, init_state
from vau_jax.models.heads.vador import VADor, VADorConfig, mil_loss
from vau_jax.models.qformer import QFormerConfig

QF = QFormerConfig(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    encoder_hidden_size=16,
    num_query_tokens=4,
    text_input=False,
    hf_model_type="blip_2_qformer",
    hidden_dropout_prob=0.0,
)


def _model(k=2):
    cfg = VADorConfig(
        qformer=QF,
        ltc=LTCConfig(dim=32, k=k),
        frames_per_clip=4,
        tokens_per_frame=3,
        vision_width=16,
    )
    m = VADor(cfg)
    tok = jax.random.normal(jax.random.key(0), (2, 6, 12, 16))
    mask = jnp.ones((2, 6), bool).at[1, 4:].set(False)
    params = nn.unbox(m.init(jax.random.key(1), tok, mask)["params"])
    params = jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params
    )
    return m, params, tok, mask


@pytest.mark.slow
def test_param_groups_and_phases():
    m, params, tok, mask = _model()
    assert set(params) == {"frame_position", "video_qformer", "ap", "ap_base", "ltc"}
    o1 = m.apply({"params": params}, tok, mask, phase=1)
    o2 = m.apply({"params": params}, tok, mask, phase=2)
    assert o1["scores"].shape == (2, 6) and o2["x_tilde"].shape == (2, 6, 32)
    np.testing.assert_array_equal(np.asarray(o1["x"]), np.asarray(o1["x_tilde"]))
    assert not np.allclose(np.asarray(o1["scores"]), np.asarray(o2["scores"]))


@pytest.mark.slow
def test_streaming_chunks_equal_full_video():
    m, params, tok, mask = _model()
    full = m.apply({"params": params}, tok, mask, phase=2)["scores"]
    state, parts = init_state(2, 2, 32), []
    for s in range(0, 6, 4):
        r = m.apply({"params": params}, tok[:, s : s + 4], mask[:, s : s + 4], phase=2, state=state)
        parts.append(r["scores"])
        state = r["state"]
    # scores in (0, 1); measured max abs err 3e-8 to 6e-8 over 3 seeds
    np.testing.assert_allclose(
        np.asarray(jnp.concatenate(parts, 1)), np.asarray(full), atol=3e-7, rtol=0
    )


def _bce(p, y):
    return -(y * np.log(p + 1e-6) + (1 - y) * np.log(1 - p + 1e-6))


def test_mil_loss_objectives_by_hand():
    # float32 scalars against float64 values by hand: relative error measured 1.5e-8 to
    # 1.7e-7 (at most ~1 ulp), so rtol=1e-6 (~8 ulps) throughout.
    scores = jnp.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.95]])
    mask = jnp.array([[True, True, True], [True, True, False]])  # 0.95 is padding
    labels = jnp.array([1, 0])
    # "bce": Eq. (1) on the max valid clip score.
    loss, aux = mil_loss(scores, mask, labels, objective="bce")
    expected = (_bce(0.9, 1) + _bce(0.3, 0)) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    # "paper" (the default): + Eq. (1) on the max-min margin (0.9-0.1 and 0.3-0.2).
    loss_p, aux_p = mil_loss(scores, mask, labels)
    margin = (_bce(0.8, 1) + _bce(0.1, 0)) / 2
    np.testing.assert_allclose(float(aux_p["mil_margin"]), margin, rtol=1e-6)
    np.testing.assert_allclose(float(loss_p), expected + margin, rtol=1e-6)
    # "bce_extras": the previous extras.
    loss_x, aux_x = mil_loss(scores, mask, labels, objective="bce_extras")
    # smoothness over valid neighbours: (0.8^2 + 0.7^2 + 0.1^2) / 3
    np.testing.assert_allclose(float(aux_x["smoothness"]), (0.64 + 0.49 + 0.01) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(aux_x["sparsity"]), (0.1 + 0.9 + 0.2) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(aux_x["margin"]), max(0.0, 1 - 0.9 + 0.3), rtol=1e-6)
    assert float(loss_x) > float(loss)
    with pytest.raises(ValueError, match="unknown MIL objective"):
        mil_loss(scores, mask, labels, objective="umil")


def test_paper_margin_term_skips_single_clip_videos_and_has_the_right_sign():
    mask = jnp.array([[True, False, False], [True, True, True]])
    labels = jnp.array([1, 1])
    scores = jnp.array([[0.5, 0.0, 0.0], [0.2, 0.6, 0.4]])
    _, aux = mil_loss(scores, mask, labels)
    np.testing.assert_allclose(float(aux["mil_margin"]), _bce(0.4, 1), rtol=1e-6)  # video 2
    # Anomalous video: the margin term pushes the max up and the min down; normal: flattens.
    g = jax.grad(lambda s: mil_loss(s, mask, labels)[1]["mil_margin"])(scores)
    assert float(g[1, 1]) < 0 < float(g[1, 0]) and float(g[0, 0]) == 0.0
    g0 = jax.grad(lambda s: mil_loss(s, mask, jnp.array([0, 0]))[1]["mil_margin"])(scores)
    assert float(g0[1, 1]) > 0 > float(g0[1, 0])
