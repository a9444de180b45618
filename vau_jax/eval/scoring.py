"""Scoring a multimodal LLM: option log-likelihood from a shared prefix, greedy generation,
and the batching and padding that give every call one compiled shape.

Rows are tokenised chat rows (``input_ids``, ``attention_mask``, ``loss_mask``,
``video_mask`` ``[S]``, plus whatever the model's prefix needs, e.g. ``query_ids``). Two
uses:

* **options**: the ``O`` answer lines of a multiple-choice question continue one prompt.
  :func:`split_options` cuts each question's ``O`` full rows into the shared prefix and the
  continuations, :func:`pack_options` batches them (prefixes left-padded to ``P``,
  continuations right-padded to ``C``), and the scorer of :class:`Scorer` runs the prefix
  once into the KV cache and the continuations from it
  (:func:`vau_jax.models.vlm.shared_prefix_logprob`);
* **generation**: left-padded prompts (:func:`stack_rows`), their multimodal prefix
  embedded once, then greedy decoding with the KV cache (:func:`vau_jax.eval.generate`).

Shapes are fixed per evaluation (batch size, ``P``, ``C``, prompt length rounded up to a
multiple), and the jitted functions live on the :class:`Scorer`, so a second evaluation of
the same shapes compiles nothing (tested with ``chex.assert_max_traces``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

Row = dict[str, np.ndarray]
ROW_KEYS = ("input_ids", "attention_mask", "loss_mask", "video_mask")


def stack_rows(rows: Sequence[Row], multiple: int = 16, min_length: int = 0) -> Row:
    """Stacks rows of one padding side and cuts the all-padding columns.

    The kept length is the longest row rounded up to ``multiple`` (few distinct shapes under
    jit), at least ``min_length``. Exact: padded positions are masked out of attention, and
    positions count only real tokens, so cutting them changes no logit of a real token.
    """
    b = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    full = b["input_ids"].shape[1]
    n = int(b["attention_mask"].sum(1).max())
    length = min(full, max(int(min_length), -(-n // multiple) * multiple))
    # Left-padded rows all end on a real token; right-padded ones only when none is cut.
    left = bool(b["attention_mask"][:, -1].all())
    for k in ROW_KEYS:
        if k in b:
            b[k] = b[k][:, full - length :] if left else b[k][:, :length]
    return b


def split_options(rows: Sequence[Row], source: str) -> dict[str, Any]:
    """Splits the full rows of one question's options (right-padded, each with its answer
    line as the target) into their shared prefix and per-option continuations.

    Returns ``prefix_ids``, ``video_mask`` ``[P]`` (everything before the first answer token,
    identical in every row), every other per-row key of the first row (e.g. ``query_ids``,
    ``video``), and per option ``cont_ids``, ``score`` (1-D, the rest of the row; ``score`` =
    its answer tokens).

    Raises ``ValueError`` naming ``source`` when the rows do not share one prompt.
    """
    starts = [int(np.argmax(r["loss_mask"])) for r in rows]
    p = starts[0]
    if not all(r["loss_mask"].any() for r in rows) or any(s != p for s in starts):
        raise ValueError(f"{source}: the option rows do not share one prompt")
    for r in rows[1:]:
        if not np.array_equal(r["input_ids"][:p], rows[0]["input_ids"][:p]):
            raise ValueError(f"{source}: the option rows do not share one prompt")
    ends = [int(r["attention_mask"].sum()) for r in rows]
    r0 = rows[0]
    out = {k: v for k, v in r0.items() if k not in ROW_KEYS}
    out.update(
        prefix_ids=r0["input_ids"][:p],
        video_mask=r0["video_mask"][:p],
        cont_ids=[r["input_ids"][p:e] for r, e in zip(rows, ends)],
        score=[r["loss_mask"][p:e] for r, e in zip(rows, ends)],
    )
    return out


def pack_options(
    splits: Sequence[dict[str, Any]], prefix_len: int, cont_len: int, pad_id: int
) -> Row:
    """Batches :func:`split_options` outputs: prefixes left-padded to ``prefix_len``
    (``prefix_ids``, ``prefix_mask``, ``video_mask`` ``[B, P]``), continuations right-padded
    to ``cont_len`` (``cont_ids``, ``cont_mask``, ``score_mask`` ``[B, O, C]``), and every
    other key stacked (``[B, ...]``)."""
    b, o = len(splits), len(splits[0]["cont_ids"])
    out = {
        "prefix_ids": np.full((b, prefix_len), pad_id, np.int32),
        "prefix_mask": np.zeros((b, prefix_len), bool),
        "video_mask": np.zeros((b, prefix_len), bool),
        "cont_ids": np.full((b, o, cont_len), pad_id, np.int32),
        "cont_mask": np.zeros((b, o, cont_len), bool),
        "score_mask": np.zeros((b, o, cont_len), bool),
    }
    for i, sp in enumerate(splits):
        p = len(sp["prefix_ids"])
        out["prefix_ids"][i, prefix_len - p :] = sp["prefix_ids"]
        out["prefix_mask"][i, prefix_len - p :] = True
        out["video_mask"][i, prefix_len - p :] = sp["video_mask"]
        for j, (ids, score) in enumerate(zip(sp["cont_ids"], sp["score"])):
            out["cont_ids"][i, j, : len(ids)] = ids
            out["cont_mask"][i, j, : len(ids)] = True
            out["score_mask"][i, j, : len(ids)] = score
    skip = {"prefix_ids", "video_mask", "cont_ids", "score"}
    for k in splits[0]:
        if k not in skip:
            out[k] = np.stack([np.asarray(sp[k]) for sp in splits])
    return out


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-int(n) // multiple) * multiple


def option_batches(
    rows: Sequence[Row], num_options: int, batch_size: int, pad_id: int, source: str = ""
) -> Iterator[tuple[int, Row]]:
    """Yields ``(n_real, batch)``: the questions of ``rows`` (``num_options`` consecutive full
    rows each) packed ``batch_size`` at a time with one shape for every batch (the prefix
    length rounded up to 16, the continuation length to 8, the last batch repeated)."""
    o = int(num_options)
    if not rows or len(rows) % o:
        raise ValueError(f"{len(rows)} rows are not a whole number of {o}-option questions")
    splits = [
        split_options(rows[o * j : o * j + o], f"{source} question {j}".strip())
        for j in range(len(rows) // o)
    ]
    p = round_up(max(len(s["prefix_ids"]) for s in splits), 16)
    c = round_up(max(len(x) for s in splits for x in s["cont_ids"]), 8)
    bs = min(int(batch_size), len(splits))
    for s in range(0, len(splits), bs):
        chunk = list(splits[s : s + bs])
        n = len(chunk)
        yield n, pack_options(chunk + [chunk[-1]] * (bs - n), p, c, pad_id)


def prompt_batches(
    rows: Sequence[Row], batch_size: int, bucket: int = 16
) -> Iterator[tuple[int, Row]]:
    """Yields ``(n_real, batch)`` of left-padded generation prompts, ``batch_size`` rows each
    (the last batch repeated), all cut to one length: the longest prompt (rounded to 16 by
    :func:`stack_rows`) rounded up to a multiple of ``bucket`` (a multiple of 16; a growing
    prompt then compiles once per bucket)."""
    if not rows:
        raise ValueError("no prompts to generate from")
    length = round_up(stack_rows(rows)["input_ids"].shape[1], int(bucket))
    bs = min(int(batch_size), len(rows))
    for s in range(0, len(rows), bs):
        chunk = list(rows[s : s + bs])
        n = len(chunk)
        yield n, stack_rows(chunk + [chunk[-1]] * (bs - n), min_length=length)


class Scorer:
    """The jitted scoring functions of one multimodal model, built once and reused.

    Args:
      option_logprob: ``(params, batch) -> [B, O]`` log-likelihood of each continuation
        (e.g. a closure over :func:`vau_jax.models.vlm.shared_prefix_logprob`).
      prefix_embeds: ``(params, batch) -> [B, L, D]`` the LLM input embeddings of a prompt
        batch (multimodal prefix).
      wrap: applied to each function before ``jax.jit`` (tests pass
        ``chex.assert_max_traces``).
    """

    def __init__(
        self,
        option_logprob: Callable[[Any, Row], jax.Array],
        prefix_embeds: Callable[[Any, Row], jax.Array],
        wrap: Callable[[Callable], Callable] = lambda f: f,
    ):
        self.option_logprob = jax.jit(wrap(option_logprob))
        self.prefix_embeds = jax.jit(wrap(prefix_embeds))

    def options(
        self,
        params: Any,
        rows: Sequence[Row],
        num_options: int,
        pad_id: int,
        attach: Callable[[Row], Row] = lambda b: b,
        batch_size: int = 8,
        source: str = "",
    ) -> np.ndarray:
        """Log-likelihood ``[Q, O]`` of each option of each question (``attach`` adds
        per-batch inputs such as the video features)."""
        out = []
        batches = -(-len(rows) // max(1, int(num_options)) // int(batch_size))
        bar = _bar(batches, f"option likelihoods {source}".strip())
        for k, (n, b) in enumerate(option_batches(rows, num_options, batch_size, pad_id, source)):
            out.append(np.asarray(self.option_logprob(params, attach(b)))[:n])
            bar.update(k + 1)
        bar.close()
        return np.concatenate(out)

    def generate(
        self,
        params: Any,
        llm: Any,
        rows: Sequence[Row],
        tok: Any,
        attach: Callable[[Row], Row] = lambda b: b,
        max_new_tokens: int = 24,
        batch_size: int = 32,
        bucket: int = 16,
    ) -> list[str]:
        """Greedy answers to left-padded prompt rows (the prefix fills the KV cache once).

        Args:
          llm: the :class:`~vau_jax.models.llama.LlamaForCausalLM` whose params are
            ``params["llm"]``.
          tok: the tokenizer (``eos_id``, ``pad_id``, ``decode``).
          bucket: prompts are cut to a multiple of this many tokens (:func:`prompt_batches`).
        """
        texts: list[str] = []
        bar = _bar(-(-len(rows) // max(1, min(int(batch_size), len(rows)))), "generate")
        for k, (n, b) in enumerate(prompt_batches(rows, batch_size, bucket)):
            toks, lengths = self._generate_batch(params, llm, attach(b), tok, max_new_tokens)
            texts += answer_texts(tok, np.asarray(toks), np.asarray(lengths), n)
            bar.update(k + 1)
        bar.close()
        return texts

    def generate_cached(
        self,
        params: Any,
        llm: Any,
        rows: Sequence[Row],
        tok: Any,
        attach: Callable[[Row], Row] = lambda b: b,
        max_new_tokens: int = 24,
        bucket: int = 16,
    ) -> tuple[list[str], dict[str, Any]]:
        """:meth:`generate` for rows that fit one batch (the same answers: the same prompt
        cut, the same compiled loop but for its extra output), keeping what a chat continues
        from (:mod:`vau_jax.eval.chat_cache`).

        Returns:
          the answers and ``{"input_ids", "attention_mask", "video_mask"}`` ``[B, N]`` (the
          left-padded prompts as the LLM read them), ``tokens [B, max_new_tokens]``,
          ``lengths [B]`` (numpy) and ``cache``: the LLM's KV cache (``N + max_new_tokens``
          slots: the prompts, then every generated token but each row's last).
        """
        n, b = next(prompt_batches(rows, len(rows), bucket))  # one batch of every row
        b = attach(b)
        toks, lengths, cache = self._generate_batch(
            params, llm, b, tok, max_new_tokens, return_cache=True
        )
        toks, lengths = np.asarray(toks), np.asarray(lengths)
        out = {k: np.asarray(b[k]) for k in ("input_ids", "attention_mask", "video_mask")}
        out.update(tokens=toks, lengths=lengths, cache=cache)
        return answer_texts(tok, toks, lengths, n), out

    def _generate_batch(
        self,
        params: Any,
        llm: Any,
        batch: Row,
        tok: Any,
        max_new_tokens: int,
        return_cache: bool = False,
    ) -> tuple:
        """Greedy generation after one prompt batch (features attached): ``(tokens [B, M],
        lengths [B])``, plus the KV cache with ``return_cache``. A one-row batch (a follow-up,
        one video's questions one at a time) decodes on the CPU decoding layout where it pays
        (:func:`vau_jax.models.llama_decode.for_backend`, made once per loaded model)."""
        from vau_jax.eval.generate import generate
        from vau_jax.models import llama_decode

        one_row = int(np.shape(batch["attention_mask"])[0]) == 1
        return generate(
            llm,
            params["llm"],
            inputs_embeds=self.prefix_embeds(params, batch),
            attention_mask=batch["attention_mask"],
            max_new_tokens=int(max_new_tokens),
            eos_id=tok.eos_id,
            pad_id=tok.pad_id,
            return_cache=return_cache,
            decode_weights=llama_decode.for_backend(llm.config, params["llm"]) if one_row else None,
        )


def answer_texts(tok: Any, tokens: np.ndarray, lengths: np.ndarray, n: int) -> list[str]:
    """The text of the first ``n`` generated rows (``tokens [B, M]``, ``lengths [B]``): each
    row's tokens up to its length, eos and pad ids left out, decoded and stripped."""
    texts = []
    for r in range(n):
        ids = [int(t) for t in tokens[r, : lengths[r]] if int(t) not in (tok.eos_id, tok.pad_id)]
        texts.append(tok.decode(ids).strip())
    return texts


def _bar(batches: int, desc: str) -> Any:
    """Evaluation progress over ``batches`` (a line about every fifth of them off a TTY)."""
    from vau_jax.train.writers import Progress

    return Progress(batches, desc=desc, log_every=max(1, batches // 5), unit="batch")
