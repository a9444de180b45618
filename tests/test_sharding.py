"""Mesh construction and logical -> mesh specs (model-level equality tests live beside the models)."""

import jax
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from vau_jax import sharding
from vau_jax.models import layers


def test_make_mesh_shapes_and_auto_axes():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    mesh = sharding.make_mesh({"data": -1, "tensor": 2})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(ValueError, match="needs 16 devices"):
        sharding.make_mesh({"data": 4, "fsdp": 2, "tensor": 2})
    with pytest.raises(ValueError, match="unknown mesh axes"):
        sharding.make_mesh({"model": 2})


def test_spec_for_divisibility_and_axis_reuse():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    spec, notes = sharding.spec_for((64, 128), ("embed", "mlp"), mesh)
    assert spec == P("fsdp", "tensor") and not notes
    spec, notes = sharding.spec_for((63, 128), ("embed", "mlp"), mesh)
    assert spec == P(None, "tensor") and "not divisible" in notes[0]
    # the same mesh axis is never used twice in one spec
    spec, _ = sharding.spec_for((64, 64), ("mlp", "heads"), mesh)
    assert spec == P("tensor", None)
    with pytest.raises(KeyError, match="no sharding rule"):
        sharding.spec_for((4,), ("nonsense",), mesh)


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = layers.dense(32, ("embed", "mlp"), name="fc1")(x)
        return layers.dense(16, ("mlp", "embed"), name="fc2")(jax.nn.relu(x))


def test_init_sharded_places_params_and_matches_unsharded():
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    x = jax.random.normal(jax.random.key(1), (8, 16))
    module = _Tiny()
    params = sharding.init_sharded(module, jax.random.key(0), x, mesh=mesh)
    assert params["fc1"]["kernel"].sharding.spec == P("fsdp", "tensor")
    # Same numbers as the unsharded jitted init (eager init may differ by 1 ulp).
    ref = jax.jit(lambda: nn.unbox(module.init(jax.random.key(0), x)["params"]))()
    np.testing.assert_array_equal(
        np.asarray(params["fc1"]["kernel"]), np.asarray(ref["fc1"]["kernel"])
    )
    y_sharded = jax.jit(module.apply)(
        {"params": params}, jax.device_put(x, sharding.data_sharding(mesh, 2))
    )
    y_ref = module.apply({"params": ref}, x)
    np.testing.assert_allclose(np.asarray(y_sharded), np.asarray(y_ref), rtol=1e-5, atol=1e-6)


def test_param_shardings_rejects_unnamed_params():
    class Bare(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4)(x)

    abstract = jax.eval_shape(lambda: Bare().init(jax.random.key(0), np.zeros((1, 3))))["params"]
    with pytest.raises(ValueError, match="no logical axis names"):
        sharding.param_shardings(abstract, sharding.make_mesh({"data": 8}))


def test_vicuna_7b_sharding_every_param_divisible():
    """Full-size Vicuna-7B under eval_shape (no memory) on a (1, 4, 2) mesh."""
    from vau_jax.models import registry

    mesh = sharding.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
    abstract = registry.abstract_params("vicuna-7b")
    shardings = sharding.param_shardings(abstract, mesh)
    boxes = jax.tree.leaves(abstract, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    specs = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
    assert len(boxes) == len(specs) == 32 * 9 + 3
    sharded_bytes = 0
    for box, s in zip(boxes, specs):
        shape = box.value.shape
        assert len(s.spec) <= len(shape)
        for dim, axes in zip(shape, s.spec):
            if axes is None:
                continue
            axes = (axes,) if isinstance(axes, str) else axes
            size = int(np.prod([mesh.shape[a] for a in axes]))
            assert dim % size == 0, (shape, s.spec)
        if any(a is not None for a in s.spec):
            sharded_bytes += int(np.prod(shape)) * 4
    # Everything but the RMSNorm scales is split over all 8 devices (fsdp x tensor).
    assert sharded_bytes / (6_738_415_616 * 4) > 0.999
    q = shardings["model"]["layers_0"]["self_attn"]["q_proj"]["kernel"].spec
    assert q == P("fsdp", "tensor")


@pytest.mark.slow
def test_compiled_vicuna_width_step_shards_batch_and_weights():
    """Ahead of time, abstract inputs only: the compiled train step of a Vicuna-7B-width
    LLaMA (every matrix at paper size; 2 of its 32 identical blocks, to bound compile time)
    on the 8 forced devices takes and returns its weights split as the rules say (FSDP x
    tensor, never gathered into the output), reads the batch split over data x fsdp, and the
    compiled forward's logits stay split over data x fsdp: read from the executable's own
    shardings, not from the config."""
    import dataclasses

    from vau_jax.models import registry
    from vau_jax.models.llama import LlamaForCausalLM
    from vau_jax.models.vlm import lm_loss
    from vau_jax.train.context import activation_context
    from vau_jax.train.optimizer import make_optimizer
    from vau_jax.train.state import abstract_train_state
    from vau_jax.train.step import make_train_step

    cfg = dataclasses.replace(registry.get_config("vicuna-7b"), num_hidden_layers=2)
    lm = LlamaForCausalLM(cfg)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    b, n = 8, 64
    boxed = jax.eval_shape(lambda: lm.init(jax.random.key(0), np.zeros((1, 8), np.int32)))
    boxed = boxed["params"]
    pshard = sharding.param_shardings(boxed, mesh)
    params = nn.unbox(boxed)
    opt = make_optimizer({"name": "adamw", "lr": 1e-4}, params)
    state = abstract_train_state(params, opt, 0, pshard, mesh)
    bshard = sharding.data_sharding(mesh, 2)
    batch = {k: jax.ShapeDtypeStruct((b, n), d, sharding=bshard)
             for k, d in (("input_ids", np.int32), ("mask", bool))}  # fmt: skip

    def loss_fn(p, batch, rng):
        logits = lm.apply({"params": p}, batch["input_ids"])["logits"]
        return lm_loss(logits, batch["input_ids"], batch["mask"])

    step = make_train_step(loss_fn, opt, state_sharding=jax.tree.map(lambda s: s.sharding, state),
                           batch_sharding={k: bshard for k in batch}, donate=False)  # fmt: skip
    with activation_context(mesh, sharding.DEFAULT_RULES):
        compiled = step.lower(state, batch).compile()
        fwd = jax.jit(lambda p, x: lm.apply({"params": p}, x)["logits"])
        fwd_compiled = fwd.lower(
            jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                         params, pshard), jax.ShapeDtypeStruct((b, n), np.int32, sharding=bshard)
        ).compile()  # fmt: skip
    (state_in, batch_in), _ = compiled.input_shardings
    state_out, _ = compiled.output_shardings
    q = ("model", "layers_0", "self_attn", "q_proj", "kernel")
    pick = lambda tree: tree[q[0]][q[1]][q[2]][q[3]][q[4]]  # noqa: E731
    assert pick(state_in.params).spec == P("fsdp", "tensor")
    assert pick(state_out.params).spec == P("fsdp", "tensor")  # updated in place, still split
    down = state_in.params["model"]["layers_1"]["mlp"]["down_proj"]["kernel"]
    assert down.spec == P("tensor", "fsdp")
    for s in jax.tree.leaves(batch_in):
        assert s.spec == P(("data", "fsdp"), None)
    logits = fwd_compiled.output_shardings
    assert logits.spec[0] == ("data", "fsdp"), logits.spec  # activations split by the batch
    # per device the step's arguments are 1/4 of the f32 weights and of Adam's two moments
    # (split over fsdp x tensor = 4; the data axis holds copies) plus the batch and scalars
    mem = compiled.memory_analysis()
    weights = sum(int(np.prod(x.shape)) * 4 for x in jax.tree.leaves(params))
    assert 3 * weights / 4 <= mem.argument_size_in_bytes < 3 * weights / 4 * 1.0001
