"""Sequence packing: several short training rows in one fixed-length row.

Chat rows are padded to the longest conversation a corpus allows, so a batch of them is
mostly padding when most conversations are short (the text-pretraining corpus fills 59% of
its 288 slots). :func:`pack_rows` places whole rows side by side in rows of the same length,
each tagged by ``segment_ids`` (1, 2, ... per original row, 0 for padding). A causal LM given
``segment_ids`` (:class:`vau_jax.models.llama.LlamaForCausalLM`) attends within a segment
only and restarts positions at each segment's first token, so every packed token sees exactly
the context and position it had in its own row; the loss is unchanged per token because a
segment's first token (BOS) is never a target (the shifted target of the token before it is
masked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _tokens(row: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keep = np.asarray(row["attention_mask"]).astype(bool)
    return np.asarray(row["input_ids"])[keep], np.asarray(row["loss_mask"])[keep]


def pack_rows(
    rows: Sequence[Mapping[str, np.ndarray]], length: int, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Packs padded rows into rows of ``length`` tokens (best-fit decreasing).

    Args:
      rows: dicts with ``input_ids`` ``[S]`` int, ``attention_mask`` ``[S]`` (1 = token; the
        tokens must be contiguous, so either padding side works) and ``loss_mask`` ``[S]``.
      length: tokens per packed row; every row's token count must be ``<= length``.
      seed: breaks ties between rows of equal length (and so which rows share a packed row).

    Returns:
      dicts with ``input_ids`` ``[length]`` (input dtype, 0 in padding), ``loss_mask``
      ``[length]`` (input dtype) and ``segment_ids`` int32 ``[length]`` (0 = padding). Every
      input row appears exactly once, whole.
    """
    if length < 1:
        raise ValueError(f"pack_rows: length must be positive, got {length}")
    toks = [_tokens(r) for r in rows]
    sizes = np.array([len(t) for t, _ in toks], np.int64)
    for i in np.flatnonzero((sizes > length) | (sizes == 0)):
        raise ValueError(f"pack_rows: row {i} has {sizes[i]} tokens; each needs 1..{length}")
    order = np.random.default_rng(seed).permutation(len(rows))
    order = order[np.argsort(-sizes[order], kind="stable")]  # longest first, ties shuffled
    bins: list[list[int]] = []
    free: list[int] = []
    by_room: dict[int, list[int]] = {}  # free slots -> open bins with exactly that room
    for i in order:
        need = int(sizes[i])
        # the fullest open bin that still fits the row
        room = next((r for r in range(need, length + 1) if by_room.get(r)), None)
        if room is None:
            b = len(bins)
            bins.append([])
            free.append(length)
        else:
            b = by_room[room].pop()
        bins[b].append(int(i))
        free[b] -= need
        by_room.setdefault(free[b], []).append(b)
    if not toks:
        return []
    ids_dtype, loss_dtype = toks[0][0].dtype, toks[0][1].dtype
    out = []
    for members in bins:
        ids = np.zeros((length,), ids_dtype)
        loss = np.zeros((length,), loss_dtype)
        seg = np.zeros((length,), np.int32)
        at = 0
        for k, i in enumerate(members, start=1):
            t, lm = toks[i]
            ids[at : at + len(t)] = t
            loss[at : at + len(t)] = lm
            seg[at : at + len(t)] = k
            at += len(t)
        out.append({"input_ids": ids, "loss_mask": loss, "segment_ids": seg})
    return out


def fill_fraction(rows: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Fraction of token slots holding a token: ``segment_ids > 0`` for packed rows, else
    ``attention_mask``."""
    key = "segment_ids" if rows and "segment_ids" in rows[0] else "attention_mask"
    used = sum(int(np.count_nonzero(r[key])) for r in rows)
    total = sum(len(r[key]) for r in rows)
    return used / max(total, 1)
