"""TETG: BCE vs numpy, the MLP learns a toy problem, longest run, seconds, prompt text."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

from vau_jax.models.heads.tetg import (
    TETG,
    TETGConfig,
    longest_run,
    run_to_seconds,
    tetg_loss,
)


def _np_bce(x, y):
    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_bce_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(4, 9)).astype(np.float32)
    y = (rng.uniform(size=(4, 9)) > 0.5).astype(np.float32)
    m = rng.uniform(size=(4, 9)) > 0.3
    ref = _np_bce(x, y)
    # relative error measured 5e-8 to 1.2e-7 (about 1 ulp) over 3 seeds
    np.testing.assert_allclose(float(tetg_loss(jnp.asarray(x), jnp.asarray(y))), ref.mean(), 1e-6)
    got = float(tetg_loss(jnp.asarray(x), jnp.asarray(y), jnp.asarray(m)))
    np.testing.assert_allclose(got, ref[m].mean(), rtol=1e-6)
    assert float(tetg_loss(jnp.asarray(x), jnp.asarray(y), jnp.zeros((4, 9), bool))) == 0.0
    big = float(tetg_loss(jnp.asarray([200.0, -200.0]), jnp.asarray([0.0, 1.0])))
    np.testing.assert_allclose(big, 200.0, rtol=1e-6)  # stable for large logits


def test_shapes_and_param_names():
    m = TETG(TETGConfig(hidden=(16, 8)))
    z = jnp.ones((2, 5, 12))
    variables = m.init(jax.random.key(0), z)
    boxed = variables["params"]["dense_0"]["kernel"]
    assert isinstance(boxed, nn.LogicallyPartitioned) and boxed.names == ("embed", "mlp")
    params = nn.unbox(variables["params"])
    assert sorted(params) == ["dense_0", "dense_1", "dense_2"]
    shapes = {k: v["kernel"].shape for k, v in params.items()}
    assert shapes == {"dense_0": (12, 16), "dense_1": (16, 8), "dense_2": (8, 1)}
    assert m.apply({"params": params}, z).shape == (2, 5)


def test_dropout_only_when_not_deterministic():
    m = TETG(TETGConfig(hidden=(32, 32), dropout=0.5))
    z = jax.random.normal(jax.random.key(0), (4, 8))
    params = nn.unbox(m.init(jax.random.key(1), z)["params"])
    a = m.apply({"params": params}, z)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(m.apply({"params": params}, z)))
    b = m.apply({"params": params}, z, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(np.asarray(a), np.asarray(b))


def _toy(n=256, d=16, seed=0):
    """Linearly separable frames: label = [z · w > 0]."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d,)).astype(np.float32)
    return jnp.asarray(z), jnp.asarray((z @ w > 0).astype(np.float32))


def _train(opt, steps, batch, z, y, seed=0):
    m = TETG(TETGConfig(hidden=(32, 16)))
    params = nn.unbox(m.init(jax.random.key(seed), z[:1])["params"])
    state = opt.init(params)

    @jax.jit
    def step(params, state, zb, yb):
        loss, g = jax.value_and_grad(lambda p: tetg_loss(m.apply({"params": p}, zb), yb))(params)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for i in range(steps):
        sl = slice((i * batch) % len(z), (i * batch) % len(z) + batch)
        params, state, loss = step(params, state, z[sl], y[sl])
        losses.append(float(loss))
    return m, params, losses


def test_learns_separable_toy_problem():
    z, y = _toy()
    m, params, _ = _train(optax.sgd(0.1, momentum=0.9), 300, 32, z, y)
    acc = float(jnp.mean((m.apply({"params": params}, z) > 0) == (y > 0.5)))
    assert acc >= 0.95, acc


def test_paper_optimiser_reduces_loss():
    """SGD lr 1e-3 (momentum 0.9), batch 32, ~200 steps: the loss goes down."""
    z, y = _toy(seed=1)
    m, params, losses = _train(optax.sgd(learning_rate=1e-3, momentum=0.9), 200, 32, z, y)
    m0 = TETG(TETGConfig(hidden=(32, 16)))
    p0 = nn.unbox(m0.init(jax.random.key(0), z[:1])["params"])
    before = float(tetg_loss(m0.apply({"params": p0}, z), y))
    after = float(tetg_loss(m.apply({"params": params}, z), y))
    assert after < before - 0.02, (before, after)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])


@pytest.mark.parametrize(
    "probs, expected",
    [
        ([0.1, 0.2, 0.3], None),  # none
        ([], None),
        ([0.9, 0.6, 0.5], (0, 2)),  # all; p == threshold counts
        ([0.9, 0.1, 0.8, 0.8, 0.1, 0.7, 0.7], (2, 3)),  # tie -> earliest
        ([0.9, 0.9, 0.1, 0.1, 0.2, 0.9], (0, 1)),  # at the start
        ([0.1, 0.9, 0.1, 0.6, 0.7, 0.8], (3, 5)),  # at the end
        ([0.4, 0.99, 0.4], (1, 1)),  # single frame
    ],
)
def test_longest_run(probs, expected):
    assert longest_run(np.asarray(probs), 0.5) == expected


def test_run_to_seconds():
    assert run_to_seconds((0, 0), 1.0) == (0.0, 1.0)
    assert run_to_seconds((3, 7), 2.0) == (1.5, 4.0)
    assert run_to_seconds((1, 2), 3.0) == (0.3, 1.0)  # 1/3 and 3/3, rounded to 0.1 s
    with pytest.raises(ValueError, match="fps"):
        run_to_seconds((0, 1), 0.0)
