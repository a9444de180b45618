"""Greedy and nucleus (top-p) generation on top of the LLaMA KV cache.

The whole loop is one jitted function with static shapes: prefill of the (padded) prompt, then
a ``jax.lax.while_loop`` of ``decode_step`` that stops early once every row has emitted an
end-of-sequence token. Prompts are token ids or a multimodal ``inputs_embeds`` prefix.

    tokens, lengths = generate(model, params, input_ids=ids, attention_mask=mask,
                               max_new_tokens=32, eos_id=2, pad_id=0)
    # tokens [B, max_new] (pad_id after each row's eos), lengths [B] (eos included)

A chat keeps the cache between turns: ``generate(..., return_cache=True)`` also returns it,
and :func:`extend` prefills only a turn's new tokens onto it and decodes from there.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.models import llama, llama_decode

Array = jax.Array


MAX_EOS_IDS = 8  # eos ids are padded to this many (with -1) so they never change the shapes


def top_p_filter(logits: Array, top_p: float) -> Array:
    """Masks (to -inf) every token outside the smallest set whose probability reaches ``top_p``.

    ``logits [B, V]``; the most likely token is always kept, so ``top_p -> 0`` is greedy.
    """
    order = jnp.argsort(-logits, axis=-1)  # [B, V] descending
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of strictly better tokens
    keep_sorted = mass_before < top_p
    keep_sorted = keep_sorted.at[:, 0].set(True)
    keep = (
        jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
    )
    return jnp.where(keep, logits, -jnp.inf)


def choose_token(
    logits: Array, rng: Array, *, greedy: bool, temperature: Array, top_p: Array
) -> Array:
    """Next token ids ``[B]`` from ``logits [B, V]`` (argmax, or top-p sampling)."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / jnp.maximum(temperature, 1e-6)
    return jax.random.categorical(rng, top_p_filter(scaled, top_p), axis=-1).astype(jnp.int32)


def _decode(
    module: llama.LlamaForCausalLM,
    params: Any,
    cache: llama.Cache,
    logits: Array,  # [B, V] next-token logits after the prompt
    choose: Any,  # (logits [B, V], rng) -> ids [B]
    rng: Array,
    eos_ids: Array,
    pad_id: Array,
    max_new_tokens: int,
    decode_weights: llama_decode.Weights | None = None,
) -> tuple[Array, Array, llama.Cache]:
    """The decoding loop after a prefill: ``(tokens [B, max_new], lengths [B], cache)``.
    With ``decode_weights`` (:func:`vau_jax.models.llama_decode.prepare` of ``params``) and
    one row, each step runs :func:`vau_jax.models.llama_decode.decode_step` on them; with
    more rows the products are matrix-matrix and the model's own layout is the faster one
    (SmolLM2's 30 blocks on the 2-core AVX2 EPYC: 25.3 / 19.3 ms at batch 1, 30.0 / 56.3 at
    2, 61.5 / 67.2 at 8, model / decoding layout), so ``params`` are read.

    The cache ends holding every emitted token but the last of each row (the loop stops once
    it is chosen); a row that ended early keeps feeding ``pad_id`` while others decode."""
    b = logits.shape[0]
    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32)
    first = choose(logits, jax.random.fold_in(rng, 0))
    tokens = tokens.at[:, 0].set(first)
    done = jnp.isin(first, eos_ids)
    lengths = jnp.ones((b,), jnp.int32)

    def cond(state: tuple) -> Array:
        step, _, _, done, _, _ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    def body(state: tuple) -> tuple:
        step, last, cache, done, tokens, lengths = state
        if decode_weights is None or b > 1:
            logits, cache = llama.decode_step(module, params, last, cache)
        else:
            logits, cache = llama_decode.decode_step(module.config, decode_weights, last, cache)
        nxt = choose(logits, jax.random.fold_in(rng, step))
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, step].set(nxt)
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | jnp.isin(nxt, eos_ids)
        return step + 1, nxt, cache, done, tokens, lengths

    state = (jnp.asarray(1, jnp.int32), first, cache, done, tokens, lengths)
    _, _, cache, _, tokens, lengths = jax.lax.while_loop(cond, body, state)
    return tokens, lengths, cache


@functools.partial(
    jax.jit, static_argnames=("module", "max_new_tokens", "greedy", "cache_len", "keep_cache")
)
def _generate(
    module: llama.LlamaForCausalLM,
    params: Any,
    input_ids: Array | None,
    inputs_embeds: Array | None,
    attention_mask: Array,
    eos_ids: Array,  # [MAX_EOS_IDS] int32, -1 = unused
    pad_id: Array,
    rng: Array,
    temperature: Array,
    top_p: Array,
    decode_weights: llama_decode.Weights | None,
    *,
    max_new_tokens: int,
    greedy: bool,
    cache_len: int,
    keep_cache: bool = False,
) -> tuple[Array, ...]:
    choose = functools.partial(choose_token, greedy=greedy, temperature=temperature, top_p=top_p)
    prompt = input_ids if input_ids is not None else inputs_embeds
    b = prompt.shape[0]
    cache = llama.init_cache(module.config, b, cache_len)
    logits, cache = llama.prefill(
        module,
        params,
        cache,
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        fresh=True,
    )
    tokens, lengths, cache = _decode(
        module, params, cache, logits, choose, rng, eos_ids, pad_id, max_new_tokens, decode_weights
    )
    return (tokens, lengths, cache) if keep_cache else (tokens, lengths)


def generate(
    module: llama.LlamaForCausalLM,
    params: Any,
    *,
    input_ids: Array | None = None,
    inputs_embeds: Array | None = None,
    attention_mask: Array | None = None,
    max_new_tokens: int = 32,
    eos_id: int | Sequence[int] | None = None,
    pad_id: int = 0,
    greedy: bool = True,
    temperature: float = 1.0,
    top_p: float = 1.0,
    rng: Array | None = None,
    cache_len: int | None = None,
    return_cache: bool = False,
    decode_weights: llama_decode.Weights | None = None,
) -> tuple[Array, ...]:
    """Generates up to ``max_new_tokens`` after a prompt.

    Args:
      input_ids: ``[B, N]`` prompt ids, or ``inputs_embeds [B, N, D]`` (multimodal prefix).
      attention_mask: ``[B, N]``, 1 = token, 0 = padding (left padding is the usual choice).
      eos_id: end-of-sequence id(s); a row stops after emitting one (``None``: never stops).
      pad_id: written after a row's end.
      greedy: argmax; otherwise top-p sampling at ``temperature`` with ``rng`` (seeded).
      cache_len: KV-cache length, default ``N + max_new_tokens``.
      return_cache: also return the final KV cache (:func:`vau_jax.models.llama.init_cache`
        layout, ``cache_len`` slots): the prompt, then every generated token but each row's
        last (a chat continues from it, :func:`extend`).
      decode_weights: ``params`` re-laid for decoding on the CPU
        (:func:`vau_jax.models.llama_decode.prepare`, made once per set of weights and
        reused across calls); a one-row batch's decoding steps then read them instead of
        ``params`` (batches of several rows, and the prefill, always run on ``params``).
    Returns:
      ``tokens [B, max_new_tokens]`` int32 and ``lengths [B]``: number of generated tokens per
      row, its eos included (then the cache, with ``return_cache``).
    """
    prompt = input_ids if input_ids is not None else inputs_embeds
    if prompt is None or (input_ids is not None and inputs_embeds is not None):
        raise ValueError("pass exactly one of input_ids [B, N] or inputs_embeds [B, N, D]")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    b, n = prompt.shape[:2]
    if attention_mask is None:
        attention_mask = jnp.ones((b, n), jnp.int32)
    cache_len = n + max_new_tokens if cache_len is None else cache_len
    if cache_len < n + max_new_tokens:
        raise ValueError(f"cache_len {cache_len} < prompt {n} + max_new_tokens {max_new_tokens}")
    eos = [] if eos_id is None else [eos_id] if isinstance(eos_id, int) else list(eos_id)
    if len(eos) > MAX_EOS_IDS:
        raise ValueError(f"at most {MAX_EOS_IDS} eos ids, got {len(eos)}")
    eos = eos + [-1] * (MAX_EOS_IDS - len(eos))
    if not greedy and rng is None:
        raise ValueError("sampling (greedy=False) needs an rng key")
    rng = jax.random.key(0) if rng is None else rng
    return _generate(
        module,
        params,
        None if input_ids is None else jnp.asarray(input_ids, jnp.int32),
        None if inputs_embeds is None else jnp.asarray(inputs_embeds),
        jnp.asarray(attention_mask),
        jnp.asarray(eos, jnp.int32),
        jnp.asarray(pad_id, jnp.int32),
        rng,
        jnp.asarray(temperature, jnp.float32),
        jnp.asarray(top_p, jnp.float32),
        decode_weights,
        max_new_tokens=max_new_tokens,
        greedy=bool(greedy),
        cache_len=cache_len,
        keep_cache=bool(return_cache),
    )


#: Traces of :func:`extend`'s jitted step, by ``(new tokens N, cache slots S,
#: max_new_tokens)``: a chat whose turns share a length bucket compiles once.
EXTEND_TRACES: collections.Counter[tuple[int, int, int]] = collections.Counter()


@functools.partial(jax.jit, static_argnames=("module", "max_new_tokens"), donate_argnums=(2,))
def _extend(
    module: llama.LlamaForCausalLM,
    params: Any,
    cache: llama.Cache,  # donated: the caller's cache is consumed
    input_ids: Array,  # [B, N] right-padded new tokens
    attention_mask: Array,  # [B, N]
    eos_ids: Array,  # [MAX_EOS_IDS] int32, -1 = unused
    pad_id: Array,
    decode_weights: llama_decode.Weights | None,
    *,
    max_new_tokens: int,
) -> tuple[Array, Array, llama.Cache, Array]:
    EXTEND_TRACES[(input_ids.shape[1], cache["mask"].shape[1], max_new_tokens)] += 1
    start = cache["index"]
    logits, cache = llama.prefill(
        module, params, cache, input_ids=input_ids, attention_mask=attention_mask
    )
    # Right padding: the padded slots (masked, never attended) are handed back to decoding.
    used = jnp.max(jnp.sum(attention_mask.astype(jnp.int32), axis=1))
    cache = {**cache, "index": start + used}
    choose = functools.partial(
        choose_token, greedy=True, temperature=jnp.float32(1.0), top_p=jnp.float32(1.0)
    )
    rng = jax.random.key(0)  # unused by greedy decoding
    tokens, lengths, cache = _decode(
        module, params, cache, logits, choose, rng, eos_ids, pad_id, max_new_tokens, decode_weights
    )
    return tokens, lengths, cache, logits


def extend(
    module: llama.LlamaForCausalLM,
    params: Any,
    cache: llama.Cache,
    input_ids: Array,
    attention_mask: Array | None = None,
    *,
    max_new_tokens: int = 32,
    eos_id: int | Sequence[int] | None = None,
    pad_id: int = 0,
    decode_weights: llama_decode.Weights | None = None,
) -> tuple[Array, Array, llama.Cache, Array]:
    """Greedy generation that continues a filled KV cache: the new tokens are prefilled at
    its next slot (only they; nothing before them runs again), then decoded from.

    Args:
      cache: a :func:`vau_jax.models.llama.init_cache` cache holding the conversation so far
        (e.g. ``generate(..., return_cache=True)``'s). It is **donated**: do not use it after
        the call; use the returned one.
      input_ids: ``[B, N]`` the new token ids, right-padded (pad ``N`` to a few bucket sizes:
        one compilation per ``N``); ``attention_mask [B, N]`` marks the real ones (default
        all). Padded slots are masked, and decoding reuses them.
      eos_id, pad_id, decode_weights: as :func:`generate`.
    Returns:
      ``tokens [B, max_new_tokens]``, ``lengths [B]`` (as :func:`generate`), the cache (now
      also holding the new tokens and every generated token but each row's last) and the
      logits ``[B, V]`` that chose the first generated token.
    Raises:
      ValueError: the cache has fewer than ``N`` free slots, or too few for the new tokens and
        ``max_new_tokens`` (``index + N_real + max_new_tokens - 1 > S``).
    """
    ids = jnp.asarray(input_ids, jnp.int32)
    b, n = ids.shape
    mask = jnp.ones((b, n), bool) if attention_mask is None else jnp.asarray(attention_mask, bool)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    index, slots = int(cache["index"]), int(cache["mask"].shape[1])
    used = int(jnp.max(jnp.sum(mask, axis=1)))
    if index + n > slots or index + used + max_new_tokens - 1 > slots:
        raise ValueError(
            f"KV cache full: {index} of {slots} slots used, {n} new tokens ({used} real) and "
            f"{max_new_tokens} to generate"
        )
    eos = [] if eos_id is None else [eos_id] if isinstance(eos_id, int) else list(eos_id)
    if len(eos) > MAX_EOS_IDS:
        raise ValueError(f"at most {MAX_EOS_IDS} eos ids, got {len(eos)}")
    eos = eos + [-1] * (MAX_EOS_IDS - len(eos))
    return _extend(
        module,
        params,
        cache,
        ids,
        mask,
        jnp.asarray(eos, jnp.int32),
        jnp.asarray(pad_id, jnp.int32),
        decode_weights,
        max_new_tokens=int(max_new_tokens),
    )
