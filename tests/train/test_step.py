"""The pure train step: accumulation, freezing, NaN refusal recorded on device, sharded ==
single device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from vau_jax import sharding
from vau_jax.models import layers
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.state import INPUT_FAULT, LOSS_FAULT, NO_FAULT
from vau_jax.train.step import (
    create_train_state,
    input_paths,
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
    assert int(state.step) == 30
    assert int(state.fault_leaf) == NO_FAULT and int(state.fault_step) == -1
    raise_if_nonfinite(state, [])  # no fault: no error


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


def _same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_nonfinite_loss_is_refused_recorded_and_sticky():
    _, params, opt, step, batch = _setup()
    state = create_train_state(params, opt, seed=0)
    state, _ = step(state, batch)  # one good step: the fault is stage step 2
    # Finite inputs, an overflowing loss: ((pred - 1e30)^2 is inf in float32).
    bad = {"x": batch["x"], "y": batch["y"].at[0].set(1e30)}
    new, m = step(state, bad)
    assert not np.isfinite(float(m["loss"]))
    assert int(new.step) == 1
    assert (int(new.fault_step), int(new.fault_leaf)) == (2, LOSS_FAULT)
    _same(new.params, state.params)
    _same(new.opt_state, state.opt_state)
    # Once a fault is recorded, good batches change nothing (the record stays the first fault).
    later = new
    for _ in range(3):
        later, m = step(later, batch)
    assert np.isfinite(float(m["loss"]))
    _same(later, new)
    with pytest.raises(FloatingPointError, match="step 7: the loss is not finite"):
        raise_if_nonfinite(later, trainable_paths(params, opt), step_offset=5)


def test_nonfinite_input_is_named_before_the_loss():
    _, params, opt, step, batch = _setup()
    state = create_train_state(params, opt, seed=0)
    bad = {"x": batch["x"], "y": batch["y"].at[3].set(jnp.inf)}
    new, m = step(state, bad)
    assert not np.isfinite(float(m["loss"]))  # the loss is not finite either
    names = input_paths(bad)
    assert names == ["x", "y"]
    assert (int(new.fault_step), int(new.fault_leaf)) == (1, INPUT_FAULT - names.index("y"))
    _same(new.params, state.params)
    with pytest.raises(FloatingPointError, match="step 11: the input 'y' is not finite"):
        raise_if_nonfinite(new, trainable_paths(params, opt), step_offset=10, inputs=names)


def _poison(x, flag):
    """Identity whose gradient is NaN where ``flag`` is true (the loss stays finite)."""

    @jax.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda _, g: (jnp.where(flag, jnp.nan, g),))
    return f(x)


def test_nonfinite_gradient_of_one_leaf_is_named():
    model = _MLP()
    x = jax.random.normal(jax.random.key(1), (16, 8))
    params = nn.unbox(model.init(jax.random.key(0), x)["params"])
    opt = make_optimizer({"name": "adamw", "lr": 1e-2, "freeze": [r"^enc/bias$"]}, params)

    def loss_fn(p, batch, rng):
        p = {**p, "head": {**p["head"], "kernel": _poison(p["head"]["kernel"], batch["bad"][0])}}
        pred = model.apply({"params": p}, batch["x"])
        return jnp.mean((pred - jnp.sin(batch["x"].sum(-1))) ** 2), {}

    step = make_train_step(loss_fn, opt, donate=False)
    state = create_train_state(params, opt, seed=0)
    good, bad = {"x": x, "bad": jnp.zeros(16, bool)}, {"x": x, "bad": jnp.ones(16, bool)}
    state, _ = step(state, good)
    new, m = step(state, bad)
    assert np.isfinite(float(m["loss"]))  # only the gradient is poisoned
    paths = trainable_paths(params, opt)
    assert paths == ["enc/kernel", "head/bias", "head/kernel"]  # enc/bias is frozen
    assert (int(new.fault_step), int(new.fault_leaf)) == (2, paths.index("head/kernel"))
    _same(new.params, state.params)
    with pytest.raises(FloatingPointError, match="step 2: the gradient of 'head/kernel'"):
        raise_if_nonfinite(new, paths)


def test_sharded_step_equals_single_device():
    """The step jitted with an explicit state sharding (params FSDP x tensor, optimizer
    moments laid out like their params, as the trainer builds it) and a data-sharded batch
    gives the single-device numbers, and its outputs keep exactly the requested layout."""
    from vau_jax.train.state import abstract_train_state, init_train_state

    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    model, params, opt, step, batch = _setup()
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), batch["x"]))["params"]
    p_shard = sharding.param_shardings(boxed, mesh)
    abstract = abstract_train_state(nn.unbox(boxed), opt, 0, p_shard, mesh)
    state_sharding = jax.tree.map(lambda a: a.sharding, abstract)
    kernel_spec = jax.sharding.PartitionSpec("fsdp", "tensor")
    assert p_shard["enc"]["kernel"].spec == kernel_spec
    _, _, _, sstep, _ = _setup(
        state_sharding=state_sharding,
        batch_sharding={"x": sharding.data_sharding(mesh, 2), "y": sharding.data_sharding(mesh, 1)},
    )
    s_single = create_train_state(params, opt, seed=0)
    s_mesh = init_train_state(params, opt, 0, state_sharding)
    for _ in range(3):
        s_single, m1 = step(s_single, batch)
        s_mesh, m2 = sstep(s_mesh, batch)
    # Every output leaf (params, optimizer moments, scalars) has the sharding asked for.
    flat_out = jax.tree_util.tree_leaves_with_path(s_mesh)
    flat_want = jax.tree_util.tree_leaves(state_sharding)
    assert len(flat_out) == len(flat_want)
    for (path, leaf), want in zip(flat_out, flat_want):
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim), jax.tree_util.keystr(path)
    mu = [
        x for p, x in jax.tree_util.tree_leaves_with_path(s_mesh.opt_state)
        if "enc" in jax.tree_util.keystr(p) and "kernel" in jax.tree_util.keystr(p)
    ]  # fmt: skip
    assert mu and all(x.sharding.spec == kernel_spec for x in mu)  # moments follow the params
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        s_single.params,
        s_mesh.params,
    )


def test_a_batch_without_floating_point_inputs_steps():
    """Token-id batches (no float input) have nothing to check: the step still builds."""
    model, params, opt, _, batch = _setup()

    def loss_fn(p, b, rng):
        x = jax.nn.one_hot(b["ids"], 8)
        return jnp.mean((model.apply({"params": p}, x) - 1.0) ** 2), {}

    step = make_train_step(loss_fn, opt, donate=False)
    state, _ = step(create_train_state(params, opt, seed=0), {"ids": jnp.arange(16) % 8})
    assert int(state.step) == 1 and int(state.fault_leaf) == NO_FAULT


class _Deep(nn.Module):
    """40 Dense layers: 80 trainable leaves, each with its own finiteness flag."""

    @nn.compact
    def __call__(self, x):
        for i in range(40):
            x = jnp.tanh(layers.dense(8, ("embed", "mlp"), name=f"d{i}")(x))
        return x.sum(-1)


def test_the_apply_flag_is_computed_once_not_in_every_leaf_update():
    """The fault check's flag (every leaf finite, the loss finite, no earlier fault) is one
    scalar: XLA must not copy its and-chain over the leaves into each leaf's
    ``where(apply, new, old)`` fusion, which grows the step's code with leaves x leaves and
    doubled the tiny VA-GPT step's compile time."""
    model = _Deep()
    x = jnp.ones((4, 8))
    params = nn.unbox(model.init(jax.random.key(0), x)["params"])
    n_leaves = len(jax.tree.leaves(params))
    opt = make_optimizer({"name": "adamw", "lr": 1e-3}, params)
    step = make_train_step(
        lambda p, b, rng: (jnp.mean(model.apply({"params": p}, b["x"]) ** 2), {}),
        opt,
        donate=False,
    )
    state = create_train_state(params, opt, seed=0)
    hlo = step.lower(state, {"x": x}).compile().as_text()
    n_and = sum(" and(" in line for line in hlo.splitlines())
    # measured: 326 `and` ops for these 80 leaves (one chain over the leaves, a few per op);
    # 20,170 when the chain was copied into each updated array (params, both Adam moments)
    assert n_and < 10 * n_leaves, n_and
