"""VAD-LLaMA's Video Anomaly Detector (VADor): video Q-Former clip features + LTC + AP.

Input: per-frame tokens of a frozen image encoder grouped into clips,
``[B, Nc, F*M, Dv]`` (``F`` frames per clip, ``M`` tokens per frame). A video Q-Former
(learned frame-position embeddings + BLIP-2 Q-Former cross-attending to the clip's tokens,
queries averaged) gives the clip feature ``x_i`` ``[B, Nc, D]``; the AP scores it (phase 1) or
the LTC-enhanced ``x̃_i`` (phase 2), whose lists are selected by the frozen phase-1 copy of
the AP (``ap_base``). Top-level parameter names are API for freezing regexes:
``video_qformer``, ``frame_position``, ``ap``, ``ap_base``, ``ltc``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import layers
from vau_jax.models.heads.ltc import LTC, AnomalyPredictor, LTCConfig, LTCState, anomaly_scores
from vau_jax.models.qformer import QFormer, QFormerConfig

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class VADorConfig:
    """``frames_per_clip`` × ``tokens_per_frame`` image tokens of width ``vision_width`` per clip."""

    qformer: QFormerConfig
    ltc: LTCConfig
    frames_per_clip: int = 8
    tokens_per_frame: int = 5
    vision_width: int = 64
    ap_hidden: int = 64


class VADor(nn.Module):
    config: VADorConfig

    def setup(self) -> None:
        cfg = self.config
        self.frame_position = self.param(
            "frame_position",
            layers.partitioned(nn.initializers.normal(0.02), ("pos", "embed")),
            (cfg.frames_per_clip, cfg.vision_width),
        )
        self.video_qformer = QFormer(cfg.qformer)
        self.ap = AnomalyPredictor(cfg.ap_hidden)
        self.ap_base = AnomalyPredictor(cfg.ap_hidden)
        self.ltc = LTC(cfg.ltc)

    def clip_features(self, tokens: Array) -> Array:
        """``[B, Nc, F*M, Dv]`` -> clip features ``x`` ``[B, Nc, D]``."""
        cfg = self.config
        b, nc, fm, dv = tokens.shape
        t = tokens.reshape(b * nc, cfg.frames_per_clip, cfg.tokens_per_frame, dv)
        t = t + self.frame_position[None, :, None, :].astype(t.dtype)
        t = t.reshape(b * nc, fm, dv)
        q = self.video_qformer(t)["last_hidden_state"][
            :, : cfg.qformer.num_query_tokens
        ]  # [B*Nc, Nq, D]
        return q.mean(1).reshape(b, nc, -1)

    def __call__(
        self, tokens: Array, mask: Array, *, phase: int = 2, state: LTCState | None = None
    ) -> dict[str, Any]:
        """Scores every clip.

        Args:
          tokens: ``[B, Nc, F*M, Dv]`` clip tokens; mask: ``[B, Nc]`` bool (False = padding).
          phase: 1 = AP on raw clip features; 2 = AP on LTC-enhanced features.
          state: LTC lists carried over from earlier chunks of the same videos (streaming).
        Returns:
          ``logits`` [B, Nc, 2], ``scores`` [B, Nc] (abnormal probability), ``x`` [B, Nc, D],
          ``x_tilde`` [B, Nc, D] (= ``x`` in phase 1) and the LTC ``state``.
        """
        x = self.clip_features(tokens)
        if phase == 1:
            logits = self.ap(x)
            return {
                "logits": logits,
                "scores": anomaly_scores(logits),
                "x": x,
                "x_tilde": x,
                "state": state,
            }
        select = anomaly_scores(self.ap_base(jax.lax.stop_gradient(x)))
        x_tilde, state = self.ltc(x, select, mask, state)
        logits = self.ap(x_tilde)
        return {
            "logits": logits,
            "scores": anomaly_scores(logits),
            "x": x,
            "x_tilde": x_tilde,
            "state": state,
        }


def mil_loss(
    scores: Array, mask: Array, video_label: Array, *, extras: bool = False
) -> tuple[Array, dict]:
    """MIL BCE on the max clip score per video (+ the public code's optional terms).

    Args:
      scores: ``[B, Nc]`` abnormal probabilities; mask: ``[B, Nc]``; video_label: ``[B]`` 0/1.
      extras: add ``0.01·smoothness`` (squared differences of consecutive valid clips),
        ``0.01·sparsity`` (mean score of anomalous videos) and a max-margin term between the
        highest anomalous-video and normal-video maxima in the batch.
    """
    eps = 1e-6
    y = video_label.astype(jnp.float32)
    top = jnp.max(jnp.where(mask, scores, 0.0), axis=1)  # [B]
    bce = -(y * jnp.log(top + eps) + (1 - y) * jnp.log(1 - top + eps))
    loss = bce.mean()
    aux = {"mil_bce": loss}
    if extras:
        pair = mask[:, 1:] & mask[:, :-1]
        smooth = jnp.sum(
            jnp.where(pair, jnp.square(scores[:, 1:] - scores[:, :-1]), 0.0)
        ) / jnp.maximum(pair.sum(), 1)
        sparse = jnp.sum(jnp.where(mask, scores, 0.0) * y[:, None]) / jnp.maximum(
            (mask * y[:, None]).sum(), 1
        )
        has_both = (y.sum() > 0) & ((1 - y).sum() > 0)
        max_a = jnp.max(jnp.where(y > 0, top, -jnp.inf))
        max_n = jnp.max(jnp.where(y > 0, -jnp.inf, top))
        margin = jnp.where(has_both, jax.nn.relu(1.0 - max_a + max_n), 0.0)
        loss = loss + 0.01 * smooth + 0.01 * sparse + margin
        aux.update(smoothness=smooth, sparsity=sparse, margin=margin)
    return loss, aux
