"""Steps run inside the mesh + logical-axis rules: activation constraints really shard.

The probe's weight has logical names that the rules leave replicated, so nothing but the
activation constraint ``("batch", "mlp")`` can put its hidden layer on the ``tensor`` axis.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from vau_jax import sharding as shd
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.models import layers
from vau_jax.train.context import activation_context
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.state import create_train_state
from vau_jax.train.step import make_train_step
from vau_jax.train.trainer import Stage, Trainer

RULES = [
    ("batch", "data"),
    ("embed", None),
    ("kv", None),
    ("mlp", "tensor"),
]
HIDDEN = P("data", "tensor")  # [B, 32] as the rules say


class _Probe(nn.Module):
    @nn.compact
    def __call__(self, x):  # [B, 8] -> [B, 32]
        init = layers.partitioned(nn.initializers.normal(0.1), ("embed", "kv"))
        w = self.param("w", init, (8, 32))
        return layers.constrain(jnp.tanh(x @ w), ("batch", "mlp"))


SEEN: list = []  # the hidden layer's sharding spec, once per trace of the loss


class ProbeMethod:
    name = "probe"

    def __init__(self):
        self.model = _Probe()

    def abstract_params(self):
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), jnp.zeros((1, 8))))[
            "params"
        ]

    def init_params(self, rng):
        return nn.unbox(self.model.init(rng, jnp.zeros((1, 8)))["params"])

    def loss(self, params, batch, rng):
        h = self.model.apply({"params": params}, batch["x"])
        jax.debug.inspect_array_sharding(h, callback=lambda s: SEEN.append(getattr(s, "spec", s)))
        return jnp.mean((h.sum(-1) - 1.0) ** 2), {}

    def stages(self):
        xs = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
        cfg = PipelineConfig(global_batch_size=8, seed=0, num_epochs=None, read_threads=1)
        source = [{"x": x} for x in xs]
        return [
            Stage(
                "probe",
                2,
                {"name": "sgd", "lr": 0.1},
                self.loss,
                lambda: make_iterator(source, cfg),
            )
        ]


def _config():
    return ml_collections.ConfigDict(
        {
            "seed": 0,
            "mesh": {"data": 4, "fsdp": 1, "tensor": 2},
            "sharding_rules": RULES,
            "resume": "",
            "init_from": "",
        }
    )


def test_trainer_steps_shard_constrained_activations(tmp_path):
    SEEN.clear()
    t = Trainer(ProbeMethod(), _config(), str(tmp_path))
    t.train()
    t.close()
    assert SEEN and all(spec == HIDDEN for spec in SEEN), SEEN


def _step_and_inputs():
    mesh = shd.make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
    method = ProbeMethod()
    params = method.init_params(jax.random.key(0))
    opt = make_optimizer({"name": "sgd", "lr": 0.1}, params)
    step = make_train_step(method.loss, opt, donate=False)
    x = jax.device_put(jnp.ones((8, 8)), shd.data_sharding(mesh, 2))
    return mesh, step, create_train_state(params, opt, 0), {"x": x}


def test_without_the_context_the_constraint_is_a_no_op():
    """The old behaviour (a step called outside the context) leaves ``tensor`` unused."""
    mesh, step, state, batch = _step_and_inputs()
    SEEN.clear()
    step(state, batch)
    assert SEEN and all(spec != HIDDEN for spec in SEEN), SEEN
    assert not any("tensor" in str(spec) for spec in SEEN)

    _, step, _, _ = _step_and_inputs()  # a new jit: traced again, now in the context
    SEEN.clear()
    with activation_context(mesh, shd.rules_from_config(_config())):
        step(state, batch)
    assert SEEN and all(spec == HIDDEN for spec in SEEN), SEEN
