"""The pure train step: accumulation, freezing, NaN refusal, sharded == single device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax import sharding
from vau_jax.models import layers
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.step import (
    create_train_state,
    make_train_step,
    raise_if_nonfinite,
    trainable_paths,
)


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = layers.dense(32, ("embed", "mlp"), name="enc")(x)
        return layers.dense(1, ("mlp", "embed"), name="head")(jnp.tanh(h))[..., 0]


def _setup(opt_cfg=None, accum=1, **kw):
    model = _MLP()
    x = jax.random.normal(jax.random.key(1), (16, 8))
    y = jnp.sin(x.sum(-1))
    params = nn.unbox(model.init(jax.random.key(0), x)["params"])
    opt = make_optimizer(opt_cfg or {"name": "adamw", "lr": 1e-2, "weight_decay": 1e-2}, params)

    def loss_fn(p, batch, rng):
        pred = model.apply({"params": p}, batch["x"])
        noise = 0.0 * jax.random.normal(rng, ())
        loss = jnp.mean((pred - batch["y"]) ** 2) + noise
        return loss, {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}

    step = make_train_step(loss_fn, opt, grad_accum_steps=accum, donate=False, **kw)
    return model, params, opt, step, {"x": x, "y": y}


def test_loss_decreases_and_metrics_present():
    _, params, opt, step, batch = _setup({"name": "adamw", "lr": 5e-2})
    state = create_train_state(params, opt, seed=0)
    losses = []
    for _ in range(30):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert set(m) >= {"loss", "grad_norm", "param_norm", "lr", "mae"}
    assert int(state.step) == 30 and int(m["nonfinite_leaf"]) == -2


def test_grad_accumulation_matches_full_batch():
    _, params, opt, step1, batch = _setup(accum=1)
    _, _, _, step4, _ = _setup(accum=4)
    s1 = create_train_state(params, opt, seed=0)
    s4 = create_train_state(params, opt, seed=0)
    for _ in range(3):
        s1, m1 = step1(s1, batch)
        s4, m4 = step4(s4, batch)
    np.testing.assert_allclose(float(m1["loss"]), float(m4["loss"]), rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), s1.params, s4.params
    )


def test_frozen_leaves_bit_identical_through_steps():
    _, params, opt, step, batch = _setup(
        {"name": "adamw", "lr": 1e-1, "weight_decay": 0.5, "freeze": [r"^enc/"]}
    )
    state = create_train_state(params, opt, seed=0)
    for _ in range(5):
        state, _ = step(state, batch)
    assert np.array_equal(
        np.asarray(state.params["enc"]["kernel"]), np.asarray(params["enc"]["kernel"])
    )
    assert not np.array_equal(
        np.asarray(state.params["head"]["kernel"]), np.asarray(params["head"]["kernel"])
    )


def test_nonfinite_gradient_is_refused_and_named():
    _, params, opt, step, batch = _setup()
    state = create_train_state(params, opt, seed=0)
    bad = {"x": batch["x"].at[0, 0].set(jnp.nan), "y": batch["y"]}
    new, m = step(state, bad)
    assert int(new.step) == 0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new.params, state.params)
    with pytest.raises(FloatingPointError, match="step 7: the loss is not finite"):
        raise_if_nonfinite(jax.device_get(m), 7, trainable_paths(params, opt))


def test_sharded_step_equals_single_device():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    model, params, opt, step, batch = _setup()
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), batch["x"]))["params"]
    p_shard = sharding.param_shardings(abstract, mesh)
    state = create_train_state(params, opt, seed=0)
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state_sharding = state_sharding.replace(params=p_shard)
    _, _, _, sstep, _ = _setup(
        state_sharding=None,
        batch_sharding={"x": sharding.data_sharding(mesh, 2), "y": sharding.data_sharding(mesh, 1)},
    )
    s_single, s_mesh = (
        state,
        create_train_state(sharding.shard_params(params, abstract, mesh), opt, seed=0),
    )
    for _ in range(3):
        s_single, m1 = step(s_single, batch)
        s_mesh, m2 = sstep(s_mesh, batch)
    assert s_mesh.params["enc"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(
        "fsdp", "tensor"
    )
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        s_single.params,
        s_mesh.params,
    )
