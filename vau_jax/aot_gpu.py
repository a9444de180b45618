"""Ahead-of-time compilation for NVIDIA GPU topologies, with no GPU present.

The CUDA PJRT plugin (``pip install -e '.[cuda12]'``) builds compile-only GPU devices from a
topology shape (``<partitions>x<hosts per partition>x<devices per host>``) and a
``stream_executor.GpuTargetConfigProto`` in text format that describes the chip; XLA then
compiles for it "deviceless" (``ptxas`` from the ``nvidia-cuda-nvcc-cu12`` wheel, no driver).
:meth:`GpuTopology.devices` plays the part of :meth:`vau_jax.aot.Topology.devices`: lay a mesh
over them, ``jit(...).lower(...).compile()`` and read ``memory_analysis()``.

Two differences from TPU: XLA:GPU does not fail a compile that exceeds the device's memory
(no ``RESOURCE_EXHAUSTED``; compare the bytes with ``hbm_bytes``), and ``cost_analysis()`` of
such an executable is ``None`` (no FLOPs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any


class _Enum(str):
    """An enum value, written unquoted by :func:`_text_proto`."""


def _text_proto(fields: dict[str, Any], indent: str = "") -> str:
    """``fields`` in protobuf text format (nested dicts are messages, bools lower-case,
    strings quoted, identifiers given as ``_Enum("NAME")``)."""
    lines = []
    for key, value in fields.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key} {{", _text_proto(value, indent + "  "), f"{indent}}}"]
        elif isinstance(value, bool):
            lines.append(f"{indent}{key}: {str(value).lower()}")
        elif isinstance(value, str) and not isinstance(value, _Enum):
            lines.append(f'{indent}{key}: "{value}"')
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


# H100 SXM5 80 GB (sm_90a) as CUDA reports it: 132 SMs, 228 KiB shared memory per SM (227 KiB
# per block opt-in), 50 MiB L2, 1.98 GHz boost clock, 3.35 TB/s HBM3, 18 NVLink 4 links.
_H100_SXM: dict[str, Any] = {
    "gpu_device_info": {
        "threads_per_block_limit": 1024,
        "threads_per_warp": 32,
        "shared_memory_per_block": 48 << 10,
        "shared_memory_per_core": 228 << 10,
        "shared_memory_per_block_optin": 227 << 10,
        "threads_per_core_limit": 2048,
        "core_count": 132,
        "fpus_per_core": 128,
        "block_dim_limit_x": 2**31 - 1,
        "block_dim_limit_y": 65535,
        "block_dim_limit_z": 65535,
        "thread_dim_limit_x": 1024,
        "thread_dim_limit_y": 1024,
        "thread_dim_limit_z": 64,
        "memory_bandwidth": 3_352_320_000_000,
        "l2_cache_size": 50 << 20,
        "clock_rate_ghz": 1.98,
        "device_memory_size": 84_942_979_072,
        "cuda_compute_capability": {
            "major": 9,
            "minor": 0,
            "feature_extension": _Enum("ACCELERATED_FEATURES"),
        },
        "registers_per_core_limit": 65536,
        "registers_per_block_limit": 65536,
        "device_vendor": "NVIDIA Corporation",
        "platform_version": "Compute Capability 9.0a",
        "device_address_bits": 64,
        "ecc_enabled": True,
        "name": "NVIDIA H100 80GB HBM3",
        "device_interconnect_info": {"active_links": 18},
    },
    "platform_name": "CUDA",
    "dnn_version_info": {"major": 9, "minor": 8, "patch": 0},
    "device_description_str": "NVIDIA H100 80GB HBM3",
}


@dataclasses.dataclass(frozen=True)
class GpuTopology:
    """A GPU cluster by name (``h100-8``: one host of 8 GPUs). ``shape`` is (partitions, hosts
    per partition, GPUs per host), ``hbm_bytes`` the memory of one GPU, ``peak_flops`` its
    dense bf16 peak per second (NVIDIA's data sheet), ``target`` the chip's target config."""

    name: str
    shape: tuple[int, int, int]
    hbm_bytes: int
    peak_flops: float
    target: dict[str, Any]

    def target_config(self) -> str:
        """The chip's ``GpuTargetConfigProto`` in text format."""
        return _text_proto(self.target)

    def devices(self) -> list[Any]:
        """The cluster's compile-only GPU devices from the CUDA plugin (no GPU needed).

        The plugin's start-up check of the CUDA libraries against the driver fails without a
        GPU and then leaves the plugin unregistered, so it is skipped here
        (``JAX_SKIP_CUDA_CONSTRAINTS_CHECK``, or ``JAX_PLATFORMS=cpu``); that only helps if JAX
        has not discovered its plugins yet (a ``RuntimeError`` says so).
        """
        os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
        from jax.experimental import topologies

        try:
            desc = topologies.get_topology_desc(
                platform="cuda",
                topology="x".join(map(str, self.shape)),
                target_config=self.target_config(),
            )
        except NotImplementedError as e:
            raise RuntimeError(
                f"{self.name}: the CUDA plugin is not registered ({e}); install the cuda12 extra "
                "and set JAX_PLATFORMS=cpu or JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 before JAX "
                "starts"
            ) from None
        return list(desc.devices)


GPU_TOPOLOGIES: dict[str, GpuTopology] = {
    "h100-8": GpuTopology("h100-8", (1, 1, 8), 84_942_979_072, 989e12, _H100_SXM),
}


def gpu_topology(name: str) -> GpuTopology:
    """The :class:`GpuTopology` of a name (``ValueError`` listing the known ones)."""
    if name not in GPU_TOPOLOGIES:
        raise ValueError(f"unknown GPU topology {name!r}; known: {', '.join(GPU_TOPOLOGIES)}")
    return GPU_TOPOLOGIES[name]


def gpu_devices(name: str) -> list[Any]:
    """The compile-only GPU devices of the topology ``name`` (``h100-8``: 8 H100s)."""
    return gpu_topology(name).devices()


def cuda_plugin_available() -> bool:
    """Whether JAX's CUDA 12 PJRT plugin is installed (the ``cuda12`` extra)."""
    try:
        return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
    except ModuleNotFoundError:
        return False
