"""Greedy and nucleus (top-p) generation on top of the LLaMA KV cache.

The whole loop is one jitted function with static shapes: prefill of the (padded) prompt, then
a ``jax.lax.while_loop`` of ``decode_step`` that stops early once every row has emitted an
end-of-sequence token. Prompts are token ids or a multimodal ``inputs_embeds`` prefix.

    tokens, lengths = generate(model, params, input_ids=ids, attention_mask=mask,
                               max_new_tokens=32, eos_id=2, pad_id=0)
    # tokens [B, max_new] (pad_id after each row's eos), lengths [B] (eos included)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.models import llama

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


@functools.partial(jax.jit, static_argnames=("module", "max_new_tokens", "greedy", "cache_len"))
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
    *,
    max_new_tokens: int,
    greedy: bool,
    cache_len: int,
) -> tuple[Array, Array]:
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
        logits, cache = llama.decode_step(module, params, last, cache)
        nxt = choose(logits, jax.random.fold_in(rng, step))
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, step].set(nxt)
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | jnp.isin(nxt, eos_ids)
        return step + 1, nxt, cache, done, tokens, lengths

    state = (jnp.asarray(1, jnp.int32), first, cache, done, tokens, lengths)
    _, _, _, _, tokens, lengths = jax.lax.while_loop(cond, body, state)
    return tokens, lengths


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
) -> tuple[Array, Array]:
    """Generates up to ``max_new_tokens`` after a prompt.

    Args:
      input_ids: ``[B, N]`` prompt ids, or ``inputs_embeds [B, N, D]`` (multimodal prefix).
      attention_mask: ``[B, N]``, 1 = token, 0 = padding (left padding is the usual choice).
      eos_id: end-of-sequence id(s); a row stops after emitting one (``None``: never stops).
      pad_id: written after a row's end.
      greedy: argmax; otherwise top-p sampling at ``temperature`` with ``rng`` (seeded).
      cache_len: KV-cache length, default ``N + max_new_tokens``.
    Returns:
      ``tokens [B, max_new_tokens]`` int32 and ``lengths [B]``: number of generated tokens per
      row, its eos included.
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
        max_new_tokens=max_new_tokens,
        greedy=bool(greedy),
        cache_len=cache_len,
    )
