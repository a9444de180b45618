"""AHD: cosines and fusion vs numpy, loss vs numpy, gradients, a toy fit, host helpers."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from flax import linen as nn
from scipy.special import erf
from sklearn.metrics import roc_auc_score

from vau_jax.models.heads.ahd import (
    AHD,
    AHDConfig,
    added_params,
    ahd_loss,
    patch_targets,
    prompt_embeddings,
    proportional_taps,
    upsample_heatmap,
)

WIDTHS = (8, 12)
DT = 16


def _inputs(lead=(2, 3), grid=(4, 5), seed=0):
    rng = np.random.default_rng(seed)
    taps = [jnp.asarray(rng.normal(size=(*lead, *grid, d)), jnp.float32) for d in WIDTHS]
    prompts = jnp.asarray(rng.normal(size=(2, DT)), jnp.float32)
    return taps, prompts


def _init(mlp_hidden=0, learn_temperature=True, seed=0):
    cfg = AHDConfig(len(WIDTHS), DT, mlp_hidden=mlp_hidden, learn_temperature=learn_temperature)
    m = AHD(cfg)
    taps, prompts = _inputs()
    variables = m.init(jax.random.key(seed), taps, prompts)
    return m, variables, taps, prompts


def _perturbed(params, seed=1):
    """Non-uniform layer weights and a non-default scale, so the reference can disagree."""
    p = jax.tree_util.tree_map(lambda x: x, params)
    p["layer_weights"] = jnp.asarray([0.7, -0.3])
    if "logit_scale" in p:
        p["logit_scale"] = jnp.asarray(2.0)
    return p


def _np_l2(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _np_reference(params, taps, prompts, mlp_hidden, scale):
    """AHD written from the paper in numpy (float64), from the module's own params."""
    t_c = _np_l2(np.asarray(prompts, np.float64))
    per = []
    for i, v in enumerate(taps):
        v = np.asarray(v, np.float64)
        p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params[f"proj_{i}"])
        if mlp_hidden:
            z = v @ p["fc1"]["kernel"] + p["fc1"]["bias"]
            z = 0.5 * z * (1 + erf(z / math.sqrt(2)))  # exact GELU
            out = z @ p["fc2"]["kernel"] + p["fc2"]["bias"]
        else:
            out = v @ p["kernel"] + p["bias"]
        per.append(_np_l2(out) @ t_c.T)  # cosine with each class prompt
    per = np.stack(per)
    w = np.asarray(params["layer_weights"], np.float64)
    fused = sum(w[i] * per[i] for i in range(len(per)))  # H_c = sum_i w_i h_c^i
    logits = fused * scale
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return per, logits, (e / e.sum(-1, keepdims=True))[..., 1]


def test_shapes_param_names_and_axes():
    m, variables, taps, prompts = _init(mlp_hidden=6)
    boxed = variables["params"]
    assert boxed["proj_0"]["fc1"]["kernel"].names == ("embed", "mlp")
    assert boxed["layer_weights"].names == (None,)
    params = nn.unbox(boxed)
    assert sorted(params) == ["layer_weights", "logit_scale", "proj_0", "proj_1"]
    np.testing.assert_allclose(np.asarray(params["layer_weights"]), [0.5, 0.5])
    np.testing.assert_allclose(float(params["logit_scale"]), math.log(1 / 0.07), rtol=1e-6)
    out = m.apply({"params": params}, taps, prompts)
    assert out["logits"].shape == (2, 3, 4, 5, 2)
    assert out["heatmap"].shape == (2, 3, 4, 5)
    assert out["per_tap"].shape == (2, 2, 3, 4, 5, 2)
    with pytest.raises(ValueError, match="expects 2 taps"):
        m.apply({"params": params}, taps[:1], prompts)
    with pytest.raises(ValueError, match="prompts"):
        m.apply({"params": params}, taps, prompts[:1])


def test_stacked_taps_equal_list():
    cfg = AHDConfig(2, DT)
    rng = np.random.default_rng(3)
    stacked = jnp.asarray(rng.normal(size=(2, 3, 4, 4, 8)), jnp.float32)
    prompts = jnp.asarray(rng.normal(size=(2, DT)), jnp.float32)
    params = nn.unbox(AHD(cfg).init(jax.random.key(0), stacked, prompts)["params"])
    a = AHD(cfg).apply({"params": params}, stacked, prompts)
    b = AHD(cfg).apply({"params": params}, [stacked[0], stacked[1]], prompts)
    np.testing.assert_array_equal(np.asarray(a["logits"]), np.asarray(b["logits"]))


def _np_loss(logits, y, valid, pw):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    per = -(pw * y * logp[..., 1] + (1 - y) * logp[..., 0])
    return per[valid].mean()


class AHDTest(chex.TestCase):
    """The AHD forward, prompts, loss and heatmap upsampling against numpy, eagerly and under
    ``jax.jit`` (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("linear", 0), ("mlp", 6))
    def test_matches_numpy_reference(self, mlp_hidden):
        m, variables, taps, prompts = _init(mlp_hidden=mlp_hidden)
        params = _perturbed(nn.unbox(variables["params"]))
        out = self.variant(m.apply)({"params": params}, taps, prompts)
        chex.assert_shape(out["logits"], (2, 3, 4, 5, 2))
        chex.assert_shape(out["heatmap"], (2, 3, 4, 5))
        chex.assert_shape(out["per_tap"], (len(WIDTHS), 2, 3, 4, 5, 2))
        chex.assert_tree_all_finite(out)
        per, logits, heat = _np_reference(params, taps, prompts, mlp_hidden, math.exp(2.0))
        # max abs err vs the float64 reference, measured (eager and jit, 2 seeds, AVX2 EPYC):
        # per_tap 1.3e-7, logits 7.1e-7 (|logit| <= 4.1), heatmap 1.8e-7
        np.testing.assert_allclose(np.asarray(out["per_tap"]), per, atol=7e-7)
        np.testing.assert_allclose(np.asarray(out["logits"]), logits, atol=4e-6, rtol=0)
        np.testing.assert_allclose(np.asarray(out["heatmap"]), heat, atol=1e-6)
        probs = jax.nn.softmax(out["logits"], axis=-1)
        np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, atol=1e-6)  # measured 1.2e-7
        h = np.asarray(out["heatmap"])
        assert h.min() >= 0.0 and h.max() <= 1.0

    @chex.variants(with_jit=True, without_jit=True)
    def test_prompt_embeddings(self):
        rng = np.random.default_rng(0)
        n, a = rng.normal(size=(5, DT)), rng.normal(size=(3, DT))
        got = self.variant(prompt_embeddings)(jnp.asarray(n), jnp.asarray(a))
        chex.assert_shape(got, (2, DT))
        ref = np.stack([_np_l2(_np_l2(e).mean(0)) for e in (n, a)])
        np.testing.assert_allclose(np.asarray(got), ref, atol=5e-7)  # measured 9.1e-8

    @chex.variants(with_jit=True, without_jit=True)
    def test_loss_matches_numpy(self):
        loss = self.variant(ahd_loss)
        rng = np.random.default_rng(0)
        logits = rng.normal(scale=4.0, size=(3, 4, 5, 6, 2)).astype(np.float32)
        y = rng.uniform(size=(3, 4, 5, 6)).astype(np.float32)
        valid = rng.uniform(size=(3, 4)) > 0.4
        lj, yj = jnp.asarray(logits), jnp.asarray(y)
        plain = loss(lj, yj)
        chex.assert_shape(plain, ())
        chex.assert_tree_all_finite(plain)
        # relative error measured 2.0e-7 to 3.1e-7
        np.testing.assert_allclose(float(plain), _np_loss(logits, y, ..., 1.0), rtol=2e-6)
        got = float(loss(lj, yj, jnp.asarray(valid), pos_weight=5.0))
        np.testing.assert_allclose(got, _np_loss(logits, y, valid, 5.0), rtol=2e-6)
        assert float(loss(lj, yj, jnp.zeros((3, 4), bool))) == 0.0
        big = float(loss(jnp.asarray([[300.0, -300.0]]), jnp.asarray([1.0])))
        np.testing.assert_allclose(big, 600.0, rtol=1e-6)  # stable for large logits

    @chex.variants(with_jit=True, without_jit=True)
    def test_upsample_heatmap(self):
        upsample = self.variant(upsample_heatmap, static_argnums=1)
        rng = np.random.default_rng(0)
        h = jnp.asarray(rng.uniform(size=(2, 3, 4, 5)), jnp.float32)
        up = upsample(h, (16, 20))
        chex.assert_shape(up, (2, 3, 16, 20))
        up = np.asarray(up)
        assert up.min() >= 0.0 and up.max() <= 1.0
        assert abs(up.mean() - float(h.mean())) < 0.05
        const = np.asarray(upsample(jnp.full((4, 4), 0.3), (7, 9)))
        np.testing.assert_allclose(const, 0.3, atol=1e-7)  # measured 1.8e-8


def test_fixed_temperature_has_no_param():
    m, variables, taps, prompts = _init(learn_temperature=False)
    params = _perturbed(nn.unbox(variables["params"]))
    assert "logit_scale" not in params
    out = m.apply({"params": params}, taps, prompts)
    _, logits, _ = _np_reference(params, taps, prompts, 0, 1 / 0.07)
    # measured max abs err 8.1e-7 to 1.1e-6 (|logit| <= 5.8)
    np.testing.assert_allclose(np.asarray(out["logits"]), logits, atol=6e-6, rtol=0)


@pytest.mark.parametrize("mlp_hidden", [0, 6])
def test_gradients_reach_every_param(mlp_hidden):
    m, variables, taps, prompts = _init(mlp_hidden=mlp_hidden)
    params = nn.unbox(variables["params"])
    targets = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 3, 4, 5)), jnp.float32)
    valid = jnp.asarray([[True, True, False], [True, False, True]])

    def loss(p):
        return ahd_loss(m.apply({"params": p}, taps, prompts)["logits"], targets, valid, 3.0)

    grads = jax.jit(jax.grad(loss))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0), path


def _toy(seed, n=8, grid=6):
    """Tap features whose anomalous patches are shifted along a fixed direction per tap."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=(n, grid, grid)) < 0.2).astype(np.float32)
    dirs = [np.random.default_rng(100 + i).normal(size=d) for i, d in enumerate(WIDTHS)]
    taps = [
        jnp.asarray(
            rng.normal(size=(n, grid, grid, d)) + 3.0 * y[..., None] * u / np.linalg.norm(u),
            jnp.float32,
        )
        for d, u in zip(WIDTHS, dirs)
    ]
    return taps, jnp.asarray(y)


def test_fits_toy_problem():
    taps, y = _toy(0)
    prompts = jnp.asarray(np.random.default_rng(7).normal(size=(2, DT)), jnp.float32)
    m = AHD(AHDConfig(len(WIDTHS), DT))
    params = nn.unbox(m.init(jax.random.key(0), taps, prompts)["params"])
    opt = optax.adam(1e-2)
    state = opt.init(params)

    def loss_fn(p):
        return ahd_loss(m.apply({"params": p}, taps, prompts)["logits"], y, pos_weight=2.0)

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses = []
    for _ in range(200):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    test_taps, test_y = _toy(1)  # held-out draw
    heat = np.asarray(m.apply({"params": params}, test_taps, prompts)["heatmap"])
    auc = roc_auc_score(np.asarray(test_y).ravel() > 0.5, heat.ravel())
    assert auc > 0.95, auc


def test_proportional_taps():
    assert proportional_taps(32) == (1, 8, 16, 32)
    assert proportional_taps(4) == (1, 2, 4)
    assert proportional_taps(12) == (1, 3, 6, 12)
    assert proportional_taps(1) == (1,)
    assert proportional_taps(2, (8, 1), 8) == (1, 2)
    with pytest.raises(ValueError, match="num_layers"):
        proportional_taps(0)
    with pytest.raises(ValueError, match="paper_taps"):
        proportional_taps(12, (0, 8))
    with pytest.raises(ValueError, match="paper_taps"):
        proportional_taps(12, (33,))


def test_patch_targets():
    m = np.zeros((2, 4, 6), np.uint8)
    m[0, 0:2, 0:3] = 1  # whole top-left cell of a 2x2 grid
    m[0, 3, 5] = 1  # one pixel of the bottom-right cell (6 pixels)
    m[1] = 7  # any nonzero counts as anomalous
    got = patch_targets(m, (2, 2))
    assert got.dtype == np.float32 and got.shape == (2, 2, 2)
    np.testing.assert_allclose(got[0], [[1.0, 0.0], [0.0, 1 / 6]], atol=3e-8)  # measured 5e-9
    np.testing.assert_array_equal(got[1], np.ones((2, 2)))
    np.testing.assert_array_equal(patch_targets(m.astype(bool), (4, 6)), m != 0)
    with pytest.raises(ValueError, match=r"\(2, 4, 6\)"):
        patch_targets(m, (3, 2))
    with pytest.raises(ValueError, match="T, H, W"):
        patch_targets(m[0], (2, 2))


@pytest.mark.parametrize("mlp_hidden, learn", [(0, True), (6, True), (0, False)])
def test_added_params_equals_real_count(mlp_hidden, learn):
    _, variables, _, _ = _init(mlp_hidden=mlp_hidden, learn_temperature=learn)
    real = sum(x.size for x in jax.tree_util.tree_leaves(nn.unbox(variables["params"])))
    assert added_params(WIDTHS, DT, mlp_hidden, learn) == real
