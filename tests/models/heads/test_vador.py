"""VADor: shapes, phases, streaming equals full, MIL loss values."""

import jax
import jax.numpy as jnp
import numpy as np
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


def test_param_groups_and_phases():
    m, params, tok, mask = _model()
    assert set(params) == {"frame_position", "video_qformer", "ap", "ap_base", "ltc"}
    o1 = m.apply({"params": params}, tok, mask, phase=1)
    o2 = m.apply({"params": params}, tok, mask, phase=2)
    assert o1["scores"].shape == (2, 6) and o2["x_tilde"].shape == (2, 6, 32)
    np.testing.assert_array_equal(np.asarray(o1["x"]), np.asarray(o1["x_tilde"]))
    assert not np.allclose(np.asarray(o1["scores"]), np.asarray(o2["scores"]))


def test_streaming_chunks_equal_full_video():
    m, params, tok, mask = _model()
    full = m.apply({"params": params}, tok, mask, phase=2)["scores"]
    state, parts = init_state(2, 2, 32), []
    for s in range(0, 6, 4):
        r = m.apply({"params": params}, tok[:, s : s + 4], mask[:, s : s + 4], phase=2, state=state)
        parts.append(r["scores"])
        state = r["state"]
    np.testing.assert_allclose(
        np.asarray(jnp.concatenate(parts, 1)), np.asarray(full), rtol=1e-5, atol=1e-6
    )


def test_mil_loss_uses_max_valid_clip():
    scores = jnp.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.95]])
    mask = jnp.array([[True, True, True], [True, True, False]])  # 0.95 is padding
    labels = jnp.array([1, 0])
    loss, aux = mil_loss(scores, mask, labels)
    expected = -(np.log(0.9 + 1e-6) + np.log(1 - 0.3 + 1e-6)) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    loss_x, aux_x = mil_loss(scores, mask, labels, extras=True)
    # smoothness over valid neighbours: (0.8^2 + 0.7^2 + 0.1^2) / 3
    np.testing.assert_allclose(float(aux_x["smoothness"]), (0.64 + 0.49 + 0.01) / 3, rtol=1e-5)
    np.testing.assert_allclose(float(aux_x["sparsity"]), (0.1 + 0.9 + 0.2) / 3, rtol=1e-5)
    np.testing.assert_allclose(float(aux_x["margin"]), max(0.0, 1 - 0.9 + 0.3), rtol=1e-5)
    assert float(loss_x) > float(loss)
