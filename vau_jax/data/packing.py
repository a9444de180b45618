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


def assign_bins(
    sizes: np.ndarray, length: int, seed: int = 0, max_per_bin: int | None = None
) -> list[list[int]]:
    """Best-fit decreasing: indices of ``sizes`` grouped so each group sums to ``<= length``
    (and holds at most ``max_per_bin`` members). Ties between equal sizes are broken by a
    ``seed``-ed shuffle; every index appears in exactly one group."""
    if length < 1:
        raise ValueError(f"pack_rows: length must be positive, got {length}")
    for i in np.flatnonzero((sizes > length) | (sizes == 0)):
        raise ValueError(f"pack_rows: row {i} has {sizes[i]} tokens; each needs 1..{length}")
    cap = max_per_bin or len(sizes) + 1
    order = np.random.default_rng(seed).permutation(len(sizes))
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
        if len(bins[b]) < cap:
            by_room.setdefault(free[b], []).append(b)
    return bins


def pack_rows(
    rows: Sequence[Mapping[str, np.ndarray]],
    length: int,
    seed: int = 0,
    sequence_keys: Sequence[str] = ("input_ids", "loss_mask"),
    side_keys: Sequence[str] = (),
    max_segments: int | None = None,
    side_mask_key: str | None = None,
) -> list[dict[str, np.ndarray]]:
    """Packs padded rows into rows of ``length`` tokens (best-fit decreasing).

    Args:
      rows: dicts with ``attention_mask`` ``[S]`` (1 = token; the tokens must be contiguous,
        so either padding side works) and the ``sequence_keys`` ``[S]`` each.
      length: tokens per packed row; every row's token count must be ``<= length``.
      seed: breaks ties between rows of equal length (and so which rows share a packed row).
      sequence_keys: per-token arrays carried over (their values at the tokens).
      side_keys: per-row values (a video index, a Q-Former query) stacked ``[max_segments,
        ...]`` in segment order, zero-padded; only the segments holding a
        ``side_mask_key`` token contribute when that key is given (the videos of a row whose
        text-only segments have none), every segment otherwise.
      max_segments: at most this many rows per packed row (required with ``side_keys``).

    Returns:
      dicts with each sequence key ``[length]`` (its dtype, 0 in padding), each side key
      ``[max_segments, ...]`` and ``segment_ids`` int32 ``[length]`` (0 = padding). Every
      input row appears exactly once, whole.
    """
    if side_keys and not max_segments:
        raise ValueError("pack_rows: side_keys need max_segments")
    keeps = [np.asarray(r["attention_mask"]).astype(bool) for r in rows]
    bins = assign_bins(np.array([k.sum() for k in keeps], np.int64), length, seed, max_segments)
    out = []
    for members in bins:
        packed = {
            k: np.zeros((length,) + np.shape(rows[0][k])[1:], np.asarray(rows[0][k]).dtype)
            for k in sequence_keys
        }
        for k in side_keys:
            first = np.asarray(rows[0][k])
            packed[k] = np.zeros((max_segments,) + first.shape, first.dtype)
        seg = np.zeros((length,), np.int32)
        at = side = 0
        for n, i in enumerate(members, start=1):
            keep = keeps[i]
            size = int(keep.sum())
            for k in sequence_keys:
                packed[k][at : at + size] = np.asarray(rows[i][k])[keep]
            seg[at : at + size] = n
            at += size
            if side_keys and (side_mask_key is None or np.asarray(rows[i][side_mask_key]).any()):
                for k in side_keys:
                    packed[k][side] = rows[i][k]
                side += 1
        packed["segment_ids"] = seg
        out.append(packed)
    return out


def fill_fraction(rows: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Fraction of token slots holding a token: ``segment_ids > 0`` for packed rows, else
    ``attention_mask``."""
    key = "segment_ids" if rows and "segment_ids" in rows[0] else "attention_mask"
    used = sum(int(np.count_nonzero(r[key])) for r in rows)
    total = sum(len(r[key]) for r in rows)
    return used / max(total, 1)


def packing_summary(
    rows: Sequence[Mapping[str, np.ndarray]], packed: Sequence[Mapping[str, np.ndarray]]
) -> str:
    """One log line: how many padded ``rows`` went into how many ``packed`` rows, and how
    full each form is."""
    return (
        f"{len(rows)} conversations packed into {len(packed)} rows of "
        f"{len(packed[0]['segment_ids']) if packed else 0} tokens "
        f"({100 * fill_fraction(packed):.0f}% filled, against "
        f"{100 * fill_fraction(rows):.0f}% padded to {len(rows[0]['input_ids']) if rows else 0})"
    )
