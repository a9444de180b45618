"""T-VAU's Region-aware Anomaly Encoder (RAE) (DESIGN §5; paper arXiv 2511.00524 §3.2).

The per-frame AHD heatmaps ``H [B, T, h, w]`` are turned into a few prompt tokens for the
frozen LLM:

1. Signed temporal differences ``X[t] = H[t+1] − H[t]`` (``[B, T−1, h, w]``); a difference is
   valid only when both of its frames are. With ``level`` (ours, not the paper's) each
   difference enters beside the later frame's heatmap ``H[t+1]`` as a second channel: the
   difference alone is zero wherever an anomaly stays still and lit between two frames.
2. A small conv net, shared over differences: per width in ``channels`` a 3x3 ``nn.Conv``
   (SAME padding) then GELU; the first conv sees the one-channel difference map (two
   channels with ``level``).
3. Adaptive average pooling to ``grid x grid`` (PyTorch ``AdaptiveAvgPool2d`` bins) → region
   features; the spatial mean → the global feature. With ``space_pool="mean_max"`` (ours, not
   the paper's) each region's and the global feature are the mean beside the maximum over
   their patches (channels doubled, the same prompts): a mean over a region dilutes an
   anomaly that lights one patch, and the frame score that separates videos best is a
   maximum.
4. Time: the valid differences of each video, in order, are split into ``time_segments``
   consecutive segments (valid difference of rank ``r`` among ``n`` goes to segment
   ``floor(r * S / n)``; segments may be uneven) and each segment is mean-pooled over its
   valid differences, so padding never counts and the prompts keep the order of motion.
   A segment with no valid difference pools to zeros. With ``time_pool="mean_max"`` (ours,
   not the paper's, which does not say how prompts are pooled over time) each segment's
   features are its mean beside its maximum over the valid differences (channels doubled,
   the same prompts): a mean over a segment dilutes an event that lasts a few differences.
5. ``region_proj`` / ``global_proj`` (Dense → ``llm_width``) and the learned base prompts.

Output order, ``P_An [B, num_base + S * (grid² + 1), llm_width]``::

    [base_0 .. base_{num_base-1},
     seg 0: region (0,0), (0,1), .., (grid-1, grid-1) (row-major: row = height), global,
     seg 1: ..., ...]

The paper's ``[P_base, P_region, p_global]`` is the case ``time_segments == 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.models import layers

Array = jax.Array


#: How RAE pools a segment's difference features over time (see the module docstring).
TIME_POOLS = ("mean", "mean_max")
#: How RAE pools the conv features over a region's (or the frame's) patches.
SPACE_POOLS = ("mean", "mean_max")


@dataclasses.dataclass(frozen=True)
class RAEConfig:
    """RAE hyper-parameters (see the module docstring)."""

    llm_width: int
    channels: tuple[int, ...] = (16, 32)
    num_base: int = 4
    grid: int = 3
    time_segments: int = 1
    level: bool = False  # ours: H[t+1] beside X[t] as a second input channel
    time_pool: str = "mean"  # "mean" | "mean_max" (ours): how a segment pools over time
    space_pool: str = "mean"  # "mean" | "mean_max" (ours): how a region pools its patches

    def __post_init__(self) -> None:
        if self.time_pool not in TIME_POOLS:
            raise ValueError(f"time_pool {self.time_pool!r}: expected one of {TIME_POOLS}")
        if self.space_pool not in SPACE_POOLS:
            raise ValueError(f"space_pool {self.space_pool!r}: expected one of {SPACE_POOLS}")


def config_from(rae: Any, llm_width: int) -> RAEConfig:
    """The :class:`RAEConfig` of a run config's ``rae`` section (``channels``, ``num_base``,
    ``time_segments``; ``level`` / ``time_pool`` / ``space_pool`` default to the dataclass's
    when absent, as in runs saved before they existed) for an LLM of width ``llm_width``."""
    return RAEConfig(
        llm_width=int(llm_width),
        channels=tuple(rae.channels),
        num_base=int(rae.num_base),
        time_segments=int(rae.time_segments),
        level=bool(rae.get("level", RAEConfig.level)),
        time_pool=str(rae.get("time_pool", RAEConfig.time_pool)),
        space_pool=str(rae.get("space_pool", RAEConfig.space_pool)),
    )


def num_prompts(cfg: RAEConfig) -> int:
    """Prompt tokens per video: ``num_base + time_segments * (grid² + 1)``."""
    return cfg.num_base + cfg.time_segments * (cfg.grid * cfg.grid + 1)


def _pool_matrix(size: int, out: int) -> np.ndarray:
    """``[out, size]`` averaging weights of PyTorch's adaptive pooling bins.

    Bin ``i`` covers ``[floor(i * size / out), ceil((i + 1) * size / out))``.
    """
    m = np.zeros((out, size), np.float32)
    for i, (s, e) in enumerate(adaptive_bins(size, out)):
        m[i, s:e] = 1.0 / (e - s)
    return m


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling bins of ``size`` into ``out``: bin ``i`` is
    ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    return [((i * size) // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool(x: Array, out: int) -> Array:
    """Adaptive average pooling ``[..., H, W, C] -> [..., out, out, C]`` (PyTorch's bins)."""
    h, w = x.shape[-3], x.shape[-2]
    if out < 1 or h < 1 or w < 1:
        raise ValueError(f"cannot pool [..., {h}, {w}, C] to {out}x{out}")
    ph, pw = jnp.asarray(_pool_matrix(h, out)), jnp.asarray(_pool_matrix(w, out))
    return jnp.einsum("ih,jw,...hwc->...ijc", ph, pw, x, precision=jax.lax.Precision.HIGHEST)


def adaptive_max_pool(x: Array, out: int) -> Array:
    """Adaptive max pooling ``[..., H, W, C] -> [..., out, out, C]`` over the same bins as
    :func:`adaptive_avg_pool` (PyTorch's ``AdaptiveMaxPool2d``)."""
    h, w = x.shape[-3], x.shape[-2]
    if out < 1 or h < 1 or w < 1:
        raise ValueError(f"cannot pool [..., {h}, {w}, C] to {out}x{out}")
    return jnp.stack(
        [
            jnp.stack(
                [
                    jnp.max(x[..., r0:r1, c0:c1, :], axis=(-3, -2))
                    for c0, c1 in adaptive_bins(w, out)
                ],
                -2,
            )
            for r0, r1 in adaptive_bins(h, out)
        ],
        -3,
    )


def _segment_weights(valid: Array, segments: int) -> Array:
    """``[B, N]`` bool → ``[B, N, S]`` 0/1: valid item of rank ``r`` of ``n`` → ``floor(r*S/n)``."""
    v = valid.astype(jnp.int32)
    rank = jnp.cumsum(v, axis=1) - 1  # [B, N]
    n = jnp.maximum(jnp.sum(v, axis=1, keepdims=True), 1)  # [B, 1]
    seg = (rank * segments) // n  # [B, N]
    return jax.nn.one_hot(seg, segments, dtype=jnp.float32) * v[..., None]


class RAE(nn.Module):
    """The Region-aware Anomaly Encoder.

    Params: ``conv_{i}`` (3x3 kernels, axes ``("conv", "conv", "conv", None)``),
    ``region_proj`` / ``global_proj`` (kernel axes ``(None, "embed")``) and ``base``
    ``[num_base, llm_width]`` (axes ``(None, "embed")``).
    """

    config: RAEConfig

    @nn.compact
    def __call__(self, heatmaps: Array, valid: Array | None = None) -> Array:
        """Prompt tokens from per-frame heatmaps.

        Args:
          heatmaps: ``[B, T, h, w]`` AHD heatmaps (patch or pixel resolution), ``T >= 2``.
          valid: optional bool ``[B, T]``, False on padding frames (all True when None).

        Returns:
          float32 ``P_An [B, num_prompts(cfg), llm_width]`` in the order of the module
          docstring.
        """
        cfg = self.config
        if heatmaps.ndim != 4 or heatmaps.shape[1] < 2:
            raise ValueError(f"heatmaps must be [B, T>=2, h, w], got {heatmaps.shape}")
        b, t, h, w = heatmaps.shape
        if valid is None:
            valid = jnp.ones((b, t), bool)
        hm = heatmaps.astype(jnp.float32)
        x = hm[:, 1:] - hm[:, :-1]  # [B, T-1, h, w]: X[t] = H[t+1] - H[t]
        dvalid = valid[:, 1:] & valid[:, :-1]  # [B, T-1]
        x = x[..., None]  # [B, T-1, h, w, 1]
        if cfg.level:
            x = jnp.concatenate([x, hm[:, 1:, ..., None]], axis=-1)  # [B, T-1, h, w, 2]
        x = jnp.where(dvalid[..., None, None, None], x, 0.0)  # padding never reaches the net
        f = x.reshape(b * (t - 1), h, w, x.shape[-1])
        for i, c in enumerate(cfg.channels):
            conv = nn.Conv(
                c,
                (3, 3),
                padding="SAME",
                kernel_init=layers.partitioned(
                    nn.initializers.lecun_normal(), ("conv", "conv", "conv", None)
                ),
                bias_init=layers.partitioned(nn.initializers.zeros_init(), (None,)),
                name=f"conv_{i}",
            )
            f = jax.nn.gelu(conv(f), approximate=False)  # [B*(T-1), h, w, C]
        g2 = cfg.grid * cfg.grid
        region = adaptive_avg_pool(f, cfg.grid)  # [B*(T-1), g, g, C]
        glob = jnp.mean(f, axis=(1, 2))  # [B*(T-1), C]
        if cfg.space_pool == "mean_max":  # channels doubled: [mean, max]
            region = jnp.concatenate([region, adaptive_max_pool(f, cfg.grid)], axis=-1)
            glob = jnp.concatenate([glob, jnp.max(f, axis=(1, 2))], axis=-1)
        region = region.reshape(b, t - 1, g2, -1)  # [B, T-1, g², C']
        glob = glob.reshape(b, t - 1, 1, -1)  # [B, T-1, 1, C']
        feats = jnp.concatenate([region, glob], axis=2)  # [B, T-1, g²+1, C']
        seg_w = _segment_weights(dvalid, cfg.time_segments)  # [B, T-1, S]
        counts = jnp.maximum(jnp.sum(seg_w, axis=1), 1.0)  # [B, S]
        pooled = (
            jnp.einsum("bts,btkc->bskc", seg_w, feats, precision=jax.lax.Precision.HIGHEST)
            / counts[..., None, None]
        )  # [B, S, g²+1, C]
        if cfg.time_pool == "mean_max":
            inside = (seg_w > 0)[:, :, :, None, None]  # [B, T-1, S, 1, 1]
            peak = jnp.max(jnp.where(inside, feats[:, :, None], -jnp.inf), axis=1)
            peak = jnp.where(jnp.isfinite(peak), peak, 0.0)  # an empty segment: zeros
            pooled = jnp.concatenate([pooled, peak], axis=-1)  # [B, S, g²+1, 2C']
        p_region = layers.dense(cfg.llm_width, (None, "embed"), name="region_proj")(
            pooled[:, :, :g2]
        )  # [B, S, g², W]
        p_global = layers.dense(cfg.llm_width, (None, "embed"), name="global_proj")(
            pooled[:, :, g2:]
        )  # [B, S, 1, W]
        seg_prompts = jnp.concatenate([p_region, p_global], axis=2).reshape(
            b, cfg.time_segments * (g2 + 1), cfg.llm_width
        )
        base = self.param(
            "base",
            layers.partitioned(layers.default_kernel_init, (None, "embed")),
            (cfg.num_base, cfg.llm_width),
            jnp.float32,
        )
        base = jnp.broadcast_to(base[None], (b, cfg.num_base, cfg.llm_width))
        return jnp.concatenate([base, seg_prompts], axis=1)


def added_params(cfg: RAEConfig) -> int:
    """Number of RAE parameters (convs, both projections, base prompts)."""
    widths = (2 if cfg.level else 1, *cfg.channels)
    conv = sum(9 * cin * cout + cout for cin, cout in zip(widths[:-1], widths[1:]))
    pooled = widths[-1] * (2 if cfg.time_pool == "mean_max" else 1)
    pooled *= 2 if cfg.space_pool == "mean_max" else 1
    proj = 2 * (pooled * cfg.llm_width + cfg.llm_width)
    return conv + proj + cfg.num_base * cfg.llm_width
