"""Orbax training checkpoints: round trip, keep-N, resume order, partial init by regex."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vau_jax.train.checkpoint import Checkpointer, abstract_like, load_partial, resolve_start
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.step import create_train_state
from vau_jax.tree import CheckpointMismatchError


def _state(seed=0):
    params = {
        "enc": {"kernel": jax.random.normal(jax.random.key(seed), (4, 3)), "bias": jnp.zeros(3)}
    }
    opt = make_optimizer({"name": "adamw", "lr": 1e-3}, params)
    return create_train_state(params, opt, seed=seed)


def test_roundtrip_and_keep_n(tmp_path):
    ck = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    states = {s: _state(seed=s) for s in (1, 2, 3)}
    for s, st in states.items():
        ck.save(s, st, {"stage": "phase1", "stage_step": s, "data": {"next_index": 10 * s}})
    ck.wait()
    assert ck.all_steps() == [2, 3]
    restored, meta = ck.restore(abstract_like(_state()))
    assert meta == {"stage": "phase1", "stage_step": 3, "data": {"next_index": 30}}
    jax.tree.map(np.testing.assert_array_equal, restored, states[3])
    ck.close()


def test_resolve_start_order(tmp_path):
    cfg = ml_collections.ConfigDict({"resume": "", "init_from": ""})
    assert resolve_start(str(tmp_path), cfg).kind == "scratch"
    cfg.init_from = "some/converted"
    assert resolve_start(str(tmp_path), cfg).kind == "init_from"
    other = tmp_path / "other_run"
    other.mkdir()
    cfg.resume = str(other)
    assert resolve_start(str(tmp_path), cfg).kind == "resume"
    ck = Checkpointer(str(tmp_path / "checkpoints"))
    ck.save(0, _state(), {"stage": "a"})
    ck.close()
    start = resolve_start(str(tmp_path), cfg)
    assert start.kind == "workdir" and start.path.endswith("checkpoints")
    cfg.resume = str(tmp_path / "missing")
    ck_dir = tmp_path / "fresh"
    with pytest.raises(FileNotFoundError, match="config.resume"):
        resolve_start(str(ck_dir), cfg)


def test_load_partial_by_regex_and_errors():
    params = {"img": {"fc": {"kernel": np.zeros((2, 3))}}, "head": {"kernel": np.zeros((3, 1))}}
    source = {"vision_model": {"fc": {"kernel": np.ones((2, 3))}}}
    new, loaded = load_partial(params, source, [(r"^img/(.*)", r"vision_model/\1")])
    assert loaded == ["img/fc/kernel"]
    np.testing.assert_array_equal(new["img"]["fc"]["kernel"], 1.0)
    np.testing.assert_array_equal(new["head"]["kernel"], 0.0)
    bad = {"vision_model": {"fc": {"kernel": np.ones((2, 4))}}}
    with pytest.raises(CheckpointMismatchError, match=r"\(2, 3\).*\(2, 4\)"):
        load_partial(params, bad, [(r"^img/(.*)", r"vision_model/\1")])
    with pytest.raises(CheckpointMismatchError, match="matches no model parameter"):
        load_partial(params, source, [(r"^llm/(.*)", r"\1")])


@pytest.mark.slow
def test_checkpoint_from_8_devices_restores_onto_4_and_1(tmp_path):
    """A train state saved FSDP-sharded over 8 devices restores onto a 4-device and a
    1-device mesh with identical values and the target shardings (orbax reshards on read)."""
    from flax import linen as nn

    from vau_jax import sharding
    from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM

    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16)  # fmt: skip
    lm = LlamaForCausalLM(cfg)
    ids = jnp.zeros((1, 8), jnp.int32)
    boxed = jax.eval_shape(lambda: lm.init(jax.random.key(0), ids))["params"]

    def state_on(mesh):
        shard = sharding.param_shardings(boxed, mesh)
        init = jax.jit(lambda k: nn.unbox(lm.init(k, ids)["params"]), out_shardings=shard)
        params = init(jax.random.key(1))
        opt = make_optimizer({"name": "adamw", "lr": 1e-3}, params)
        return create_train_state(params, opt, seed=0)

    big = sharding.make_mesh({"fsdp": 8})
    saved = state_on(big)
    kernel = saved.params["model"]["layers_0"]["mlp"]["up_proj"]["kernel"]
    assert kernel.sharding.shard_shape(kernel.shape)[0] * 8 == kernel.shape[0]  # split 8 ways
    ck = Checkpointer(str(tmp_path / "ckpt"))
    ck.save(5, saved, {"stage": "s"})
    ck.wait()
    host = jax.device_get(saved)
    for n in (4, 1):
        mesh = sharding.make_mesh({"fsdp": n}, devices=jax.devices()[:n])
        target = abstract_like(state_on(mesh))  # shapes, dtypes and this mesh's shardings
        restored, meta = ck.restore(target)
        assert meta["stage"] == "s"
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), host)
        for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
            assert got.sharding == want.sharding
        for leaf in jax.tree.leaves(restored.params):  # the parameters live on the n devices
            assert len(leaf.sharding.device_set) == n
    ck.close()
