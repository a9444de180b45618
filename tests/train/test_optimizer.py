"""Schedules, regex freezing and param groups."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vau_jax.train.optimizer import make_optimizer, make_schedule, param_labels


def _params():
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "img": {"proj": {"kernel": jax.random.normal(k[0], (4, 4)), "bias": jnp.zeros(4)}},
        "llm": {"lm_head": {"kernel": jax.random.normal(k[1], (4, 3))}},
        "projector": {"kernel": jax.random.normal(k[2], (4, 4))},
    }


def test_warmup_cosine_schedule_values():
    s = make_schedule({"lr": 1.0, "warmup_steps": 10, "total_steps": 110, "end_lr_ratio": 0.1})
    assert float(s(0)) == 0.0
    np.testing.assert_allclose(float(s(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(s(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(s(60)), 0.1 + 0.9 * 0.5, rtol=1e-5)  # half-way down the cosine
    np.testing.assert_allclose(float(s(110)), 0.1, rtol=1e-5)
    with pytest.raises(ValueError, match="warmup_steps"):
        make_schedule({"lr": 1.0, "warmup_steps": 10, "total_steps": 10})


def test_labels_freeze_groups_and_typos():
    cfg = {"freeze": [r"^img/"], "groups": [{"pattern": r"^projector/", "lr_mult": 10.0}]}
    labels = param_labels(_params(), cfg)
    assert labels["img"]["proj"]["kernel"] == "frozen"
    assert labels["projector"]["kernel"] == "group0"
    assert labels["llm"]["lm_head"]["kernel"] == "default"
    with pytest.raises(ValueError, match="matches no parameter"):
        param_labels(_params(), {"freeze": [r"^vision_tower/"]})


def test_frozen_params_bit_identical_and_no_state():
    params = _params()
    opt = make_optimizer(
        {
            "name": "adamw",
            "lr": 1e-2,
            "weight_decay": 0.1,
            "freeze": [r"^img/"],
            "grad_clip_norm": 1.0,
        },
        params,
    )
    state = opt.tx.init(params)
    p = params
    for i in range(5):
        grads = jax.tree.map(lambda x, v=0.3 + i: jnp.full_like(x, v), p)
        updates, state = opt.tx.update(grads, state, p)
        p = optax.apply_updates(p, updates)
    for path in (("img", "proj", "kernel"), ("img", "proj", "bias")):
        a, b = params, p
        for k in path:
            a, b = a[k], b[k]
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(
        np.asarray(params["llm"]["lm_head"]["kernel"]), np.asarray(p["llm"]["lm_head"]["kernel"])
    )


def test_group_lr_multiplier_sgd():
    params = _params()
    cfg = {"name": "sgd", "lr": 0.1, "groups": [{"pattern": r"^projector/", "lr_mult": 10.0}]}
    opt = make_optimizer(cfg, params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.tx.update(grads, opt.tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["llm"]["lm_head"]["kernel"]), -0.1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["projector"]["kernel"]), -1.0, rtol=1e-6)


def test_frozen_grads_excluded_from_clipping():
    params = _params()
    opt = make_optimizer(
        {"name": "sgd", "lr": 1.0, "freeze": [r"^img/"], "grad_clip_norm": 1.0}, params
    )
    grads = jax.tree.map(jnp.zeros_like, params)
    grads["img"]["proj"]["kernel"] = jnp.full((4, 4), 1e6)  # huge but frozen
    grads["projector"]["kernel"] = jnp.full((4, 4), 0.01)  # norm 0.04 < 1: must not be scaled
    updates, _ = opt.tx.update(grads, opt.tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["projector"]["kernel"]), -0.01, rtol=1e-6)
