"""T-VAU's Anomaly Heatmap Decoder (AHD) (DESIGN §5; paper arXiv 2511.00524 §3.1).

Patch tokens ``V_i`` of several blocks of the frozen ViT tower (the paper taps blocks
1/8/16/32 of a 32-block tower; :func:`proportional_taps` maps them onto other depths) are
each projected by an MLP ``proj_i`` into the CLIP text space and compared, per position, with
the normal / abnormal prompt embeddings ``T_c`` (``c = 0`` normal, ``c = 1`` abnormal):
``h_c^i[t, y, x] = cos(V'_i[t, y, x], T_c)``. The taps are fused with learned weights,
``H_c = Σ_i w_i h_c^i``, and a softmax over the two classes with a learned temperature gives
the heatmap as its abnormal channel. No hard threshold is applied anywhere.

Choices the paper leaves open:

- **Layer weights are used raw** (param ``layer_weights [num_taps]``, init ``1/num_taps``,
  the paper's literal ``Σ_i w_i h^i``): they may become negative or unnormalised. Their
  overall scale is redundant with the temperature (only ``w_i / τ`` matters), which is harmless.
- **Temperature** ``τ``: the scalar param ``logit_scale = log(1/τ)`` (CLIP's parametrisation,
  init ``log(1/init_temperature)``); the logits are ``H * min(exp(logit_scale), 100)`` (CLIP's
  cap). With ``learn_temperature=False`` there is no param and ``τ = init_temperature``.
- Prompt embeddings are L2-normalised inside (again), so callers may pass raw ones.

Shapes: ``...`` leading dims (e.g. ``[B, T]``), ``h, w`` the patch grid, ``D_i`` the width of
tap ``i``, ``Dt`` the text width. Host-side helpers (:func:`patch_targets`,
:func:`proportional_taps`, :func:`added_params`) are plain numpy / Python.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.models import layers

Array = jax.Array

#: CLIP's cap on the learned logit scale ``1/τ``.
MAX_LOGIT_SCALE = 100.0
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class AHDConfig:
    """AHD hyper-parameters.

    ``num_taps`` tapped ViT blocks; ``text_width`` ``Dt`` of the prompt embeddings;
    ``mlp_hidden`` 0 → one Linear per tap, > 0 → Dense → GELU → Dense; ``init_temperature``
    ``τ`` of the class softmax (learned as ``logit_scale = log(1/τ)`` when
    ``learn_temperature``).
    """

    num_taps: int
    text_width: int
    mlp_hidden: int = 0
    init_temperature: float = 0.07
    learn_temperature: bool = True


def proportional_taps(
    num_layers: int, paper_taps: Sequence[int] = (1, 8, 16, 32), paper_depth: int = 32
) -> tuple[int, ...]:
    """The paper's tapped blocks mapped proportionally onto a tower of ``num_layers`` blocks.

    Block ``b`` of ``paper_depth`` maps to ``max(1, ceil(b * num_layers / paper_depth))``;
    duplicates are dropped and the result sorted. Indices are 1-based block numbers, i.e.
    indices into HF-style ``hidden_states`` (0 = the embeddings). 32 → (1, 8, 16, 32),
    12 → (1, 3, 6, 12), 4 → (1, 2, 4).
    """
    if num_layers < 1 or paper_depth < 1:
        raise ValueError(
            f"need num_layers >= 1 and paper_depth >= 1, got {num_layers}, {paper_depth}"
        )
    if not paper_taps or any(not 1 <= b <= paper_depth for b in paper_taps):
        raise ValueError(f"paper_taps {tuple(paper_taps)} must be non-empty, in 1..{paper_depth}")
    return tuple(sorted({max(1, -(-b * num_layers // paper_depth)) for b in paper_taps}))


def _l2norm(x: Array) -> Array:
    """``x / max(||x||, eps)`` over the last axis, float32."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def prompt_embeddings(normal: Array, abnormal: Array) -> Array:
    """Prompt ensembles ``[E, Dt]`` each → ``[2, Dt]`` (row 0 normal, row 1 abnormal).

    Each embedding is L2-normalised, the ensemble averaged and the mean re-normalised.
    """
    return jnp.stack([_l2norm(jnp.mean(_l2norm(e), axis=0)) for e in (normal, abnormal)])


class _TapMLP(nn.Module):
    """Dense(hidden) → GELU → Dense(out), kernels ``("embed", "mlp")`` / ``("mlp", None)``."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = layers.dense(self.hidden, ("embed", "mlp"), name="fc1")(x)
        return layers.dense(self.out, ("mlp", None), name="fc2")(jax.nn.gelu(x, approximate=False))


class AHD(nn.Module):
    """The Anomaly Heatmap Decoder.

    Params: ``proj_{i}`` (an ``nn.Dense`` with kernel axes ``("embed", None)``, or with
    ``mlp_hidden > 0`` a module with ``fc1``/``fc2``), ``layer_weights [num_taps]`` and, when
    the temperature is learned, the scalar ``logit_scale``.
    """

    config: AHDConfig

    @nn.compact
    def __call__(self, taps: Sequence[Array] | Array, prompts: Array) -> dict[str, Array]:
        """Heatmaps from tapped patch tokens.

        Args:
          taps: ``num_taps`` arrays ``[..., h, w, D_i]`` (widths may differ), or one stacked
            array ``[num_taps, ..., h, w, D]``.
          prompts: ``[2, Dt]`` normal (row 0) / abnormal (row 1) text embeddings.

        Returns:
          ``logits`` ``[..., h, w, 2]`` (``H / τ``), ``heatmap`` ``[..., h, w]`` (the
          abnormal softmax probability, in [0, 1]) and ``per_tap`` ``[num_taps, ..., h, w, 2]``
          (the cosines ``h^i``), all float32.
        """
        cfg = self.config
        if len(taps) != cfg.num_taps:
            raise ValueError(f"AHD expects {cfg.num_taps} taps, got {len(taps)}")
        if prompts.shape != (2, cfg.text_width):
            raise ValueError(f"prompts must be [2, {cfg.text_width}], got {prompts.shape}")
        t_c = _l2norm(prompts)  # [2, Dt]
        per_tap = []
        for i, v in enumerate(taps):
            if cfg.mlp_hidden > 0:
                proj = _TapMLP(cfg.mlp_hidden, cfg.text_width, name=f"proj_{i}")
            else:
                proj = layers.dense(cfg.text_width, ("embed", None), name=f"proj_{i}")
            v_t = _l2norm(proj(v.astype(jnp.float32)))  # [..., h, w, Dt]
            per_tap.append(jnp.einsum("...d,cd->...c", v_t, t_c))  # [..., h, w, 2]
        h_i = jnp.stack(per_tap)  # [num_taps, ..., h, w, 2]
        w = self.param(
            "layer_weights",
            layers.partitioned(nn.initializers.constant(1.0 / cfg.num_taps), (None,)),
            (cfg.num_taps,),
            jnp.float32,
        )
        fused = jnp.tensordot(w, h_i, axes=1)  # [..., h, w, 2]: H_c = Σ_i w_i h_c^i
        if cfg.learn_temperature:
            log_scale = self.param(
                "logit_scale",
                layers.partitioned(
                    nn.initializers.constant(math.log(1.0 / cfg.init_temperature)), ()
                ),
                (),
                jnp.float32,
            )
            scale = jnp.minimum(jnp.exp(log_scale), MAX_LOGIT_SCALE)
        else:
            scale = 1.0 / cfg.init_temperature
        logits = fused * scale
        return {
            "logits": logits,
            "heatmap": jax.nn.softmax(logits, axis=-1)[..., 1],
            "per_tap": h_i,
        }


def upsample_heatmap(heatmap: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize ``[..., h, w] -> [..., H, W]`` (``jax.image.resize``), clipped to [0, 1]."""
    out = jax.image.resize(
        heatmap.astype(jnp.float32), (*heatmap.shape[:-2], *size), method="bilinear"
    )
    return jnp.clip(out, 0.0, 1.0)


def patch_targets(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Pixel masks → per-patch soft targets (host numpy).

    Args:
      masks: bool/uint8 ``[T, H, W]``, nonzero = pixel of an anomalous object.
      grid: ``(gh, gw)`` patch grid; ``H % gh == 0`` and ``W % gw == 0``.

    Returns:
      float32 ``[T, gh, gw]``: the fraction of each patch cell's pixels that are anomalous.
    """
    masks = np.asarray(masks)
    gh, gw = grid
    if masks.ndim != 3 or gh < 1 or gw < 1 or masks.shape[1] % gh or masks.shape[2] % gw:
        raise ValueError(f"masks {masks.shape} must be [T, H, W] with H, W divisible by {grid}")
    t, h, w = masks.shape
    cells = (masks != 0).astype(np.float32).reshape(t, gh, h // gh, gw, w // gw)
    return cells.mean(axis=(2, 4), dtype=np.float32)


def ahd_loss(
    logits: Array, targets: Array, valid: Array | None = None, pos_weight: float = 1.0
) -> Array:
    """Soft two-class cross-entropy of the AHD logits, averaged over valid patches.

    Per patch, with ``y`` the abnormal target and ``log p = log_softmax(logits)``:
    ``-(pos_weight * y * log p_1 + (1 - y) * log p_0)`` (``pos_weight > 1`` up-weights the rare
    anomalous patches, as torch's ``BCEWithLogitsLoss(pos_weight=...)``).

    Args:
      logits: ``[..., h, w, 2]`` AHD ``logits``.
      targets: ``[..., h, w]`` soft abnormal targets in [0, 1] (:func:`patch_targets`).
      valid: optional bool ``[...]`` per frame, False on padding frames.
      pos_weight: weight of the positive term.

    Returns:
      float32 scalar: the mean over the ``h*w`` patches of every valid frame; 0 if none.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    y = targets.astype(jnp.float32)
    per = -(pos_weight * y * logp[..., 1] + (1.0 - y) * logp[..., 0])  # [..., h, w]
    if valid is None:
        return jnp.mean(per)
    m = jnp.broadcast_to(valid.astype(jnp.float32)[..., None, None], per.shape)
    return jnp.sum(jnp.where(m > 0, per, 0.0)) / jnp.maximum(jnp.sum(m), 1.0)


def added_params(
    vision_widths: Sequence[int], text_width: int, mlp_hidden: int, learn_temperature: bool = True
) -> int:
    """Number of AHD parameters for taps of widths ``vision_widths`` (one per tap)."""
    if mlp_hidden > 0:
        proj = sum(
            d * mlp_hidden + mlp_hidden + mlp_hidden * text_width + text_width
            for d in vision_widths
        )
    else:
        proj = sum(d * text_width + text_width for d in vision_widths)
    return proj + len(vision_widths) + int(learn_temperature)
