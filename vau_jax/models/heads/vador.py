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


#: ``config.mil_loss`` names (see :func:`mil_loss`); ``"paper"`` is the default.
MIL_OBJECTIVES = ("paper", "bce", "bce_extras")


def check_mil_objective(name: str) -> str:
    """``name`` if it is one of :data:`MIL_OBJECTIVES`, else a ``ValueError`` listing them."""
    if name not in MIL_OBJECTIVES:
        raise ValueError(f"unknown MIL objective {name!r}; choose one of {MIL_OBJECTIVES}")
    return name


def _bce(p: Array, y: Array, eps: float = 1e-6) -> Array:
    """Eq. (1)'s binary cross-entropy per video: ``p``, ``y`` ``[B]`` -> ``[B]``."""
    return -(y * jnp.log(p + eps) + (1 - y) * jnp.log(1 - p + eps))


def mil_loss(
    scores: Array, mask: Array, video_label: Array, *, objective: str = "paper"
) -> tuple[Array, dict]:
    """The weakly supervised MIL objective on video-level labels (no frame label anywhere).

    Every term is a function of the clip scores and the video label ``y`` only. With
    ``s_max = max_i g(x_i)`` and ``s_min = min_i g(x_i)`` over a video's valid clips:

    - ``"paper"`` (default; VAD-LLaMA §3.2 Eq. (1) as implemented per §4.2, "We implemented
      the max value scores and max margin scores in Eq 1 as [13, 14]"): Eq. (1)'s BCE on the
      *max value score* ``y' = s_max`` (§3.2: "y' is computed as max{g(x_i)}", as UMIL [13])
      plus Eq. (1)'s BCE on the *max margin score* ``y' = s_max − s_min`` (the within-video
      score margin of WSAL [14]: an anomalous video must hold both a confident clip and a
      normal one, a normal video's scores must stay flat), weight 1 each (the paper gives no
      weight; the public code's ``w_margin`` is 1). The margin term averages over videos with
      at least 2 valid clips (one clip has no margin).
    - ``"bce"``: Eq. (1) on ``s_max`` alone.
    - ``"bce_extras"``: ``"bce"`` + ``0.01·smoothness`` (mean squared difference of
      consecutive valid clips) + ``0.01·sparsity`` (mean clip score of anomalous videos) —
      the public code's two extra terms — + a batch max-margin hinge
      ``relu(1 − max_{y=1} s_max + max_{y=0} s_max)`` (Sultani et al.'s ranking idea, 0 when
      the batch lacks either kind).

    Args:
      scores: ``[B, Nc]`` abnormal probabilities; mask: ``[B, Nc]`` bool (False = padding);
      video_label: ``[B]`` 0/1; objective: one of :data:`MIL_OBJECTIVES`.
    Returns:
      the scalar loss and its terms (``mil_bce``, and ``mil_margin`` / ``smoothness``,
      ``sparsity``, ``margin`` for the objectives that have them).
    """
    check_mil_objective(objective)
    y = video_label.astype(jnp.float32)
    top = jnp.max(jnp.where(mask, scores, 0.0), axis=1)  # [B] s_max
    loss = _bce(top, y).mean()
    aux = {"mil_bce": loss}
    if objective == "paper":
        bottom = jnp.min(jnp.where(mask, scores, 1.0), axis=1)  # [B] s_min
        has_two = mask.sum(1) >= 2  # [B]
        margin = jnp.where(has_two, top - bottom, 0.0)  # [B] in [0, 1]
        term = jnp.sum(jnp.where(has_two, _bce(margin, y), 0.0)) / jnp.maximum(has_two.sum(), 1)
        loss = loss + term
        aux["mil_margin"] = term
    elif objective == "bce_extras":
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
