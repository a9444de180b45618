"""VA-GPT's Spatial Effective Token Selection (SETS) (DESIGN §5).

For every frame ``t`` the patch-wise Manhattan distance between the DINOv2 patch embeddings
of frame ``t`` and its reference frame ``t-1`` gives a difference map
``D_t = Σ_c |F_t − F_{t−1}|`` (frame 0 has no predecessor and uses frame 1 as its reference,
so ``D_0 == D_1``). When the DINOv2 patch grid differs from the CLIP patch grid, ``D_t`` is
resized to the CLIP grid (bilinear). The ``round(K·N)`` CLIP patch tokens with the largest
distance are kept, in their original (row-major spatial) order.

Everything here is a pure function with static output shapes (``keep_ratio`` and the grid
sizes are Python values), so it jits and vmaps; :func:`keep_mask` gives the boolean patch mask
``M_t`` for visualisation. Shapes: ``B`` batch, ``T`` frames, ``N`` patches per frame
(no CLS token), ``C``/``D`` feature widths, ``K`` kept patches per frame.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def frame_distances(patches: Array) -> Array:
    """Inter-frame L1 distance per patch.

    Args:
      patches: ``[B, T, N, C]`` DINOv2 patch embeddings (no CLS token).

    Returns:
      float32 ``[B, T, N]``: ``D[:, t] = Σ_c |F_t − F_{t−1}|`` for ``t ≥ 1``, ``D[:, 0] ==
      D[:, 1]`` (frame 0 uses frame 1 as its reference); all zeros when ``T == 1``.
    """
    f = patches.astype(jnp.float32)
    if f.shape[1] == 1:
        return jnp.zeros(f.shape[:-1], jnp.float32)
    ref = jnp.concatenate([f[:, 1:2], f[:, :-1]], axis=1)  # [B, T, N, C]: frame t-1 (0 -> 1)
    return jnp.sum(jnp.abs(f - ref), axis=-1)


def resize_grid(d: Array, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Array:
    """Resizes per-patch maps from one patch grid to another (bilinear).

    Args:
      d: ``[B, T, Hs*Ws]`` maps on the source grid, patches in row-major order.
      src_hw: ``(Hs, Ws)`` source grid.
      dst_hw: ``(Hd, Wd)`` destination grid.

    Returns:
      ``[B, T, Hd*Wd]`` float32, row-major. Identity when the grids are equal; antialiased
      (triangle filter widened by the scale) when shrinking.
    """
    (hs, ws), (hd, wd) = tuple(src_hw), tuple(dst_hw)
    b, t, n = d.shape
    if n != hs * ws:
        raise ValueError(f"map has {n} patches but the source grid {hs}x{ws} has {hs * ws}")
    d = d.astype(jnp.float32)
    if (hs, ws) == (hd, wd):
        return d
    grid = d.reshape(b, t, hs, ws)
    out = jax.image.resize(grid, (b, t, hd, wd), method="bilinear", antialias=True)
    return out.reshape(b, t, hd * wd)


def num_keep(n: int, keep_ratio: float) -> int:
    """Number of kept patches: ``max(1, min(n, round(keep_ratio * n)))`` (a static int).

    ``round`` is Python's (halves to even: ``round(0.5 * 5) == 2``).

    Raises:
      ValueError: unless ``0 < keep_ratio <= 1`` and ``n >= 1``.
    """
    if not 0.0 < keep_ratio <= 1.0:  # also rejects NaN
        raise ValueError(f"SETS keep_ratio must be in (0, 1], got {keep_ratio!r}")
    if n < 1:
        raise ValueError(f"SETS needs at least one patch per frame, got n={n}")
    return max(1, min(n, round(keep_ratio * n)))


def select_indices(d: Array, keep: int) -> Array:
    """Indices of the ``keep`` largest distances per frame, in ascending spatial order.

    Args:
      d: ``[B, T, N]`` distances.
      keep: static number of patches to keep, ``1 <= keep <= N``.

    Returns:
      int32 ``[B, T, keep]``, sorted ascending. Ties at the cut-off are broken in favour of the
      lower patch index (``jax.lax.top_k`` returns the lower index first among equal values).
    """
    n = d.shape[-1]
    if not 1 <= keep <= n:
        raise ValueError(f"keep must be in [1, {n}], got {keep}")
    _, idx = jax.lax.top_k(d, keep)  # [B, T, keep], by decreasing distance
    return jnp.sort(idx, axis=-1).astype(jnp.int32)


def gather_tokens(tokens: Array, idx: Array) -> Array:
    """Gathers the selected tokens of each frame.

    Args:
      tokens: ``[B, T, N, D]`` (CLIP patch tokens).
      idx: int ``[B, T, K]`` patch indices in ``[0, N)``.

    Returns:
      ``[B, T, K, D]`` with ``out[b, t, k] = tokens[b, t, idx[b, t, k]]``.
    """
    return jnp.take_along_axis(tokens, idx[..., None], axis=2)


def keep_mask(idx: Array, n: int) -> Array:
    """The selection as a patch mask ``M_t``.

    Args:
      idx: int ``[B, T, K]`` kept patch indices.
      n: patches per frame ``N``.

    Returns:
      bool ``[B, T, N]``, True on kept patches.
    """
    return jnp.any(idx[..., :, None] == jnp.arange(n, dtype=idx.dtype), axis=-2)


def _square_grid(n: int, what: str) -> tuple[int, int]:
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(
            f"{what} has {n} patches, not a square grid; pass its (height, width) explicitly"
        )
    return side, side


def sets_select(
    dino_patches: Array,
    clip_patches: Array,
    keep_ratio: float,
    dino_hw: tuple[int, int] | None = None,
    clip_hw: tuple[int, int] | None = None,
) -> tuple[Array, Array]:
    """SETS: keeps the CLIP tokens of the patches that change most between frames.

    Args:
      dino_patches: ``[B, T, Nd, C]`` DINOv2 patch embeddings (no CLS).
      clip_patches: ``[B, T, N, D]`` CLIP patch tokens (no CLS).
      keep_ratio: ``K`` in ``(0, 1]`` (static under ``jit``).
      dino_hw: DINOv2 grid ``(H, W)``; inferred as a square when None.
      clip_hw: CLIP grid ``(H, W)``; inferred as a square when None.

    Returns:
      ``(selected [B, T, k, D], idx int32 [B, T, k])`` with ``k = num_keep(N, keep_ratio)``;
      ``idx`` in ascending spatial order.
    """
    if dino_patches.shape[:2] != clip_patches.shape[:2]:
        raise ValueError(
            f"DINOv2 {dino_patches.shape} and CLIP {clip_patches.shape} disagree on [B, T]"
        )
    nd, nc = dino_patches.shape[2], clip_patches.shape[2]
    keep = num_keep(nc, keep_ratio)
    dino_hw = _square_grid(nd, "DINOv2 grid") if dino_hw is None else tuple(dino_hw)
    clip_hw = _square_grid(nc, "CLIP grid") if clip_hw is None else tuple(clip_hw)
    if clip_hw[0] * clip_hw[1] != nc:
        raise ValueError(f"CLIP has {nc} patches but clip_hw={clip_hw}")
    d = resize_grid(frame_distances(dino_patches), dino_hw, clip_hw)  # [B, T, N]
    idx = select_indices(d, keep)
    return gather_tokens(clip_patches, idx), idx
