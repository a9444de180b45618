"""Multi-stage trainer: stage boundaries, exact resumption after SIGKILL, multi-process."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
SCRIPT = os.path.join(HERE, "toy_method.py")
ROOT = os.path.dirname(os.path.dirname(HERE))


def _env(devices=1, **extra):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _losses(workdir):
    """Last logged loss per global step (re-run steps after a kill log twice)."""
    out = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] == "train":
                out[r["step"]] = r["loss"]
    return out


def _run(workdir, *args, devices=1, timeout=300):
    subprocess.run(
        [sys.executable, SCRIPT, str(workdir), *args],
        env=_env(devices),
        check=True,
        timeout=timeout,
    )
    return dict(np.load(os.path.join(workdir, "final_params.npz")))


@pytest.mark.slow
def test_sigkill_then_rerun_is_exact(tmp_path):
    ref = _run(tmp_path / "ref", "--steps=8")
    ref_losses = _losses(tmp_path / "ref")
    assert sorted(ref_losses) == list(range(1, 17))  # 2 stages x 8 steps, global numbering

    work = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, str(work), "--steps=8", "--sleep=0.3"], env=_env()
    )
    deadline = time.time() + 240
    while time.time() < deadline:  # kill mid stage 2, after step 11 was logged
        if os.path.exists(work / "metrics.jsonl") and max(_losses(work), default=0) >= 11:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(work / "final_params.npz")
    resumed = _run(work, "--steps=8")
    assert _losses(work) == ref_losses
    assert sorted(resumed) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(resumed[k], ref[k], err_msg=k)


def test_stage_boundary_checkpoint_and_frozen_stage(tmp_path):
    from tests.train.toy_method import ToyMethod, config
    from vau_jax.train.trainer import Trainer

    method = ToyMethod(steps=4)
    trainer = Trainer(method, config(), str(tmp_path))
    params = trainer.train()
    metas = {s: trainer.ckpt.read_meta(s) for s in trainer.ckpt.all_steps()}
    trainer.close()
    assert metas[8]["stage"] == "finetune" and metas[8]["done"]
    # Saves every 2 steps (2, 4 | 6, 8), the newest 3 kept: stage 1's boundary is step 4.
    assert sorted(metas) == [4, 6, 8]
    assert metas[4]["stage"] == "warm" and metas[4]["done"] and metas[4]["stage_step"] == 4
    assert metas[6]["stage"] == "finetune" and not metas[6]["done"]
    # Stage 2 freezes enc/: equal to its value at the end of stage 1 (rerun stage 1 alone).
    t1 = Trainer(ToyMethod(steps=4), config(), str(tmp_path / "stage1"))
    stage1 = t1.method.stages()[0]
    t1.method.stages = lambda: [stage1]
    p1 = t1.train()
    t1.close()
    np.testing.assert_array_equal(
        np.asarray(params["enc"]["kernel"]), np.asarray(p1["enc"]["kernel"])
    )
    assert not np.array_equal(
        np.asarray(params["head"]["kernel"]), np.asarray(p1["head"]["kernel"])
    )


@pytest.mark.multiprocess
@pytest.mark.slow
def test_two_processes_agree_with_single_process(tmp_path):
    ref = _run(tmp_path / "single", "--steps=4", devices=4)
    port = 20000 + os.getpid() % 20000
    procs = []
    for pid in range(2):
        env = _env(
            2,
            VAU_JAX_COORDINATOR=f"127.0.0.1:{port}",
            VAU_JAX_NUM_PROCESSES="2",
            VAU_JAX_PROCESS_ID=str(pid),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, SCRIPT, str(tmp_path / "multi"), "--steps=4"], env=env
            )
        )
    for p in procs:
        assert p.wait(timeout=300) == 0
    multi = dict(np.load(tmp_path / "multi" / "final_params.npz"))
    for k in ref:
        np.testing.assert_allclose(multi[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
    lm, ls = _losses(tmp_path / "multi"), _losses(tmp_path / "single")
    assert lm.keys() == ls.keys()
    np.testing.assert_allclose([lm[k] for k in sorted(lm)], [ls[k] for k in sorted(ls)], rtol=1e-5)


def _train_toy(workdir, steps_per_call, **method_kw):
    from tests.train.toy_method import ToyMethod, config
    from vau_jax.train.trainer import Trainer

    trainer = Trainer(ToyMethod(**method_kw), config(steps_per_call=steps_per_call), str(workdir))
    calls = []

    import vau_jax.train.trainer as trainer_module

    real = trainer_module.make_train_step

    def counting(*args, steps_per_call=1, **kw):  # counts the calls of each jitted step
        fn = real(*args, steps_per_call=steps_per_call, **kw)

        def call(state, batch):
            calls.append(steps_per_call)
            return fn(state, batch)

        return call

    trainer_module.make_train_step = counting
    try:
        params = trainer.train()
    finally:
        trainer_module.make_train_step = real
    metas = {s: trainer.ckpt.read_meta(s) for s in trainer.ckpt.all_steps()}
    trainer.close()
    return params, _losses(workdir), metas, calls


@pytest.mark.slow
@pytest.mark.parametrize("per_call", [3, 4])
def test_steps_per_call_equals_one_step_per_call(tmp_path, per_call):
    """Several optimizer steps per jitted call (a lax.scan over stacked batches) give the very
    params, logged losses and checkpoints of one step per call; calls stop at every log and
    checkpoint boundary, and a stretch shorter than steps_per_call runs one step per call."""
    kw = dict(steps=10, log_every=5, checkpoint_every=4)
    ref, ref_losses, ref_metas, ref_calls = _train_toy(tmp_path / "one", 1, **kw)
    got, losses, metas, calls = _train_toy(tmp_path / "many", per_call, **kw)
    assert ref_calls == [1] * 20
    # a stage of 10 steps, boundaries at 4, 5, 8, 10: stretches 4 | 1 | 3 | 2 (per_call 4:
    # one call of 4, then single steps) or 3 + 1 | 1 | 3 | 2 (per_call 3)
    expected = {4: [4, 1, 1, 1, 1, 1, 1], 3: [3, 1, 1, 3, 1, 1]}[per_call]
    assert calls == expected * 2
    assert losses == ref_losses and sorted(losses) == [5, 10, 15, 20]
    assert {s: m["stage_step"] for s, m in metas.items()} == {
        s: m["stage_step"] for s, m in ref_metas.items()
    }
    for a, b in zip(jax_leaves(ref), jax_leaves(got)):
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_steps_per_call_stops_at_a_nonfinite_step(tmp_path):
    """A NaN gradient inside a multi-step call is found at the call's end, named with its
    own step, and nothing after it is saved."""
    with pytest.raises(FloatingPointError, match=r"^step 6: the gradient of 'head/kernel'"):
        _train_toy(
            tmp_path / "nan", 4, steps=8, log_every=8, checkpoint_every=4,
            script={(0, 6): "nan_grad"},
        )  # fmt: skip
    from vau_jax.train.checkpoint import Checkpointer

    assert Checkpointer(str(tmp_path / "nan" / "checkpoints")).all_steps() == [4]
