"""VAD-LLaMA's anomaly predictor (AP) and Long-Term Context (LTC) module (DESIGN §5).

For clip features ``x_i`` of one video, three lists of length ``K`` are kept *online and
causally* (a ``lax.scan`` over clips with fixed-size buffers):

- ``N``: the features of the ``K`` lowest-scored clips so far (normal context),
- ``A``: the ``K`` highest-scored clips so far (abnormal context),
- ``H``: the last ``K`` clips (short-term history; LSTC).

**Past clips only.** Clip ``i`` reads lists built from clips ``< i`` ("given the raw
features of the next clip, we integrate the current lists", paper §1), and only then is it
inserted ("every new clip will be immediately evaluated based on its anomaly score to update
the lists (or not)", §3.1). Each list ``X`` is read by the cross-attention
``r = (x_i · Xᵀ) · X`` (Eq. 2, raw dot product; ``"softmax"`` and ``"cosine"`` normalised
variants as options) and ``x̃_i = x_i + W_n(n_i) + W_a(a_i) + W_h(h_i)`` (Eq. 3), each ``W`` a
D→64→D MLP ("soft weights"). **Empty lists**: before a video's first valid clip has been
inserted (its clip 0, or a chunk after only padding) every list is empty; an empty list
retrieves zeros and its ``W`` term is dropped, so ``x̃_i = x_i`` there (no context yet, so
no change; a ``W`` applied to zeros would add a learned constant instead). The three lists
fill together (the first inserted clip enters ``N``, ``A`` and ``H``), so one flag per clip,
``has_past``, says whether they hold anything. The AP maps features to 2 logits:
Linear(D→64) → LayerNorm → Linear(64→2); the abnormal probability ``softmax(logits)[..., 1]``
is the clip score.

The selection scores deciding list membership are supplied by the caller (VAD-LLaMA uses the
phase-1 baseline VADor's scores) and never receive gradients. Streaming: the scan carry is a
:class:`LTCState` of fixed size, so an arbitrarily long video can be processed chunk by
chunk with memory independent of its length, giving the numbers of one pass over the whole
video.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
from flax import linen as nn

from vau_jax.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class LTCConfig:
    """LTC hyper-parameters. ``k=0`` or no list enabled = the plain baseline."""

    dim: int
    k: int = 4
    hidden: int = 64
    use_normal: bool = True
    use_abnormal: bool = True
    use_history: bool = True
    retrieval: str = "dot"  # "dot" (paper) | "softmax" | "cosine"

    @property
    def enabled(self) -> bool:
        return self.k > 0 and (self.use_normal or self.use_abnormal or self.use_history)


@flax.struct.dataclass
class LTCState:
    """Fixed-size online lists for a batch of videos (the ``lax.scan`` carry)."""

    normal: Array  # [B, K, D]
    normal_score: Array  # [B, K]  (+inf = empty slot)
    abnormal: Array  # [B, K, D]
    abnormal_score: Array  # [B, K]  (-inf = empty slot)
    history: Array  # [B, K, D]  (oldest first)
    history_valid: Array  # [B, K] bool


def init_state(batch: int, k: int, dim: int, dtype: Any = jnp.float32) -> LTCState:
    """Empty lists."""
    z = jnp.zeros((batch, k, dim), dtype)
    return LTCState(
        normal=z,
        normal_score=jnp.full((batch, k), jnp.inf, jnp.float32),
        abnormal=z,
        abnormal_score=jnp.full((batch, k), -jnp.inf, jnp.float32),
        history=z,
        history_valid=jnp.zeros((batch, k), bool),
    )


def _update_one(state: LTCState, x: Array, score: Array, valid: Array) -> LTCState:
    """One video, one clip: ``x`` [D], ``score`` [], ``valid`` [] bool."""
    # Normal list: replace the highest-scored slot (empty slots score +inf) if the new clip
    # is lower.
    j = jnp.argmax(state.normal_score)
    take_n = valid & (score < state.normal_score[j])
    normal = jnp.where(take_n, state.normal.at[j].set(x), state.normal)
    normal_score = jnp.where(take_n, state.normal_score.at[j].set(score), state.normal_score)
    j = jnp.argmin(state.abnormal_score)
    take_a = valid & (score > state.abnormal_score[j])
    abnormal = jnp.where(take_a, state.abnormal.at[j].set(x), state.abnormal)
    abnormal_score = jnp.where(take_a, state.abnormal_score.at[j].set(score), state.abnormal_score)
    history = jnp.where(valid, jnp.concatenate([state.history[1:], x[None]], 0), state.history)
    hvalid = jnp.where(
        valid, jnp.concatenate([state.history_valid[1:], jnp.ones((1,), bool)]), state.history_valid
    )
    return LTCState(normal, normal_score, abnormal, abnormal_score, history, hvalid)


def _retrieve(x: Array, items: Array, valid: Array, mode: str) -> Array:
    """Cross-attention read of one list: ``x`` [D], ``items`` [K, D], ``valid`` [K] -> [D].

    ``"dot"`` (paper Eq. 2): ``Σ_j (x·X_j) X_j``; ``"softmax"``: weights
    ``softmax_j(x·X_j / √D)``; ``"cosine"``: the mean over the list of ``cos(x, X_j) X_j``.
    Only valid slots count; an empty list retrieves zeros.
    """
    if mode == "dot":
        w = (items @ x) * valid
    elif mode == "cosine":
        cos = (items @ x) / (jnp.linalg.norm(items, axis=-1) * jnp.linalg.norm(x) + 1e-6)
        w = cos * valid / jnp.maximum(valid.sum(), 1)
    elif mode == "softmax":
        # A finite fill keeps an empty list (every video's first clip) free of NaNs, also in
        # the backward pass; its weights are then zeroed.
        logits = jnp.where(valid, (items @ x) / jnp.sqrt(x.shape[-1]), -1e30)
        w = jnp.where(valid, jax.nn.softmax(logits), 0.0)
    else:
        raise ValueError(f"unknown LTC retrieval {mode!r}; choose dot, softmax or cosine")
    return w @ items


class Context(NamedTuple):
    """What :func:`scan_lists` retrieves for every clip from the lists of its past clips."""

    normal: Array  # [B, N, D]  n_i from N (zeros when empty)
    abnormal: Array  # [B, N, D]  a_i from A (zeros when empty)
    history: Array  # [B, N, D]  h_i from H (zeros when empty)
    has_past: Array  # [B, N] bool: the lists held at least one clip when clip i read them


def scan_lists(
    x: Array, scores: Array, mask: Array, state: LTCState, cfg: LTCConfig
) -> tuple[Context, LTCState]:
    """Runs the online lists over clips: clip ``i`` retrieves from the lists of clips ``< i``
    (this chunk's earlier clips and ``state``), then is inserted.

    Args:
      x: ``[B, N, D]`` clip features; scores: ``[B, N]`` selection scores (no gradient);
      mask: ``[B, N]`` bool, False on padding clips (never inserted; their retrievals are
        computed but meaningless).
      state: lists carried in from earlier chunks (:func:`init_state` for a new video).
    Returns:
      the :class:`Context` of every clip (``[B, N, D]`` retrievals, ``[B, N]`` flags) and the
      lists after the last clip.
    """
    scores = jax.lax.stop_gradient(scores.astype(jnp.float32))

    def per_video(st: LTCState, xv: Array, sv: Array, mv: Array):
        def body(carry: LTCState, inp):
            xi, si, mi = inp
            # Read the lists of past clips first ...
            n = _retrieve(xi, carry.normal, jnp.isfinite(carry.normal_score), cfg.retrieval)
            a = _retrieve(xi, carry.abnormal, jnp.isfinite(carry.abnormal_score), cfg.retrieval)
            h = _retrieve(xi, carry.history, carry.history_valid, cfg.retrieval)
            past = jnp.any(carry.history_valid)
            # ... then insert clip i (or not) for the clips after it.
            carry = _update_one(carry, xi, si, mi)
            return carry, (n, a, h, past)

        return jax.lax.scan(body, st, (xv, sv, mv))

    # The lists hold raw features: retrieval does not backpropagate into list membership,
    # but gradients flow through the retrieved feature values.
    state, (n, a, h, past) = jax.vmap(per_video)(state, x, scores, mask)
    return Context(n, a, h, past), state


class SoftWeight(nn.Module):
    """``W``: D → hidden → D MLP applied to a retrieved context feature."""

    dim: int
    hidden: int = 64

    @nn.compact
    def __call__(self, r: Array) -> Array:  # [..., D] -> [..., D]
        h = jax.nn.relu(layers.dense(self.hidden, ("embed", "mlp"), name="fc1")(r))
        return layers.dense(
            self.dim, ("mlp", "embed"), name="fc2", kernel_init=nn.initializers.zeros_init()
        )(h)


class AnomalyPredictor(nn.Module):
    """AP: Linear(D→64) → LayerNorm → Linear(64→2); returns logits ``[..., 2]``."""

    hidden: int = 64

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = layers.dense(self.hidden, ("embed", "mlp"), name="fc1")(x)
        h = layers.layer_norm(name="norm", axis_name="mlp")(h)
        return layers.dense(2, ("mlp", None), name="fc2")(h)


class LTC(nn.Module):
    """Long-(Short-)Term Context: ``x̃ = x + W_n(n) + W_a(a) [+ W_h(h)]``."""

    config: LTCConfig

    @nn.compact
    def __call__(
        self, x: Array, scores: Array, mask: Array, state: LTCState | None = None
    ) -> tuple[Array, LTCState]:
        """``x`` [B, N, D], ``scores``/``mask`` [B, N] -> (``x̃`` [B, N, D], new state)."""
        cfg = self.config
        b, _, d = x.shape
        if not cfg.enabled:
            return x, state if state is not None else init_state(b, max(cfg.k, 1), d, x.dtype)
        state = init_state(b, cfg.k, d, x.dtype) if state is None else state
        ctx, state = scan_lists(x, scores, mask, state, cfg)
        terms = []  # [B, N, D] each
        if cfg.use_normal:
            terms.append(SoftWeight(d, cfg.hidden, name="w_normal")(ctx.normal))
        if cfg.use_abnormal:
            terms.append(SoftWeight(d, cfg.hidden, name="w_abnormal")(ctx.abnormal))
        if cfg.use_history:
            terms.append(SoftWeight(d, cfg.hidden, name="w_history")(ctx.history))
        context = jnp.where(ctx.has_past[..., None], sum(terms), 0.0)  # empty lists: no term
        return x + context.astype(x.dtype), state


def anomaly_scores(logits: Array) -> Array:
    """AP logits ``[..., 2]`` -> abnormal probability ``[...]``."""
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1]
