"""Non-finite steps are recorded on device and read only at log/checkpoint boundaries.

- a NaN in one parameter's gradient, or an inf in the inputs, stops the run at the next
  boundary with the global step and the leaf named, and nothing after the fault is saved;
- the last checkpoint before the fault restores cleanly (finite, no fault recorded);
- steps that neither log nor checkpoint make no device->host transfer. XLA:CPU reads device
  arrays zero-copy, so ``jax.transfer_guard_device_to_host`` never fires here; the
  ``host_reads`` fixture emulates what GPU/TPU do (a read under the guard raises).
"""

import contextlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vau_jax.train.trainer as trainer_mod
from tests.train.toy_method import ToyMethod, config
from vau_jax.train.state import NO_FAULT
from vau_jax.train.trainer import Trainer


@pytest.fixture
def host_reads(monkeypatch):
    """Every device->host read of a ``jax.Array`` -> the guard level it ran under (a list);
    a read under a disallowing guard raises, as on GPU/TPU."""
    cls = type(jnp.zeros(()))
    value, copy_async = cls.__dict__["_value"], cls.copy_to_host_async
    levels = []

    def check():
        level = jax.config.jax_transfer_guard_device_to_host
        levels.append(level)
        if level in ("disallow", "disallow_explicit"):
            raise RuntimeError("Disallowed device-to-host transfer (emulated on CPU)")

    monkeypatch.setattr(cls, "_value", property(lambda self: (check(), value.fget(self))[1]))
    monkeypatch.setattr(cls, "copy_to_host_async", lambda self: (check(), copy_async(self))[1])
    return levels


def _count_guards(monkeypatch):
    entered = []
    real = trainer_mod.no_host_sync

    @contextlib.contextmanager
    def counting():
        entered.append(1)
        with real():
            yield

    monkeypatch.setattr(trainer_mod, "no_host_sync", counting)
    return entered


def _train_logged(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line)["step"] for line in f if json.loads(line)["split"] == "train"]


def test_quiet_steps_make_no_host_transfer(tmp_path, monkeypatch, host_reads):
    entered = _count_guards(monkeypatch)
    trainer = Trainer(ToyMethod(steps=8, log_every=4, checkpoint_every=4), config(), str(tmp_path))
    params = trainer.train()
    trainer.close()
    # Per stage: steps 4 and 8 are boundaries, step 1 compiles; 2, 3, 5, 6, 7 are quiet.
    assert len(entered) == 2 * 5
    assert host_reads, "the emulation saw no read at all (boundaries read the metrics)"
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    assert _train_logged(tmp_path) == [4, 8, 12, 16]


def test_a_per_step_host_read_is_caught(tmp_path, monkeypatch, host_reads):
    """The old loop read ``float(loss)`` after every step: under the guard that raises."""
    real = trainer_mod.make_train_step

    def make_reading_step(*args, **kwargs):
        step = real(*args, **kwargs)

        def reading_step(state, batch):
            state, metrics = step(state, batch)
            math.isfinite(float(metrics["loss"]))  # the old per-step finiteness check
            return state, metrics

        return reading_step

    monkeypatch.setattr(trainer_mod, "make_train_step", make_reading_step)
    trainer = Trainer(ToyMethod(steps=8, log_every=4, checkpoint_every=4), config(), str(tmp_path))
    with pytest.raises(RuntimeError, match="Disallowed device-to-host transfer"):
        trainer.train()
    trainer.close()
    assert "disallow_explicit" in host_reads


def _run_to_fault(workdir, script, match):
    method = ToyMethod(steps=6, log_every=4, checkpoint_every=2, script=script)
    trainer = Trainer(method, config(), str(workdir))
    with pytest.raises(FloatingPointError, match=match):
        trainer.train()
    steps = trainer.ckpt.all_steps()
    state = trainer._restore(trainer.ckpt, method.stages())[1]
    trainer.close()
    return steps, state


def test_nan_in_one_gradient_stops_naming_global_step_and_leaf(tmp_path):
    # Stage 2 ("finetune", enc/ frozen), its step 3 = global step 9; the next boundary is
    # stage step 4 (log + checkpoint): the run stops there, before saving.
    steps, state = _run_to_fault(
        tmp_path, {(1, 3): "nan_grad"}, r"step 9: the gradient of 'head/kernel' is not finite"
    )
    assert max(steps) == 8  # 6 = end of stage 1, 8 = stage step 2; never 10 (after the fault)
    assert int(state.step) == 2 and int(state.fault_leaf) == NO_FAULT
    for leaf in jax.tree.leaves((state.params, state.opt_state)):
        assert np.isfinite(np.asarray(leaf)).all()
    assert max(_train_logged(tmp_path)) == 6  # stage 2's step-4 metrics were not written


def test_inf_in_inputs_stops_and_last_checkpoint_is_clean(tmp_path):
    # An inf input saturates tanh (the loss stays finite, the first-layer gradient is NaN);
    # the input is reported, being the first cause.
    steps, state = _run_to_fault(
        tmp_path, {(0, 3): "inf_input"}, r"step 3: the input 'x' is not finite"
    )
    assert steps == [2]
    assert int(state.step) == 2 and int(state.fault_step) == -1
    for leaf in jax.tree.leaves((state.params, state.opt_state)):
        assert np.isfinite(np.asarray(leaf)).all()
    assert not (tmp_path / "metrics.jsonl").exists() or _train_logged(tmp_path) == []
