"""The frozen inputs of RAE's training rows, computed once per stage instead of every step.

In the ``rae_narration`` and ``rae_anomaly`` stages only RAE is trained: the LVLM and AHD are
frozen, so the LVLM's visual tokens of a row (its Q-Former / projector output for the row's
sampled frames and question, ``[2S, D]``) and the AHD heatmaps of a training video
(``[S, g, g]``) are the same at every step. Recomputing them cost about a quarter of each RAE
step (tiny preset, batch 16, AVX2 EPYC: 55 ms of visual tokens and 72 ms of AHD in a
~450 ms step), and moving the tapped features to the device for it another few megabytes
per batch. :func:`attach_frozen` computes both once, with the stage's starting parameters
(:attr:`vau_jax.train.trainer.Stage.before_data`), and the rows then carry ``vis`` and
``heat``, which :meth:`TVAU.prefix_embeds` reads instead of recomputing them. The arithmetic
is that of the in-step path (the same functions, jitted on their own); a test checks the
loss of both paths on the same batch.

The first ``P`` positions of every row, the text before the video span and the LVLM's
``2S`` visual tokens, come before RAE's prompts, so RAE cannot change them: their keys and
values in every layer are frozen too. :func:`prefix_kv` prefills them once per row
(``prefix_k`` / ``prefix_v``), and the step runs the LLM from position ``P`` on after that
cached prefix (``TVAU._lm_logits_after``), neither recomputing nor differentiating through
37 of the anomaly rows' 176 positions (tiny preset; the same loss to float rounding, tested).

With ``rae.order`` "before" or "base_first" (ours) RAE's learned base prompts open the video
span and the visual tokens follow them, so no visual token is frozen any more; instead the
text before the span and the base prompts are the same in every row (:func:`shared_length`):
each step computes their keys and values once for the batch (``TVAU.shared_prefix_kv``,
differentiably) rather than once per row.

Evaluation and prediction keep the in-step path: there every row is seen once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vau_jax.methods.tvau import data as D
from vau_jax.methods.tvau.heat import reads_segment_means, split_heat
from vau_jax.models.vlm import VideoLLM

#: Rows (or videos) per jitted call: a fixed size, so each function compiles once.
CHUNK = 16

#: Host bytes the cached prefixes of one stage may take (:func:`prefix_kv`); above this the
#: steps recompute the prefix instead (tiny preset: ~150 KB per row, ~150 MB for the anomaly
#: stage; a 7B LLM's would be tens of MB per row).
PREFIX_CACHE_BYTES = 2 * 2**30


def _chunks(n: int):
    for s in range(0, n, CHUNK):
        yield s, min(s + CHUNK, n)


def _pad(x: np.ndarray) -> np.ndarray:
    """``x [n, ...]`` with ``n <= CHUNK`` padded to ``CHUNK`` rows by repeating its last."""
    if len(x) == CHUNK:
        return x
    return np.concatenate([x, np.repeat(x[-1:], CHUNK - len(x), axis=0)])


def visual_tokens(
    method: Any, vlm_params: Any, rows: list[dict[str, np.ndarray]], split: str
) -> list[np.ndarray]:
    """Per row its frozen LVLM visual tokens ``[2S, D]`` (float32): the row's ``video``'s
    sampled frames (:func:`vau_jax.methods.tvau.data.sampled`) with its ``query_ids`` /
    ``query_mask``, through :meth:`VideoLLM.visual_embeds`."""
    src = D.sampled(method, split)
    fn = jax.jit(
        lambda p, v, q, m: method.vlm.apply({"params": p}, v, q, m, method=VideoLLM.visual_embeds)
    )
    out: list[np.ndarray] = []
    for s, e in _chunks(len(rows)):
        part = rows[s:e]
        visual = _pad(np.stack([src(int(r["video"]))["visual"] for r in part]))
        q = _pad(np.stack([r["query_ids"] for r in part]))
        m = _pad(np.stack([r["query_mask"] for r in part]))
        vis = np.asarray(jax.device_get(fn(vlm_params, visual, q, m)), np.float32)
        out.extend(vis[: e - s])
    return out


def rae_heat(method: Any, ahd_params: Any, videos: list[int], split: str) -> dict[int, np.ndarray]:
    """Per video index the AHD (``ahd_params``) heatmaps ``[S, g, g]`` RAE reads
    (``rae.heat_frames``, :mod:`vau_jax.methods.tvau.heat`): the segment means
    (:func:`~vau_jax.methods.tvau.heat.split_heat`), else the sampled frames' (:func:`heatmaps`).
    Used with the trained AHD (:func:`attach_frozen`) and with each fold's
    (:func:`vau_jax.methods.tvau.crossfit.out_of_fold_heatmaps`)."""
    if reads_segment_means(method):
        return split_heat(method, ahd_params, split, videos)
    return heatmaps(method, ahd_params, videos, split)


def heatmaps(method: Any, ahd_params: Any, videos: list[int], split: str) -> dict[int, np.ndarray]:
    """Per video index its frozen AHD heatmaps ``[S, g, g]`` (float32) of its sampled frames
    (:meth:`TVAU.heat` on the tapped features)."""
    src = D.sampled(method, split)
    taps = len(method.taps)
    fn = jax.jit(lambda p, t: method.heat(p, t)["heatmap"])
    out: dict[int, np.ndarray] = {}
    for s, e in _chunks(len(videos)):
        part = videos[s:e]
        per = [src(int(i)) for i in part]
        t = [_pad(np.stack([p[f"tap_{k}"] for p in per])) for k in range(taps)]
        h = np.asarray(jax.device_get(fn(ahd_params, [jnp.asarray(x) for x in t])), np.float32)
        out.update({int(i): h[j] for j, i in enumerate(part)})
    return out


def _span_start(rows: list[dict[str, np.ndarray]]) -> int | None:
    """The position where every row's video span starts, or ``None`` when they differ."""
    starts = {int(np.argmax(r["video_mask"])) for r in rows}
    return starts.pop() if len(starts) == 1 else None


def _fixed_through(rows: list[dict[str, np.ndarray]], p: int) -> bool:
    """Whether no row has padding in its first ``p`` positions or a target token among
    its first ``p + 1`` (the token at ``p`` is predicted from them)."""
    return all(r["attention_mask"][:p].all() and not r["loss_mask"][: p + 1].any() for r in rows)


def prefix_length(method: Any, rows: list[dict[str, np.ndarray]]) -> int:
    """``P``, the leading positions of every row that RAE cannot change: the text before the
    video span and the LVLM's ``2S`` visual tokens, which come before RAE's prompts. 0 (no
    cached prefix) when the rows' video spans start at different positions, when a row
    has padding or a target token inside them, or with ``rae.visual_dropout`` (hiding
    visual tokens moves the position ids after them), or when RAE's base prompts come first
    (``rae.order``; the visual tokens then follow them: :func:`shared_length`)."""
    if float(method.config.rae.get("visual_dropout", 0.0)) > 0.0 or not rows:
        return 0
    if getattr(method, "prompt_order", "after") != "after":
        return 0
    start = _span_start(rows)
    if start is None:
        return 0
    p = start + 2 * method.frames
    return p if _fixed_through(rows, p) else 0


def shared_length(method: Any, rows: list[dict[str, np.ndarray]]) -> int:
    """With ``rae.order`` "before" or "base_first", ``P``, the leading positions that are the
    same in every row: the text before the video span (the same tokens in every row) and
    RAE's learned base prompts, which open the span. 0 for the order "after", or when the
    rows' texts before the span differ, or a row has padding or a target token inside them."""
    if getattr(method, "prompt_order", "after") == "after" or not rows:
        return 0
    start = _span_start(rows)
    if start is None:
        return 0
    text = rows[0]["input_ids"][:start]
    if not all(np.array_equal(r["input_ids"][:start], text) for r in rows):
        return 0
    p = start + int(method.rcfg.num_base)
    return p if _fixed_through(rows, p) else 0


def prefix_bytes(cfg: Any, rows: int, length: int) -> int:
    """Host bytes of :func:`prefix_kv` 's output for ``rows`` rows of ``length`` positions."""
    per = cfg.num_hidden_layers * cfg.num_key_value_heads * length * cfg.head_dim
    return 2 * rows * per * jnp.dtype(cfg.dtype).itemsize


def prefix_kv(
    method: Any, vlm_params: Any, rows: list[dict[str, np.ndarray]], length: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row (carrying ``vis``) the frozen LLM's keys and values of its first ``length``
    positions, ``([layers, Hkv, length, Dh], same)`` in its compute dtype: the text before
    the video span and the LVLM's visual tokens, prefilled once (:func:`vau_jax.models.
    llama.prefill`), which every RAE step would otherwise recompute and differentiate
    through."""
    from vau_jax.models import llama

    cfg = method.llm_cfg
    module = llama.LlamaForCausalLM(cfg)

    def fn(p: Any, ids: jax.Array, vm: jax.Array, vis: jax.Array):
        emb = method.vlm.apply({"params": p}, ids, vm, vis, method=VideoLLM.embed)
        cache = llama.init_cache(cfg, ids.shape[0], length)
        _, cache = llama.prefill(module, p["llm"], cache, inputs_embeds=emb, fresh=True)
        return cache["k"], cache["v"]  # [layers, B, Hkv, length, Dh]

    fn = jax.jit(fn)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for s, e in _chunks(len(rows)):
        part = rows[s:e]
        ids = _pad(np.stack([r["input_ids"][:length] for r in part]))
        vm = _pad(np.stack([r["video_mask"][:length] for r in part]))
        vis = _pad(np.stack([r["vis"] for r in part]))
        k, v = (np.asarray(x) for x in jax.device_get(fn(vlm_params, ids, vm, vis)))
        out.extend((k[:, j], v[:, j]) for j in range(e - s))
    return out


def attach_frozen(
    method: Any,
    params: Any,
    rows: list[dict[str, np.ndarray]],
    split: str,
    heat: dict[int, np.ndarray] | None,
) -> tuple[list[dict[str, np.ndarray]], dict[int, np.ndarray]]:
    """``(rows with "vis" and, where :func:`prefix_length` allows, "prefix_k" /
    "prefix_v", or where :func:`shared_length` allows, "shared_ids" (the text before the
    video span, whose length tells the step ``P``), heat per video)`` for RAE's training
    rows.

    ``heat``: cross-fitted heatmaps (:mod:`vau_jax.methods.tvau.crossfit`) to keep, or
    ``None``: the trained AHD's (``params["ahd"]``; the sampled frames' or the segment means,
    ``rae.heat_frames``: :mod:`vau_jax.methods.tvau.heat`), or zeros without AHD
    (``use_ahd=False``, as :meth:`TVAU.prefix_embeds` then zeroes them).
    """
    if heat is None:  # first: its full read of each video keeps the sampled frames too
        videos = sorted({int(r["video"]) for r in rows})
        if method.use_ahd:
            heat = rae_heat(method, params["ahd"], videos, split)
        else:
            shape = (method.frames, method.grid, method.grid)
            heat = {i: np.zeros(shape, np.float32) for i in videos}
    vis = visual_tokens(method, params["vlm"], rows, split)
    rows = [{**r, "vis": v} for r, v in zip(rows, vis)]
    length = prefix_length(method, rows)
    if length and prefix_bytes(method.llm_cfg, len(rows), length) > PREFIX_CACHE_BYTES:
        logging.info("RAE rows' frozen prefixes would take over %d bytes: recomputed per step",
                     PREFIX_CACHE_BYTES)  # fmt: skip
        length = 0
    if length:
        kv = prefix_kv(method, params["vlm"], rows, length)
        rows = [{**r, "prefix_k": k, "prefix_v": v} for r, (k, v) in zip(rows, kv)]
    shared = shared_length(method, rows)
    if shared:  # the step computes [text, P_base] once per batch (TVAU.shared_prefix_kv)
        start = shared - int(method.rcfg.num_base)
        rows = [{**r, "shared_ids": r["input_ids"][:start]} for r in rows]
    return rows, heat
