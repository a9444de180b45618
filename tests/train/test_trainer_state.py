"""Restoring builds no random init; every state leaf has an explicit sharding; init_from
needs an injected loader (the trainer knows no converter)."""

import jax
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from tests.train.toy_method import ToyMethod, config
from vau_jax import sharding as shd
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.state import (
    TrainState,
    abstract_train_state,
    init_train_state,
    state_shardings,
)
from vau_jax.train.trainer import Trainer


def _mesh():
    return shd.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})


def _specs(tree):
    return {
        jax.tree_util.keystr(p): x.sharding.spec
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _no_init(rng):
    raise AssertionError("init_params called while restoring")


def test_state_shardings_moments_follow_params():
    mesh = _mesh()
    method = ToyMethod()
    boxed = method.abstract_params()
    p_shard = shd.param_shardings(boxed, mesh)
    abstract = nn.unbox(boxed)
    opt = make_optimizer({"name": "adamw", "lr": 1e-3, "freeze": [r"^head/bias$"]}, abstract)
    state = abstract_train_state(abstract, opt, 0, p_shard, mesh)
    specs = _specs(state)
    kernel = P("fsdp", "tensor")  # enc/kernel: ("embed", "mlp") -> (fsdp, tensor)
    assert specs[".params['enc']['kernel']"] == kernel
    mu = [k for k in specs if k.endswith(".mu['enc']['kernel']")]
    nu = [k for k in specs if k.endswith(".nu['enc']['kernel']")]
    assert len(mu) == len(nu) == 1
    assert specs[mu[0]] == specs[nu[0]] == kernel
    assert specs[".step"] == specs[".rng"] == specs[".fault_step"] == specs[".fault_leaf"] == P()
    counts = [v for k, v in specs.items() if k.endswith(".count")]
    assert counts and all(v == P() for v in counts)
    assert not any("['head']['bias']" in k and "opt_state" in k for k in specs)  # frozen

    # A fresh state gets exactly these shardings (out_shardings), params kept as they are.
    params = jax.jit(method.init_params, out_shardings=p_shard)(jax.random.key(0))
    sharding = jax.tree.map(lambda a: a.sharding, state)
    fresh = init_train_state(params, opt, 0, sharding)
    assert _specs(fresh) == specs
    assert fresh.params["enc"]["kernel"] is params["enc"]["kernel"]


def test_moment_of_other_shape_is_replicated():
    """A leaf that mirrors a param's path but not its shape (a factored moment) is replicated."""
    mesh = _mesh()
    w = jax.ShapeDtypeStruct((8, 4), np.float32)
    scalar = jax.ShapeDtypeStruct((), np.int32)
    st = TrainState(
        step=scalar,
        params={"w": w},
        opt_state=({"w": jax.ShapeDtypeStruct((8,), np.float32)}, {"w": w}, scalar),
        rng=scalar,
        fault_step=scalar,
        fault_leaf=scalar,
    )
    out = state_shardings(st, {"w": NamedSharding(mesh, P("fsdp", None))}, mesh)
    assert out.opt_state[0]["w"].spec == P()
    assert out.opt_state[1]["w"].spec == P("fsdp", None)
    assert out.opt_state[2].spec == P()


@pytest.mark.slow
def test_restore_builds_no_init_and_resume_is_exact(tmp_path):
    """Interrupted mid stage 1 on a (2, 2, 2) mesh, resumed by a method whose
    ``init_params`` raises: same final params as the uninterrupted run, bit for bit."""
    mesh = _mesh()
    ref_t = Trainer(ToyMethod(steps=4), config(), str(tmp_path / "ref"), mesh=mesh)
    ref = ref_t.train()
    ref_t.close()

    work = str(tmp_path / "work")
    crashing = ToyMethod(steps=4, script={(0, 3): "crash"})  # after the step-2 checkpoint
    t1 = Trainer(crashing, config(), work, mesh=mesh)
    with pytest.raises(RuntimeError, match="simulated crash"):
        t1.train()
    t1.close()

    method = ToyMethod(steps=4, script={})
    method.init_params = _no_init
    t2 = Trainer(method, config(), work, mesh=mesh)
    k, state, meta = t2._restore(t2.ckpt, method.stages())
    assert (k, meta["stage_step"], meta["done"]) == (0, 2, False)
    specs = _specs(state)
    assert specs[".params['enc']['kernel']"] == P("fsdp", "tensor")
    for key, spec in specs.items():
        if key.endswith("['enc']['kernel']"):  # the param and its Adam mu / nu
            assert spec == P("fsdp", "tensor"), key
        if key.endswith(".count"):
            assert spec == P(), key
    for leaf in jax.tree.leaves(state):
        assert isinstance(leaf.sharding, NamedSharding)
    out = t2.train()
    np.testing.assert_array_equal(
        np.asarray(t2.restore_params()["head"]["kernel"]), np.asarray(out["head"]["kernel"])
    )
    t2.close()
    jax.tree.map(np.testing.assert_array_equal, out, ref)


def test_init_from_needs_an_injected_loader(tmp_path):
    method = ToyMethod(steps=2)
    method.init_from_rules = [(r"^enc/(.*)", r"encoder/\1")]
    cfg = config(init_from=str(tmp_path / "converted"))
    t = Trainer(method, cfg, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="no load_init"):
        t.train()
    t.close()

    source = {
        "encoder": {"kernel": np.full((8, 32), 0.5, np.float32), "bias": np.zeros(32, np.float32)}
    }
    seen = []
    t = Trainer(method, cfg, str(tmp_path / "b"), load_init=lambda p: seen.append(p) or source)
    k, s, params, _ = t._start(method.stages())
    t.close()
    assert (k, s, seen) == (0, 0, [str(tmp_path / "converted")])
    np.testing.assert_array_equal(np.asarray(params["enc"]["kernel"]), 0.5)
    assert params["enc"]["kernel"].sharding == t.param_sharding["enc"]["kernel"]
