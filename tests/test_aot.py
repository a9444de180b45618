"""Ahead-of-time compilation for TPU topologies (``vau_jax.aot``).

The compile tests need libtpu (the ``tpu`` extra; ``.ci/run`` runs this file in its own
virtualenv with it) and are skipped with the reason otherwise. One preset x one topology
runs by default; the rest is marked ``aot_full`` (deselected in CI, run for the notes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax import aot

needs_libtpu = pytest.mark.skipif(
    not aot.libtpu_available(), reason="libtpu is not installed (pip install -e '.[tpu]')"
)


def test_topology_names_and_the_oom_message():
    assert aot.topology("v5e-8").hbm_bytes == 16 * aot.GIB
    assert aot.topology("v5p-8").chips_per_host_bounds == (2, 2, 1)
    with pytest.raises(ValueError, match="unknown topology 'v9-1'; known: v5e-8"):
        aot.topology("v9-1")
    msg = (
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (32.00G) exceeds available HBM (15.75G)."
    )
    assert aot._oom_bytes(msg) == 32 * aot.GIB
    assert aot._oom_bytes("RESOURCE_EXHAUSTED: something else") is None
    msg = "Ran out of memory in memory space hbm. Used 15.75G of 15.75G hbm. Exceeded hbm "
    assert aot._oom_bytes(msg + "capacity by 683.0K.") == int(15.75 * aot.GIB + 683 * 1024)


def test_format_table_marks_what_does_not_fit():
    rows = [
        dict(step="s1", topology="v5e-8", devices=8, per_device_bytes=3 * aot.GIB,
             peak_bytes=2 * aot.GIB, hbm_bytes_per_device=16 * aot.GIB, fits=True,
             flops_per_step=2e12, step_seconds_at_40pct_mfu=0.5),
        dict(step="s2", topology="v5e-8", devices=8, per_device_bytes=None, peak_bytes=None,
             hbm_bytes_per_device=16 * aot.GIB, fits=False, flops_per_step=None,
             step_seconds_at_40pct_mfu=None),
    ]  # fmt: skip
    table = aot.format_table(rows).splitlines()
    assert table[2] == "| s1 | v5e-8 | 8 | 2.00 (16) | 3.00 | yes | 2.00 | 0.5 |"
    assert table[3] == "| s2 | v5e-8 | 8 | ? (16) | ? | NO | — | — |"


def test_jaxpr_flops_counts_matmuls_scans_and_convolutions():
    x, w = jnp.ones((8, 16)), jnp.ones((16, 32))
    assert aot.jaxpr_flops(jax.make_jaxpr(jnp.matmul)(x, w)) == 2 * 8 * 16 * 32
    sq = jnp.ones((16, 16))

    def looped(x):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ sq), None), x, None, length=4)[0]

    assert aot.jaxpr_flops(jax.make_jaxpr(looped)(jnp.ones((8, 16)))) == 4 * 2 * 8 * 16 * 16
    # the backward of a matmul is two more matmuls of the same size (x and w cotangents)
    grad = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(x @ w)))(w)
    assert aot.jaxpr_flops(grad) == 2 * 2 * 8 * 16 * 32
    img, k = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))  # NCHW, OIHW, SAME: [2, 4, 8, 8]
    conv = jax.make_jaxpr(lambda a, b: jax.lax.conv(a, b, (1, 1), "SAME"))(img, k)
    assert aot.jaxpr_flops(conv) == 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3)
    jitted = jax.make_jaxpr(jax.jit(jnp.matmul))(x, w)  # inside a pjit equation
    assert aot.jaxpr_flops(jitted) == 2 * 8 * 16 * 32


def test_compile_report_traces_without_the_cpu_per_row_kernel_gradients():
    """The TPU / GPU programs keep plain Dense kernel gradients (models/dense_grad.py is a
    CPU layout fix): compile_report traces and lowers with it off, whatever the host is."""
    import contextlib

    from vau_jax.models import dense_grad

    seen = []

    def body(x):
        seen.append(dense_grad.enabled())
        return x * 2

    topo = aot.Topology("fake", "none", (1, 1, 1), hbm_bytes=aot.GIB, peak_flops=1e12)
    arg = jax.ShapeDtypeStruct((4,), jnp.float32)
    step = aot.AotStep("s", jax.jit(body), (arg,), 0, 0, contextlib.nullcontext)
    with dense_grad.per_row_kernel_grads(True):
        row = aot.compile_report(step, topo, 1)
    assert seen == [False] and row["fits"] is True


@needs_libtpu
def test_compile_time_oom_is_a_row_not_a_traceback():
    topo = aot.topology("v5e-8")
    devices = topo.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("x",))
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    big = jax.ShapeDtypeStruct((65536, 65536), jnp.float32, sharding=rep)  # 16 GiB, replicated
    step = aot.AotStep("huge", jax.jit(lambda a: a * 2), (big,), 0, 0, lambda: jax.set_mesh(mesh))
    row = aot.compile_report(step, topo, len(devices))
    assert row["fits"] is False and row["per_device_bytes"] >= 16 * aot.GIB
    assert "RESOURCE_EXHAUSTED" in row["error"]


@needs_libtpu
def test_vadllama_paper_fits_v5e_8():
    """VAD-LLaMA's phases 1-2 and scoring at the paper's batch (8 videos x 16 clips of 16
    frames x 32 query tokens) on a v5e-8: per-device bytes under the chip's HBM; parameter
    counts from the compiled steps' trees."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
    import vadllama as vadllama_config

    c = vadllama_config.get_config("paper")
    c.phase3.enabled = False  # phase 3's Vicuna-7B steps: test_paper_llm_steps_fit (aot_full)
    rows = aot.report(c, ["v5e-8"])
    assert [r["step"] for r in rows] == ["phase1", "phase2", "score"]
    for r in rows:
        assert r["fits"] and 0 < r["per_device_bytes"] < r["hbm_bytes_per_device"], r
        assert r["devices"] == 8 and r["flops_per_step"] > 0
    # Video-LLaMA's video Q-Former (18,929,664 with its queries) + frame positions + AP,
    # the phase-1 AP copy and LTC
    assert rows[0]["params"] > 18_929_664
    assert 0 < rows[0]["trainable_params"] < rows[1]["trainable_params"] < rows[0]["params"]


def _paper(name: str):
    import importlib
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))
    return importlib.import_module(name).get_config("paper")


@needs_libtpu
@pytest.mark.aot_full
@pytest.mark.parametrize(
    "name, steps",
    [
        ("vagpt", ["stage1", "stage2", "generate"]),
        ("vadllama", ["phase1", "phase2", "score", "phase3", "phase3_generate"]),
        ("tvau", ["ahd", "rae_narration", "rae_anomaly", "generate"]),
    ],
)
def test_paper_llm_steps_fit(name, steps):
    """Every step of the presets with Vicuna-7B (VA-GPT's full fine-tuning, VAD-LLaMA's
    phase 3 and T-VAU's RAE through the frozen LVLM) fits a v5e-8 chip's 16 GiB at the
    paper's global batch (tens of minutes of compiling on 2 cores: not in CI)."""
    rows = aot.report(_paper(name), ["v5e-8"])
    assert [r["step"] for r in rows] == steps
    for r in rows:
        assert r["fits"] and 0 < r["per_device_bytes"] < r["hbm_bytes_per_device"], r
        assert r["flops_per_step"] > 0


def test_cli_errors_are_one_line_and_exit_2(monkeypatch, capsys):
    import ml_collections

    config = ml_collections.ConfigDict({"method": "vagpt", "mesh": {"data": -1}})
    monkeypatch.setattr(aot, "libtpu_available", lambda: False)
    assert aot.run(config, ["v5e-8"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: vau_jax.aot: libtpu is not installed (pip install -e '.[tpu]')"
    ]
    monkeypatch.setattr(aot, "libtpu_available", lambda: True)
    assert aot.run(config, ["v9-1"]) == 2  # the topology is checked before any compile
    assert capsys.readouterr().err.splitlines() == [
        "error: vagpt: unknown topology 'v9-1'; known: v5e-8, v5e-16, v5e-256, v5p-8, v4-8, v6e-8, "
        "h100-8"
    ]
