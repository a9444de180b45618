"""Ahead-of-time compilation of a paper preset's steps for real TPU topologies.

    python -m vau_jax.aot --config=configs/<m>.py:paper --topology=v5e-8 [--topology=v5p-8 ...]
        [--out=FILE.json]

Every train step of the preset (each stage or phase) and its evaluation step is lowered with
the config's real batch, lengths and shardings on a mesh of the topology's devices, from
abstract inputs only (``jax.ShapeDtypeStruct``: no weights, no data), and compiled by XLA
for that chip (``pip install -e '.[tpu]'`` brings libtpu; no TPU is needed). The compiled
executable's ``memory_analysis()`` gives the bytes per device. A compile-time out-of-memory
(what the hardware would hit) is reported as ``fits: false`` with the bytes XLA's message
gives, not a traceback.

GPU clusters compile the same way without a GPU (``h100-8``: 8 H100s; ``pip install -e
'.[cuda12]'``; :mod:`vau_jax.aot_gpu`). XLA:GPU does not fail a compile over the device's
memory: ``fits`` compares its peak with the GPU's memory.

Per (step, topology) the JSON list has: ``step``, ``topology``, ``devices``,
``per_device_bytes`` (argument + output + temp − alias: an upper bound, as if every
argument and temporary were live at once), ``peak_bytes`` (XLA:TPU's own peak of its
buffer assignment: dead and donated buffers reused; what its HBM check uses; XLA:GPU
reports one too),
``argument_bytes``, ``output_bytes``, ``temp_bytes``, ``alias_bytes``,
``hbm_bytes_per_device``, ``fits`` (``peak_bytes``, where XLA gives one, else
``per_device_bytes``, within the HBM), ``flops_per_step`` (all devices: the step's matmul
and convolution FLOPs counted from its jaxpr with every scan body times its length,
:func:`jaxpr_flops`), ``xla_flops_per_step`` (``cost_analysis()`` x devices: XLA counts
each loop body once, so layer scans and gradient accumulation are undercounted; null on
GPU), ``params``, ``trainable_params`` and ``step_seconds_at_40pct_mfu``
(``flops_per_step`` / (devices × the chip's bf16 peak × 0.4)).

Methods list their steps in ``vau_jax/methods/<m>/aot.py:aot_steps(config, mesh)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from vau_jax.models.dense_grad import per_row_kernel_grads

GIB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Topology:
    """A Cloud TPU slice by its public name (``v5e-8``: 8 chips; ``v5p-8`` / ``v4-8``: 4
    chips, the name counts TensorCores). ``hbm_bytes`` per chip, ``peak_flops`` the chip's
    bf16 peak per second (Cloud TPU documentation)."""

    name: str
    topology_name: str
    chips_per_host_bounds: tuple[int, int, int]
    hbm_bytes: int
    peak_flops: float

    def devices(self) -> list[Any]:
        """The slice's TPU devices, from libtpu's topology description (no TPU needed)."""
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        from jax.experimental import topologies

        desc = topologies.get_topology_desc(
            platform="tpu",
            topology_name=self.topology_name,
            chip_config_name="default",
            chips_per_host_bounds=self.chips_per_host_bounds,
            num_slices=1,
            wrap=(False, False, False),
        )
        return list(desc.devices)


_V5E = dict(hbm_bytes=16 * GIB, peak_flops=197e12)
TOPOLOGIES: dict[str, Topology] = {
    "v5e-8": Topology("v5e-8", "v5e:2x4", (2, 2, 1), **_V5E),
    "v5e-16": Topology("v5e-16", "v5e:4x4", (2, 2, 1), **_V5E),
    "v5e-256": Topology("v5e-256", "v5e:16x16", (2, 2, 1), **_V5E),
    "v5p-8": Topology("v5p-8", "v5p:2x2x1", (2, 2, 1), 95 * GIB, 459e12),
    "v4-8": Topology("v4-8", "v4:2x2x1", (2, 2, 1), 32 * GIB, 275e12),
    "v6e-8": Topology("v6e-8", "v6e:2x4", (2, 2, 1), 32 * GIB, 918e12),
}


def topology(name: str) -> Any:
    """The :class:`Topology` of a Cloud TPU name, or the
    :class:`~vau_jax.aot_gpu.GpuTopology` of a GPU one (``h100-8``); ``ValueError`` listing
    the known ones otherwise."""
    from vau_jax.aot_gpu import GPU_TOPOLOGIES

    if name in GPU_TOPOLOGIES:
        return GPU_TOPOLOGIES[name]
    if name not in TOPOLOGIES:
        known = ", ".join([*TOPOLOGIES, *GPU_TOPOLOGIES])
        raise ValueError(f"unknown topology {name!r}; known: {known}")
    return TOPOLOGIES[name]


def compiler_missing(name: str) -> str | None:
    """What to install to compile for topology ``name`` (``None``: it is installed)."""
    from vau_jax.aot_gpu import GPU_TOPOLOGIES, cuda_plugin_available

    if name in GPU_TOPOLOGIES:
        ok = cuda_plugin_available()
        return None if ok else "the CUDA plugin is not installed (pip install -e '.[cuda12]')"
    return None if libtpu_available() else "libtpu is not installed (pip install -e '.[tpu]')"


def libtpu_available() -> bool:
    """Whether libtpu is installed (the ``tpu`` extra)."""
    import importlib.util

    return importlib.util.find_spec("libtpu") is not None


@dataclasses.dataclass
class AotStep:
    """One step to compile: ``fn`` (jitted, with its shardings) and its abstract ``args``
    (``ShapeDtypeStruct`` s with shardings), lowered inside ``context`` (the mesh and the
    logical-axis rules); ``params`` / ``trainable_params`` count the model's parameters."""

    name: str
    fn: Any
    args: tuple[Any, ...]
    params: int
    trainable_params: int
    context: Callable[[], Any]


def _count(tree: Any, mask: Any = None) -> int:
    """Parameters in ``tree`` (only where ``mask``, a tree of bools, is True)."""
    leaves = jax.tree.leaves(tree)
    flags = jax.tree.leaves(mask) if mask is not None else [True] * len(leaves)
    return int(sum(int(np.prod(x.shape)) for x, m in zip(leaves, flags) if m))


def train_step(
    name: str,
    loss_fn: Callable[..., Any],
    optimizer: dict[str, Any],
    boxed_params: Any,
    batch: dict[str, Any],
    mesh: Any,
    rules: Any,
    grad_accum_steps: int = 1,
    accum_dtype: str | None = None,
) -> AotStep:
    """A train step as the trainer builds it (:func:`vau_jax.train.step.make_train_step`):
    the state sharded by the logical rules (moments like their params, nothing for frozen
    leaves), the batch (``ShapeDtypeStruct`` s) split over ``data`` x ``fsdp``, the state
    donated."""
    from flax import linen as nn

    from vau_jax import sharding
    from vau_jax.train.context import activation_context
    from vau_jax.train.optimizer import make_optimizer
    from vau_jax.train.state import abstract_train_state
    from vau_jax.train.step import make_train_step

    pshard = sharding.param_shardings(boxed_params, mesh, rules)
    params = nn.unbox(boxed_params)
    opt = make_optimizer(optimizer, params)
    state = abstract_train_state(params, opt, 0, pshard, mesh)
    bshard = {k: sharding.data_sharding(mesh, len(v.shape)) for k, v in batch.items()}
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=bshard[k]) for k, v in batch.items()
    }
    fn = make_train_step(
        loss_fn,
        opt,
        grad_accum_steps=grad_accum_steps,
        accum_dtype=accum_dtype,
        state_sharding=jax.tree.map(lambda x: x.sharding, state),
        batch_sharding=bshard,
    )
    return AotStep(
        name,
        fn,
        (state, batch),
        _count(params),
        _count(params, opt.trainable),
        lambda: activation_context(mesh, rules),
    )


def apply_step(
    name: str, fn: Callable[..., Any], boxed_params: Any, inputs: dict[str, Any], mesh: Any,
    rules: Any,
) -> AotStep:  # fmt: skip
    """An evaluation step ``fn(params, **inputs)``: params sharded by the rules, inputs split
    over ``data`` x ``fsdp`` on their leading axis."""
    from flax import linen as nn

    from vau_jax import sharding
    from vau_jax.train.context import activation_context

    pshard = sharding.param_shardings(boxed_params, mesh, rules)
    params = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.unbox(boxed_params),
        pshard,
    )
    keys = sorted(inputs)
    args = [
        jax.ShapeDtypeStruct(
            inputs[k].shape, inputs[k].dtype,
            sharding=sharding.data_sharding(mesh, len(inputs[k].shape)),
        )
        for k in keys
    ]  # fmt: skip
    jitted = jax.jit(lambda p, *xs: fn(p, **dict(zip(keys, xs))))
    n = _count(params)
    return AotStep(name, jitted, (params, *args), n, 0, lambda: activation_context(mesh, rules))


# XLA:TPU's two compile-time OOM messages: "... temporaries (25.45G) exceeds available HBM
# (15.75G)" and "Used 15.75G of 15.75G hbm. Exceeded hbm capacity by 683.0K."
def greedy_answers(
    llm_cfg: Any, llm_params: Any, embeds: Any, attention_mask: Any, new_tokens: int
) -> Any:
    """The evaluations' greedy generation (:func:`vau_jax.eval.generate.generate`) of
    ``new_tokens`` after the prompt embeddings ``embeds [B, P, D]`` (``attention_mask
    [B, P]``), with no end-of-sequence id: every row runs all ``new_tokens`` cached decode
    steps (the longest case); tokens ``[B, new_tokens]``. Its decode loop is a
    ``while_loop``, which :func:`jaxpr_flops` counts once (one token of 8 rows: small
    beside the prefill)."""
    from vau_jax.eval.generate import generate
    from vau_jax.models.llama import LlamaForCausalLM

    tokens, _ = generate(
        LlamaForCausalLM(llm_cfg),
        llm_params,
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        max_new_tokens=int(new_tokens),
    )
    return tokens


_OOM = re.compile(r"\(([\d.]+)([KMGT]?)i?B?\)\s+exceeds available HBM\s+\(([\d.]+)([KMGT]?)")
_OOM_USED = re.compile(
    r"Used ([\d.]+)([KMGT]?) of [\d.]+[KMGT]? hbm\. Exceeded hbm capacity by ([\d.]+)([KMGT]?)"
)
_UNIT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _oom_bytes(message: str) -> int | None:
    """The bytes per device an XLA:TPU compile-time OOM message says the step needs."""
    m = _OOM.search(message)
    if m:
        return int(float(m.group(1)) * _UNIT[m.group(2)])
    m = _OOM_USED.search(message)
    if m:
        used = float(m.group(1)) * _UNIT[m.group(2)]
        return int(used + float(m.group(3)) * _UNIT[m.group(4)])
    return None


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    """The jaxprs inside an equation's params (scan/while/cond/pjit/remat/custom calls)."""
    from jax.extend import core as jcore

    out = []
    for v in params.values():
        for x in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(x, jcore.ClosedJaxpr):
                out.append(x.jaxpr)
            elif isinstance(x, jcore.Jaxpr):
                out.append(x)
    return out


def jaxpr_flops(jaxpr: Any) -> float:
    """Matmul and convolution FLOPs (2 per multiply-add) of a (closed) jaxpr, with each
    ``scan`` body counted ``length`` times and the largest ``cond`` branch (a ``while``
    body, whose trip count is not static, once). XLA's ``cost_analysis()`` counts every loop
    body once, so it undercounts layer scans and gradient-accumulation loops."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for e in jaxpr.eqns:
        name = e.primitive.name
        if name == "dot_general":
            (lc, _), _ = e.params["dimension_numbers"]
            lhs = e.invars[0].aval.shape
            contract = float(np.prod([lhs[i] for i in lc])) if lc else 1.0
            total += 2.0 * float(np.prod(e.outvars[0].aval.shape)) * contract
        elif name == "conv_general_dilated":
            rhs = e.invars[1].aval.shape
            out_feature = e.params["dimension_numbers"].rhs_spec[0]
            per_output = float(np.prod(rhs)) / rhs[out_feature]
            total += 2.0 * float(np.prod(e.outvars[0].aval.shape)) * per_output
        subs = [jaxpr_flops(j) for j in _sub_jaxprs(e.params)]
        if not subs:
            continue
        if name == "cond":
            total += max(subs)
        else:
            total += float(e.params.get("length", 1) if name == "scan" else 1) * sum(subs)
    return total


def compile_report(step: AotStep, topo: Topology, devices: int) -> dict[str, Any]:
    """Compiles ``step`` and returns its row of the report (module docstring)."""
    row: dict[str, Any] = {
        "step": step.name,
        "topology": topo.name,
        "devices": devices,
        "hbm_bytes_per_device": topo.hbm_bytes,
        "params": step.params,
        "trainable_params": step.trainable_params,
    }
    # TPU / GPU compilers pick their own layouts: the CPU's per-row kernel gradients
    # (models/dense_grad.py) would only add [B, D, F] partial sums there
    with step.context(), per_row_kernel_grads(False):
        traced = step.fn.trace(*step.args)
    flops = jaxpr_flops(traced.jaxpr)  # the global program: every device's work
    try:
        with step.context(), per_row_kernel_grads(False):
            compiled = traced.lower().compile()
    except Exception as e:  # XLA's compile-time OOM is a JaxRuntimeError RESOURCE_EXHAUSTED
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        need = _oom_bytes(text)
        row.update(
            fits=False,
            peak_bytes=need,
            per_device_bytes=need,
            argument_bytes=None,
            output_bytes=None,
            temp_bytes=need,
            alias_bytes=None,
            flops_per_step=flops,
            xla_flops_per_step=None,
            step_seconds_at_40pct_mfu=flops / (devices * topo.peak_flops * 0.4),
            error=text.strip().splitlines()[0][:300],
        )
        return row
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}  # GPU: None
    per_device = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    # cost_analysis counts one device and each loop body once; XLA:GPU gives none
    xla_flops = float(cost["flops"]) * devices if "flops" in cost else None
    peak = int(getattr(mem, "peak_memory_in_bytes", 0) or 0) or None
    row.update(
        # XLA's own peak where it reports one (arguments, outputs and temporaries live at
        # the same moment; dead and donated buffers reused), else the sum
        fits=bool((peak or per_device) <= topo.hbm_bytes),
        peak_bytes=peak,
        per_device_bytes=int(per_device),
        argument_bytes=int(mem.argument_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes),
        alias_bytes=int(mem.alias_size_in_bytes),
        flops_per_step=flops,
        xla_flops_per_step=xla_flops,
        step_seconds_at_40pct_mfu=flops / (devices * topo.peak_flops * 0.4),
    )
    return row


def method_steps(config: Any, mesh: Any) -> list[AotStep]:
    """The preset's steps (``vau_jax/methods/<m>/aot.py:aot_steps``)."""
    import importlib

    try:
        module = importlib.import_module(f"vau_jax.methods.{config.method}.aot")
    except ModuleNotFoundError:
        raise ValueError(f"method {config.method!r} has no ahead-of-time steps yet") from None
    return list(module.aot_steps(config, mesh))


def mesh_on(config: Any, devices: Sequence[Any]) -> Any:
    """The config's ``(data, fsdp, tensor)`` mesh laid over ``devices``."""
    from vau_jax import sharding

    return sharding.make_mesh(dict(config.mesh), devices=list(devices))


def report(
    config: Any,
    topologies: Sequence[str],
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every step of ``config`` compiled for every topology: one row each (``on_row`` sees
    each row as soon as its compile ends)."""
    rows = []
    for name in topologies:
        topo = topology(name)
        devices = topo.devices()
        mesh = mesh_on(config, devices)
        for step in method_steps(config, mesh):
            rows.append(compile_report(step, topo, len(devices)))
            if on_row is not None:
                on_row(rows[-1])
    return rows


TABLE_HEADER = (
    "| step | topology | devices | peak GiB / device (HBM) | arg+out+temp−alias GiB | fits "
    "| TFLOPs / step | s / step at 40% MFU |",
    "|---|---|---|---|---|---|---|---|",
)


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.2f}"


def format_row(r: dict[str, Any]) -> str:
    """One report row as a Markdown table line (GiB per device, TFLOPs per step)."""
    peak = r.get("peak_bytes", r["per_device_bytes"])
    tf = "—" if r["flops_per_step"] is None else f"{r['flops_per_step'] / 1e12:.2f}"
    sec = r["step_seconds_at_40pct_mfu"]
    return (
        f"| {r['step']} | {r['topology']} | {r['devices']} | {_gib(peak)} "
        f"({r['hbm_bytes_per_device'] / GIB:.0f}) | {_gib(r['per_device_bytes'])} | "
        f"{'yes' if r['fits'] else 'NO'} | {tf} | {'—' if sec is None else f'{sec:.3g}'} |"
    )


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the report (:data:`TABLE_HEADER`, :func:`format_row`)."""
    return "\n".join([*TABLE_HEADER, *(format_row(r) for r in rows)])


def run(config: Any, topologies: Sequence[str], out: str = "") -> int:
    """Compiles, prints the table, writes ``out`` (JSON list); returns the exit code."""
    names = list(topologies) or ["v5e-8"]
    try:
        for name in names:  # before any compile or output
            topology(name)
            missing = compiler_missing(name)
            if missing:
                print(f"error: vau_jax.aot: {missing}", file=sys.stderr)
                return 2
        print("\n".join(TABLE_HEADER), flush=True)
        # each row printed as its compile ends (a paper-size compile takes minutes)
        rows = report(config, names, lambda r: print(format_row(r), flush=True))
    except ValueError as e:
        print(f"error: {config.method}: {e}", file=sys.stderr)
        return 2
    if out:
        from vau_jax.data.features import atomic_write

        atomic_write(out, lambda fh: json.dump(rows, fh, indent=1), mode="w")
    return 0


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    from vau_jax.cli import absl_parser

    _CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<m>.py:paper")
    _TOPOLOGY = flags.DEFINE_multi_string(
        "topology", [], f"one of {', '.join(TOPOLOGIES)}, h100-8 (vau_jax.aot_gpu)"
    )
    _OUT = flags.DEFINE_string("out", "", "also write the report as a JSON list here")

    def _main(argv: Sequence[str]) -> None:
        del argv  # cli.parse_flags refuses positional arguments
        sys.exit(run(_CONFIG.value, _TOPOLOGY.value, _OUT.value))

    # flag errors (a config key typo, an unknown preset) are one line, exit code 2
    app.run(_main, flags_parser=absl_parser(config="config"))
