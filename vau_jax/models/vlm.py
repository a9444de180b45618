"""Vision tokens -> LLM prefix: LLaMA-VID context + content tokens and the video LLM.

Per frame, the (SETS-selected) visual tokens ``X_t`` ``[K, Dv]`` become two LLM tokens
(LLaMA-VID, Li et al. 2023; VA-GPT builds on it):

* **context token**: a text-conditioned Q-Former (queries + the instruction text) gives
  ``Q_t`` ``[Nq, Dq]``; ``query_proj`` maps it to ``Dv``; ``E_t = mean_q softmax(Q_t X_tᵀ /
  sqrt(Dv)) X_t`` (attention of the text-aware queries over the visual tokens, averaged over
  queries); ``context_proj`` maps ``E_t`` to the LLM width;
* **content token**: ``mean_k X_t`` through ``content_proj``.

LLaMA-VID's own checkpoints (``vau_jax.convert.llamavid``) add two pieces, switched on by
:class:`VLMConfig` fields and absent by default: ``qformer_ln`` (``vlm_att_ln``, a LayerNorm
on the visual tokens the Q-Former reads) and ``key_proj`` (``vlm_att_key_projector``, the
attention's keys are ``key_proj(X_t)``; the values stay ``X_t``); there the context
projector is one Linear (``context_hidden=0``) while the content projector is
``mlp2x_gelu``. Name map (ours <- LLaMA-VID's ``model.*``): ``qformer`` <- ``vlm_att_encoder``
+ ``vlm_att_query``, ``qformer_ln`` <- ``vlm_att_ln``, ``query_proj`` <- ``vlm_att_projector``,
``key_proj`` <- ``vlm_att_key_projector``, ``context_proj`` <- ``vlm_att_val_projector``,
``content_proj`` <- ``mm_projector``, ``llm`` <- the LLaMA tensors.

Frame ``t`` contributes ``[context_t, content_t]``; a video of ``T`` frames gives ``2T``
embeddings, spliced into the text embeddings at the ``video_mask`` positions that
:func:`vau_jax.data.chat.tokenize_chat` reserved (in order). Top-level parameter names
(``qformer``, ``query_proj``, ``context_proj``, ``content_proj``, ``llm``) are API for
freezing regexes; ``llm`` is a :class:`~vau_jax.models.llama.LlamaForCausalLM` tree, so a
converted or GGUF checkpoint drops in as ``params["llm"]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.models import layers, llama
from vau_jax.models.layers import constrain
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vau_jax.models.qformer import QFormer, QFormerConfig

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """A LLaMA-VID-style video LLM.

    Attributes:
      llm: the decoder.
      qformer: text-conditioned Q-Former (``text_input=True``; its ``encoder_hidden_size``
        must equal ``vision_width``).
      vision_width: width ``Dv`` of the visual tokens.
      projector_hidden: 0 -> linear projectors; > 0 -> ``Dense -> GELU -> Dense`` with this
        hidden width (LLaVA's ``mlp2x_gelu``).
      context_hidden: the context projector's hidden width when it differs from
        ``projector_hidden`` (``None``: the same; LLaMA-VID: 0, one Linear).
      key_proj: a ``Dv -> Dv`` Linear on the attention keys (LLaMA-VID).
      qformer_ln: a LayerNorm (eps ``qformer_ln_eps``) on the Q-Former's visual input
        (LLaMA-VID's ``vlm_att_ln``).
    """

    llm: LlamaConfig
    qformer: QFormerConfig
    vision_width: int
    projector_hidden: int = 0
    context_hidden: int | None = None
    key_proj: bool = False
    qformer_ln: bool = False
    qformer_ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        # Nested configs come back from a converted checkpoint's JSON as dicts.
        if isinstance(self.llm, dict):
            object.__setattr__(self, "llm", LlamaConfig(**self.llm))
        if isinstance(self.qformer, dict):
            object.__setattr__(self, "qformer", QFormerConfig(**self.qformer))
        if self.qformer.encoder_hidden_size != self.vision_width:
            raise ValueError(
                f"qformer.encoder_hidden_size={self.qformer.encoder_hidden_size} != "
                f"vision_width={self.vision_width}"
            )
        if not self.qformer.text_input:
            raise ValueError("the context token needs a text-conditioned Q-Former (text_input)")


class Projector(nn.Module):
    """``[..., Din] -> [..., features]``: Linear, or Linear-GELU-Linear when ``hidden > 0``."""

    features: int
    hidden: int = 0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.hidden:
            x = layers.dense(self.hidden, ("embed", "mlp"), name="fc1")(x)
            x = nn.gelu(x, approximate=False)
            return layers.dense(self.features, ("mlp", "embed"), name="fc2")(x)
        return layers.dense(self.features, (None, "embed"), name="linear")(x)


class VideoLLM(nn.Module):
    """Visual tokens + instruction -> LLM logits (see the module docstring)."""

    config: VLMConfig

    def setup(self) -> None:
        cfg = self.config
        d = cfg.llm.hidden_size
        self.qformer = QFormer(cfg.qformer)
        self.query_proj = layers.dense(cfg.vision_width, (None, "embed"), name="query_proj")
        if cfg.key_proj:
            self.key_proj = layers.dense(cfg.vision_width, (None, "embed"), name="key_proj")
        if cfg.qformer_ln:
            self.qformer_ln = layers.layer_norm(name="qformer_ln", eps=cfg.qformer_ln_eps)
        ctx = cfg.projector_hidden if cfg.context_hidden is None else cfg.context_hidden
        self.context_proj = Projector(d, ctx)
        self.content_proj = Projector(d, cfg.projector_hidden)
        self.llm = LlamaForCausalLM(cfg.llm)

    def visual_embeds(
        self,
        visual: Array,  # [B, T, K, Dv]
        query_ids: Array,  # [B, Lq] instruction tokens for the Q-Former
        query_mask: Array | None = None,  # [B, Lq] 1 = token
    ) -> Array:
        """Per-frame context and content tokens, interleaved: ``[B, 2T, D_llm]``."""
        b, t, k, dv = visual.shape
        x = visual.reshape(b * t, k, dv)
        ids = jnp.repeat(query_ids, t, axis=0)  # [B*T, Lq]
        mask = None if query_mask is None else jnp.repeat(query_mask, t, axis=0)
        cfg = self.config
        nq = cfg.qformer.num_query_tokens
        q_in = self.qformer_ln(x) if cfg.qformer_ln else x
        q = self.qformer(q_in, input_ids=ids, attention_mask=mask)["last_hidden_state"][:, :nq]
        q = self.query_proj(q)  # [B*T, Nq, Dv]
        keys = self.key_proj(x) if cfg.key_proj else x  # [B*T, K, Dv]
        att = jnp.einsum("bqd,bkd->bqk", q, keys) / jnp.sqrt(jnp.float32(dv))
        ctx = jnp.einsum("bqk,bkd->bqd", jax.nn.softmax(att, axis=-1), x).mean(1)  # [B*T, Dv]
        context = self.context_proj(ctx)
        content = self.content_proj(x.mean(1))
        tokens = jnp.stack([context, content], axis=1)  # [B*T, 2, D]
        return constrain(tokens.reshape(b, 2 * t, -1), ("batch", "length", "embed"))

    def embed(self, input_ids: Array, video_mask: Array, visual_embeds: Array) -> Array:
        """Text embeddings with ``visual_embeds [B, V, D]`` written, in order, at the
        ``video_mask [B, L]`` positions (each row must have exactly ``V`` of them)."""
        text = self.llm.embed(input_ids)  # [B, L, D]
        v = visual_embeds.shape[1]
        slot = jnp.clip(jnp.cumsum(video_mask, axis=1) - 1, 0, v - 1)  # [B, L]
        vis = jnp.take_along_axis(visual_embeds, slot[..., None], axis=1)  # [B, L, D]
        return jnp.where(video_mask[..., None], vis.astype(text.dtype), text)

    def prefix_embeds(
        self,
        input_ids: Array,  # [B, L]
        video_mask: Array,  # [B, L] bool
        visual: Array,  # [B, T, K, Dv]
        query_ids: Array,  # [B, Lq]
        query_mask: Array | None = None,
    ) -> Array:
        """The LLM input embeddings ``[B, L, D]`` of a multimodal sequence. A packed row
        (:func:`vau_jax.data.packing.pack_rows`) holds ``K`` videos: ``visual [B, K, T, P,
        Dv]`` and ``query_ids`` / ``query_mask [B, K, Lq]``, in the order of their ``2T``
        video positions each (zero-padded to ``K``; text-only segments have none)."""
        if visual.ndim == 4:  # one video per row: K = 1
            visual, query_ids = visual[:, None], query_ids[:, None]
            query_mask = None if query_mask is None else query_mask[:, None]
        b, k = visual.shape[:2]
        flat = lambda a: None if a is None else a.reshape((b * k,) + a.shape[2:])  # noqa: E731
        vis = self.visual_embeds(flat(visual), flat(query_ids), flat(query_mask))
        return self.embed(input_ids, video_mask, vis.reshape(b, -1, vis.shape[-1]))

    def __call__(
        self,
        input_ids: Array,  # [B, L]
        attention_mask: Array,  # [B, L]
        video_mask: Array,  # [B, L]
        visual: Array,  # [B, T, K, Dv]
        query_ids: Array,  # [B, Lq]
        query_mask: Array | None = None,
        segment_ids: Array | None = None,  # [B, L] packed rows
    ) -> dict[str, Any]:
        """``{"logits": [B, L, V]}`` of the multimodal sequence; packed rows pass
        ``segment_ids`` instead of ``attention_mask`` and their videos as in
        :meth:`prefix_embeds`."""
        x = self.prefix_embeds(input_ids, video_mask, visual, query_ids, query_mask)
        return self.llm(inputs_embeds=x, attention_mask=attention_mask, segment_ids=segment_ids)


def module_from_config(cfg: VLMConfig) -> VideoLLM:
    """The Flax module of a video-LLM config (a converted LLaMA-VID checkpoint's family)."""
    return VideoLLM(cfg)


def dummy_inputs(cfg: VLMConfig) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Tiny ``(args, kwargs)`` for ``init`` / ``eval_shape``: one frame of 4 visual tokens,
    its 2 LLM slots in an 8-token prompt, a 4-token instruction."""
    ids = jnp.zeros((1, 8), jnp.int32)  # [B, L]
    video = jnp.zeros((1, 8), bool).at[:, 1:3].set(True)
    visual = jnp.zeros((1, 1, 4, cfg.vision_width), jnp.float32)  # [B, T, K, Dv]
    query = jnp.zeros((1, 4), jnp.int32)  # [B, Lq]
    return (ids, jnp.ones((1, 8), bool), video, visual, query), {}


def lm_loss(logits: Array, input_ids: Array, loss_mask: Array) -> tuple[Array, dict[str, Array]]:
    """Next-token cross-entropy on the target tokens only.

    Args:
      logits: ``[B, L, V]`` (position ``i`` predicts token ``i + 1``).
      input_ids: ``[B, L]``.
      loss_mask: ``[B, L]`` True where ``input_ids[i]`` is a target (answer token).
    Returns:
      mean loss over target tokens, and ``{"token_accuracy", "target_tokens"}``.
    """
    return _target_loss(logits[:, :-1], input_ids[:, 1:], loss_mask[:, 1:])


def _target_loss(logits: Array, targets: Array, weights: Array) -> tuple[Array, dict[str, Array]]:
    """Mean cross-entropy of ``logits [B, N, V]`` against ``targets [B, N]`` over the
    positions ``weights [B, N]`` marks, with :func:`lm_loss` 's aux."""
    lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    m = weights.astype(jnp.float32)
    nll = -jnp.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
    n = jnp.maximum(m.sum(), 1.0)
    acc = ((jnp.argmax(lp, -1) == targets) * m).sum() / n
    return (nll * m).sum() / n, {"token_accuracy": acc, "target_tokens": m.sum()}


def target_positions(
    loss_mask: np.ndarray, width: int | None = None, bucket: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Host side: the positions whose logits predict a target token, for :func:`lm_loss_at`.

    Args:
      loss_mask: ``[B, L]`` True where ``input_ids[i]`` is a target (as :func:`lm_loss`).
      width: ``K``, the positions kept per row; ``None``: the most targets of any row,
        rounded up to ``bucket`` (few distinct shapes, so few compilations).
    Returns:
      ``positions [B, K]`` int32 (``i`` such that token ``i + 1`` is a target, in order;
      padded with 0) and ``weights [B, K]`` float32 (1 for a target, 0 for padding).
    """
    m = np.asarray(loss_mask, bool)[:, 1:]
    counts = m.sum(axis=1)
    most = int(counts.max(initial=0))
    k = max(bucket, -(-most // bucket) * bucket) if width is None else int(width)
    if most > k:
        raise ValueError(f"a row has {most} target tokens, more than width={k}")
    pos = np.zeros((m.shape[0], k), np.int32)
    weight = np.zeros((m.shape[0], k), np.float32)
    for r in range(m.shape[0]):
        idx = np.flatnonzero(m[r])
        pos[r, : len(idx)] = idx
        weight[r, : len(idx)] = 1.0
    return pos, weight


def lm_loss_at(
    logits: Array, input_ids: Array, positions: Array, weights: Array
) -> tuple[Array, dict[str, Array]]:
    """:func:`lm_loss` from the logits of the target positions only.

    Args:
      logits: ``[B, K, V]``, the logits at ``positions`` (``LlamaForCausalLM(...,
        logits_at=positions)``).
      input_ids: ``[B, L]``.
      positions, weights: ``[B, K]`` from :func:`target_positions`.
    Returns:
      what :func:`lm_loss` returns for the same rows (equal up to float rounding).
    """
    return _target_loss(logits, jnp.take_along_axis(input_ids, positions + 1, axis=1), weights)


def sequence_logprob(logits: Array, input_ids: Array, loss_mask: Array) -> Array:
    """Sum of ``log p(token)`` over the ``loss_mask`` tokens of each row: ``[B]``
    (multiple-choice scoring by option log-likelihood)."""
    lp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    tok = jnp.take_along_axis(lp, input_ids[:, 1:, None], axis=-1)[..., 0]
    return (tok * loss_mask[:, 1:]).sum(-1)


def shared_prefix_logprob(
    model: VideoLLM,
    params: Any,
    prefix_ids: Array,  # [B, P] left-padded
    prefix_mask: Array,  # [B, P] bool
    video_mask: Array,  # [B, P] bool
    visual: Array,  # [B, T, K, Dv]
    query_ids: Array,  # [B, Lq]
    query_mask: Array | None,  # [B, Lq]
    cont_ids: Array,  # [B, O, C] right-padded continuations
    cont_mask: Array,  # [B, O, C] bool: real continuation tokens
    score_mask: Array,  # [B, O, C] bool: tokens whose log-probability counts
) -> Array:
    """``log p(continuation | prefix)`` summed over the ``score_mask`` tokens: ``[B, O]``.

    The multimodal prefix (video tokens and prompt) of each row runs once through the LLM
    into a KV cache, which its ``O`` continuations (e.g. the answer lines of the options of a
    multiple-choice question) then extend in one batch: the same numbers as
    :func:`sequence_logprob` over ``O`` full sequences, for about ``P + O*C`` tokens of work
    instead of ``O*(P + C)``.
    """
    b, o, c = cont_ids.shape
    lm = LlamaForCausalLM(model.config.llm)
    emb = model.apply(
        {"params": params},
        prefix_ids,
        video_mask,
        visual,
        query_ids,
        query_mask,
        method=VideoLLM.prefix_embeds,
    )
    cache = llama.init_cache(model.config.llm, b, prefix_ids.shape[1] + c, emb.dtype)
    first, cache = llama.prefill(
        lm, params["llm"], cache, inputs_embeds=emb, attention_mask=prefix_mask
    )  # first: [B, V], predicts each continuation's first token
    cache = {
        "k": jnp.repeat(cache["k"], o, axis=1),
        "v": jnp.repeat(cache["v"], o, axis=1),
        "mask": jnp.repeat(cache["mask"], o, axis=0),
        "pos": jnp.repeat(cache["pos"], o, axis=0),
        "index": cache["index"],
    }
    ids = cont_ids.reshape(b * o, c)

    def step(mdl: LlamaForCausalLM) -> Array:
        x = mdl.embed(ids)
        return mdl.cached_step(x, cont_mask.reshape(b * o, c), cache, all_logits=True)[0]

    rest = nn.apply(step, lm)({"params": params["llm"]})  # [B*O, C, V]
    logits = jnp.concatenate([jnp.repeat(first, o, axis=0)[:, None], rest[:, :-1]], axis=1).astype(
        jnp.float32
    )
    lp = jax.nn.log_softmax(logits, axis=-1)
    tok = jnp.take_along_axis(lp, ids[..., None], axis=-1)[..., 0]  # [B*O, C]
    return (tok * score_mask.reshape(b * o, c)).sum(-1).reshape(b, o)
