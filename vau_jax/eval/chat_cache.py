"""Follow-up questions that continue the LLM's KV cache: the video stays in the cache.

After a prediction's answer (VA-GPT's explanation, T-VAU's Yes/No answer) the LLM's KV cache
holds ``[system, video tokens, opening prompt, generated answer]``. :func:`start` keeps it,
with the token ids in it (video positions as the pad-id placeholders of
:func:`vau_jax.data.chat.chat_ids`), as a :class:`ChatState`. A follow-up (:func:`answer`):

1. renders the conversation plus the new question with the chat template
   (:func:`~vau_jax.data.chat.chat_ids`, unpadded, generation prompt appended) and checks that
   it *appends*: the template of what the cache was built from (everything up to the last
   generation prompt) is a prefix of it;
2. builds the new tokens by ids: the rest of the last answer (its *generated* ids, never its
   re-tokenised text, which may tokenise differently), the template's end-of-turn tokens
   (ids of an empty answer's end, e.g. Vicuna's ``</s>``, ChatML's ``<|im_end|>``), the human
   turn and the generation prompt;
3. prefills only those, right-padded to a multiple of :data:`BUCKET` (a chat compiles once per
   bucket, :func:`vau_jax.eval.generate.extend`), and decodes greedily until eos or
   ``max_new_tokens``; the answer stays in the cache for the next turn.

Nothing is decoded or encoded: no vision encoder, no Q-Former, no video token is recomputed.
So the video tokens a follow-up attends to are the opening prompt's: the Q-Former's
instruction for them is the *opening* question (:attr:`ChatState.query`), not the
follow-up's. When the conversation would overflow the cache (:attr:`ChatState.capacity`
slots), when the conversation handed in is not the one the cache holds, or when the cache was
dropped (:meth:`ChatState.drop`), :func:`answer` returns ``None``: the caller rebuilds the
prompt the old way (:func:`vau_jax.inference.followup_row`: the oldest exchanges dropped, the
new question as the Q-Former's instruction) and :func:`restart`\\ s the state from that
generation. :attr:`ChatState.path` says which ran (``opening``, ``cache``, ``rebuild``) and
:attr:`ChatState.prefilled` how many tokens the LLM prefilled for it.

Memory: a cache is ``2 · layers · kv_heads · head_dim · capacity`` values of the LLM's compute
dtype (:func:`cache_bytes`): 2.2 MB for the tiny VA-GPT's 1,088 slots, 2.1 GiB (float32) /
1.0 GiB (bfloat16) for Vicuna-7B's 2,112. It is grown to ``capacity`` at the first follow-up
(until then it is the opening generation's own, ``prompt + max_new_tokens`` slots).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.models import llama

log = logging.getLogger(__name__)

#: Follow-up tokens are right-padded to a multiple of this (one compilation per multiple).
BUCKET = 16
#: Cache slots beyond the chat's prompt limit: an answer of ``HEADROOM - BUCKET`` tokens
#: after a prompt of the limit's length, plus one bucket of padding.
HEADROOM = 64

Turn = dict[str, str]


@dataclasses.dataclass
class ChatState:
    """A conversation about one video whose tokens sit in the LLM's KV cache.

    Attributes:
      cache: the LLM's KV cache, batch 1 (:func:`vau_jax.models.llama.init_cache` layout,
        ``S <= capacity`` slots); ``None`` once dropped (the next turn rebuilds).
      ids: the token ids of the cache's used slots, in order, padding left out (video
        positions: the pad id).
      video: ``len(ids)`` flags, True at video positions.
      template: the chat template's ids of the conversation up to the last generation prompt
        (the part of ``ids`` a re-rendering must reproduce).
      conv: the conversation the cache holds (``[{"from", "value"}]``; after a rebuild its
        oldest exchanges may be gone), ending with the last answer.
      answer: the last answer's generated ids (eos included when it ended on one); all but
        the last are in the cache.
      n_turns: length of the caller's conversation this state ends with.
      slots: used cache slots (``cache["index"]``; left padding of the first prompt counts).
      capacity: slots the cache grows to.
      query: the Q-Former's instruction for the video tokens in the cache.
      path: what answered last: ``opening`` (the prediction), ``cache`` or ``rebuild``.
      prefilled: tokens the LLM prefilled for that answer (a cached turn: its new tokens).
      reason: why the last turn did not use the cache (empty when it did).
      first_logits: ``[V]`` the logits that chose the last answer's first token.
    """

    cache: llama.Cache | None
    ids: list[int]
    video: list[bool]
    template: list[int]
    conv: list[Turn]
    answer: list[int]
    n_turns: int
    slots: int
    capacity: int
    query: str
    path: str = "opening"
    prefilled: int = 0
    reason: str = ""
    first_logits: Any = None

    def drop(self) -> None:
        """Frees the cache (the next follow-up rebuilds its prompt and starts a new one)."""
        self.cache = None

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds now (0 when dropped)."""
        if self.cache is None:
            return 0
        return int(sum(x.nbytes for x in jax.tree.leaves(self.cache)))


def capacity(max_length: int) -> int:
    """Cache slots for a chat whose rebuilt prompts are at most ``max_length`` tokens."""
    return -(-(int(max_length) + HEADROOM) // BUCKET) * BUCKET


def cache_bytes(cfg: llama.LlamaConfig, slots: int, dtype: Any = None) -> int:
    """Bytes of a batch-1 cache of ``slots`` slots (k and v; the mask and positions aside)."""
    item = jnp.dtype(cfg.dtype if dtype is None else dtype).itemsize
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * slots * item


def take_row(cache: llama.Cache, row: int, end: int) -> llama.Cache:
    """Row ``row`` of a batched generation's cache (``[L, B, H, S, D]``), cut after slot
    ``end``: the slots a finished row kept filling with pad tokens while others decoded are
    masked and handed back (``index = end``, its positions moved back as many)."""
    b, index = int(cache["mask"].shape[0]), int(cache["index"])
    if b == 1 and end == index:
        return cache
    extra = index - int(end)
    keep = jnp.arange(cache["mask"].shape[1]) < end
    return {
        "k": cache["k"][:, row : row + 1],
        "v": cache["v"][:, row : row + 1],
        "mask": cache["mask"][row : row + 1] & keep[None],
        "pos": cache["pos"][row : row + 1] - extra,
        "index": cache["index"] - extra,  # on the cache's device, as ``extend`` returns it
    }


def grow(cache: llama.Cache, slots: int) -> llama.Cache:
    """The cache with ``slots`` slots (new ones empty and masked); unchanged if it has them."""
    s = int(cache["mask"].shape[1])
    if s >= slots:
        return cache
    pad = slots - s
    return {
        "k": jnp.pad(cache["k"], ((0, 0), (0, 0), (0, 0), (0, pad), (0, 0))),
        "v": jnp.pad(cache["v"], ((0, 0), (0, 0), (0, 0), (0, pad), (0, 0))),
        "mask": jnp.pad(cache["mask"], ((0, 0), (0, pad))),
        "pos": cache["pos"],
        "index": cache["index"],
    }


def start(
    gen: dict[str, Any],
    row: int,
    conv: list[Turn],
    n_turns: int,
    query: str,
    slots: int,
    path: str = "opening",
) -> ChatState:
    """The chat state of row ``row`` of a generation that kept its cache
    (:meth:`vau_jax.eval.scoring.Scorer.generate_cached`'s second output).

    Args:
      conv: the conversation that generation answered, its answer (as text) last.
      n_turns: length of the caller's conversation once that answer is added.
      query: the Q-Former's instruction of the video tokens in the prompt.
      slots: the capacity (:func:`capacity`); at least the generation's own cache length.
    """
    mask = np.asarray(gen["attention_mask"][row], bool)
    prompt = np.asarray(gen["input_ids"][row])[mask].tolist()
    video = np.asarray(gen["video_mask"][row], bool)[mask].tolist()
    n = int(gen["input_ids"].shape[1])
    length = int(gen["lengths"][row])
    answer = np.asarray(gen["tokens"][row, :length]).tolist()
    cache = take_row(gen["cache"], row, n + length - 1)
    return ChatState(
        cache=cache,
        ids=prompt + answer[:-1],
        video=video + [False] * (length - 1),
        template=prompt,
        conv=[dict(t) for t in conv],
        answer=answer,
        n_turns=int(n_turns),
        slots=n + length - 1,
        capacity=max(int(slots), int(cache["mask"].shape[1])),
        query=str(query),
        path=path,
        prefilled=len(prompt),
    )


def restart(
    state: ChatState, gen: dict[str, Any], conv: list[Turn], n_turns: int, query: str
) -> None:
    """``state`` (in place) started again from a rebuilt prompt's generation (row 0)."""
    new = start(gen, 0, conv, n_turns, query, state.capacity, path="rebuild")
    for f in dataclasses.fields(ChatState):
        if f.name != "reason":
            setattr(state, f.name, getattr(new, f.name))


def new_tokens(
    state: ChatState, tok: Any, config: Any, num_video_tokens: int, question: str
) -> tuple[list[int], list[int]] | None:
    """``(new, full)``: the ids to prefill for ``question`` after the cache's contents, and
    the template's ids of the whole conversation with it (the next ``template``); ``None``
    (``state.reason`` says why) when the template does not append to the cached prompt."""
    from vau_jax.data.chat import chat_ids

    def render(conv: list[Turn], prompt: bool) -> list[int]:
        return chat_ids(
            tok,
            conv,
            str(config.chat_format),
            num_video_tokens=int(num_video_tokens),
            add_generation_prompt=prompt,
            system=config.system_prompt,
        )[0]

    t = len(state.template)
    full = render([*state.conv, {"from": "human", "value": question}], True)
    closed = render(state.conv, False)  # through the end of the last answer
    if full[:t] != state.template or full[: len(closed)] != closed:
        state.reason = "the chat template does not append to the cached prompt"
        return None
    human = full[len(closed) :]  # human turn + generation prompt
    end_of_turn = render([*state.conv[:-1], {"from": "gpt", "value": ""}], False)[t:]
    ans = list(state.answer)
    body = ans[:-1] if ans and ans[-1] == tok.eos_id else ans
    if closed[t:] != body + end_of_turn:
        log.debug("the answer re-tokenises differently: appending its generated ids")
    tail = body + end_of_turn + human
    cached = ans[:-1]
    if tail[: len(cached)] != cached:  # cannot happen: ``body`` starts with ``cached``
        state.reason = "the cached answer is not a prefix of the next prompt"
        return None
    return tail[len(cached) :], full


def answer(
    state: ChatState,
    llm: llama.LlamaForCausalLM,
    llm_params: Any,
    tok: Any,
    config: Any,
    num_video_tokens: int,
    turns: list[Turn],
    question: str,
    max_new_tokens: int = 32,
) -> str | None:
    """The LLM's greedy answer to ``question`` continuing the cache (module docstring), or
    ``None`` when the cache cannot be used (``state.reason``; the caller rebuilds).

    Args:
      turns: the caller's conversation so far; it must end with the state's (same length,
        same last answer).
      question: the follow-up (without a video marker).
      config: ``chat_format`` and ``system_prompt`` (the run's config).
    """
    from vau_jax.eval.generate import extend
    from vau_jax.eval.scoring import answer_texts
    from vau_jax.models import llama_decode

    if state.cache is None:
        state.reason = "no cache (dropped or never kept)"
        return None
    if len(turns) != state.n_turns or (turns and dict(turns[-1]) != state.conv[-1]):
        state.reason = "the conversation is not the one in the cache"
        return None
    made = new_tokens(state, tok, config, num_video_tokens, question)
    if made is None:
        return None
    new, full = made
    n = len(new)
    width = -(-n // BUCKET) * BUCKET
    if state.slots + width > state.capacity or state.slots + n + max_new_tokens - 1 > (
        state.capacity
    ):
        state.reason = (
            f"the cache is full ({state.slots} of {state.capacity} slots used, {n} new tokens "
            f"and {max_new_tokens} to generate)"
        )
        return None
    ids = np.full((1, width), tok.pad_id, np.int32)  # [1, N] right-padded
    ids[0, :n] = new
    mask = np.zeros((1, width), bool)
    mask[0, :n] = True
    cache, state.cache = grow(state.cache, state.capacity), None  # donated to ``extend``
    toks, lengths, cache, logits = extend(
        llm,
        llm_params,
        cache,
        ids,
        mask,
        max_new_tokens=int(max_new_tokens),
        eos_id=tok.eos_id,
        pad_id=tok.pad_id,
        # one row: the CPU decoding layout where it pays, made once per loaded model
        decode_weights=llama_decode.for_backend(llm.config, llm_params),
    )
    toks, lengths = np.asarray(toks), np.asarray(lengths)
    text = answer_texts(tok, toks, lengths, 1)[0]
    gen = toks[0, : int(lengths[0])].tolist()
    state.cache = cache
    state.ids += new + gen[:-1]
    state.video += [False] * (n + len(gen) - 1)
    state.slots += n + len(gen) - 1
    state.template = full
    state.conv = [*state.conv, {"from": "human", "value": question}, {"from": "gpt", "value": text}]
    state.answer = gen
    state.n_turns = len(turns) + 2
    state.path, state.prefilled, state.reason = "cache", n, ""
    state.first_logits = logits[0]
    return text
