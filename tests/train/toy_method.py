"""A tiny two-stage regression method for trainer tests (and a script entry point).

    python tests/train/toy_method.py WORKDIR [--steps=N] [--sleep=SECONDS]

trains and writes WORKDIR/final_params.npz.

Scripted trouble for the fault and resume tests: ``ToyMethod(script={(stage, step): what})``
with ``what`` one of ``"nan_grad"`` (the gradient of ``head/kernel`` is NaN at that step, the
loss stays finite), ``"inf_input"`` (an inf in ``x``) or ``"crash"`` (the data iterator raises
before that step's batch: an interruption). ``stage`` is 0-based, ``step`` 1-based in it.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.models import layers
from vau_jax.train.trainer import Stage


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):  # [B, 8] -> [B]
        h = layers.dense(32, ("embed", "mlp"), name="enc")(x)
        return layers.dense(1, ("mlp", "embed"), name="head")(jnp.tanh(h))[..., 0]


def _source(n=64):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(n, 8)).astype(np.float32)
    ys = np.sin(xs.sum(-1)).astype(np.float32)
    return [{"x": xs[i], "y": ys[i]} for i in range(n)]


def poison_grad(x, flag):
    """Identity whose gradient is NaN when ``flag`` (a bool scalar) is true."""

    @jax.custom_vjp
    def f(x):
        return x

    f.defvjp(lambda x: (x, None), lambda _, g: (jnp.where(flag, jnp.nan, g),))
    return f(x)


class Scripted:
    """Wraps a checkpointable batch iterator; adds ``bad [B]`` and plays the script."""

    def __init__(self, it, script):
        self.it, self.script, self.n = it, script, 0

    def __iter__(self):
        return self

    def __next__(self):
        what = self.script.get(self.n + 1)
        if what == "crash":
            raise RuntimeError(f"simulated crash before batch {self.n + 1}")
        batch = dict(next(self.it))
        self.n += 1
        batch["bad"] = np.full(len(batch["x"]), what == "nan_grad")
        if what == "inf_input":
            batch["x"] = batch["x"].copy()
            batch["x"][0, 0] = np.inf
        return batch

    def get_state(self):
        return {"inner": self.it.get_state(), "n": self.n}

    def set_state(self, state):
        self.it.set_state(state["inner"])
        self.n = int(state["n"])


class ToyMethod:
    name = "toy"

    def __init__(
        self,
        steps: int = 8,
        sleep: float = 0.0,
        batch: int = 8,
        *,
        log_every: int = 1,
        checkpoint_every: int = 2,
        script: dict | None = None,
    ):
        self.model, self.steps, self.sleep, self.batch = MLP(), steps, sleep, batch
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.script = script

    def abstract_params(self):
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), jnp.zeros((1, 8))))[
            "params"
        ]

    def init_params(self, rng):
        return nn.unbox(self.model.init(rng, jnp.zeros((1, 8)))["params"])

    def _loss(self, params, batch, rng):
        if self.sleep:
            jax.debug.callback(lambda: time.sleep(self.sleep))
        if "bad" in batch:
            head = {
                **params["head"],
                "kernel": poison_grad(params["head"]["kernel"], batch["bad"][0]),
            }
            params = {**params, "head": head}
        pred = self.model.apply({"params": params}, batch["x"])
        return jnp.mean((pred - batch["y"]) ** 2) + 0.0 * jax.random.uniform(rng), {}

    def _data(self, seed, stage):
        cfg = PipelineConfig(
            global_batch_size=self.batch, seed=seed, num_epochs=None, read_threads=1, prefetch=1
        )
        if self.script is None:
            return lambda: make_iterator(_source(), cfg)
        script = {step: what for (k, step), what in self.script.items() if k == stage}
        return lambda: Scripted(make_iterator(_source(), cfg), script)

    def stages(self):
        return [
            Stage(
                "warm",
                self.steps,
                {"name": "adamw", "lr": 3e-2},
                self._loss,
                self._data(1, 0),
                checkpoint_every=self.checkpoint_every,
                log_every=self.log_every,
            ),
            Stage(
                "finetune",
                self.steps,
                {"name": "sgd", "lr": 1e-2, "freeze": [r"^enc/"]},
                self._loss,
                self._data(2, 1),
                checkpoint_every=self.checkpoint_every,
                log_every=self.log_every,
            ),
        ]

    def evaluate(self, params, workdir):
        xs = np.stack([e["x"] for e in _source()])
        ys = np.stack([e["y"] for e in _source()])
        return {
            "mse": float(np.mean((np.asarray(self.model.apply({"params": params}, xs)) - ys) ** 2))
        }


def config(**kw):
    c = ml_collections.ConfigDict(
        {"seed": 0, "mesh": {"data": -1, "fsdp": 1, "tensor": 1}, "resume": "", "init_from": ""}
    )
    c.update(kw)
    return c


if __name__ == "__main__":
    from vau_jax import distributed
    from vau_jax.train.trainer import Trainer

    workdir = sys.argv[1]
    opts = dict(a.lstrip("-").split("=") for a in sys.argv[2:])
    distributed.initialize()
    method = ToyMethod(steps=int(opts.get("steps", 8)), sleep=float(opts.get("sleep", 0)))
    trainer = Trainer(method, config(), workdir)
    params = trainer.train()
    trainer.close()
    if jax.process_index() == 0:
        flat = {
            "/".join(str(getattr(k, "key", k)) for k in p): np.asarray(jax.device_get(v))
            for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
        }
        np.savez(os.path.join(workdir, "final_params.npz"), **flat)
