"""T-VAU on one video: heatmaps, boxes, frame scores and the LVLM's answers.

``predict(method, params, frames, fps)``:

1. every input frame is encoded like the training features (the feature-store code path,
   :func:`vau_jax.data.features.encode_video`, without caching): the frozen tower's patch
   tokens at the tapped blocks;
2. AHD gives one heatmap per frame (upsampled to the encoder's input square); the frame
   score is its maximum, the boxes come from :func:`vau_jax.eval.boxes.video_boxes`
   (``config.box_rule``), mapped back to the input frame's pixels;
3. the LVLM, reading ``frames_per_video`` sampled frames and RAE's prompts from their
   heatmaps, answers the Yes/No, target, trajectory and spatial questions (greedy); the
   explanation joins the answers. The KV cache of the Yes/No exchange (the conversation a
   chat opens with, :func:`opening_turns`) is kept as ``method.last_chat``
   (:mod:`vau_jax.eval.chat_cache`).

The timeline holds ``frame_probs`` per input frame, ``intervals_s`` (runs of frames whose
score is at least ``threshold``), ``heatmaps`` (per frame, the ``g × g`` patch-grid heatmap,
values rounded to 3 decimals), ``boxes`` (``frame, x1, y1, x2, y2, score`` rows), the
``answers`` and the ``explanation``. ``state`` only carries the stream time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.datasets import ArrayVideo
from vau_jax.data.features import encode_video
from vau_jax.eval import chat_cache
from vau_jax.methods.base import standardise, timeline_head
from vau_jax.methods.tvau import data as D

#: The questions asked of every video, in order (the anomaly questions of training).
QUESTIONS = (
    ("yes_no", "Is there an anomaly in this video?"),
    ("target", "What is the anomalous object?"),
    ("trajectory", "How does it move?"),
    ("spatial", "Where is the anomaly?"),
)
THRESHOLD = 0.5


def video_features(method: Any, frames: np.ndarray, fps: float) -> dict[str, Any]:
    """The tapped tokens of every frame: ``taps`` (``[T, N, D_k]`` each), ``visual``
    (``[T, N, D]``, standardised), ``indices``, ``timestamps``."""
    src = ArrayVideo(id="input", split="test", label="Normal", fps=float(fps), array=frames)
    rec = encode_video(src, method.spec, method.encoder, "float32")
    if method.visual_encoder is None:
        visual = rec[f"hidden_{method.depth}"]
    else:  # the LVLM's own tower (paper preset)
        visual = encode_video(src, method.spec, method.visual_encoder, "float32")["patches"]
    return {
        "taps": D.read_taps(rec, method.taps, method.motion, background=method.background),
        "visual": standardise(visual),
        "indices": np.asarray(rec["indices"]),
        "timestamps": np.asarray(rec["timestamps"]),
    }


def _attach(
    method: Any, feats: dict[str, Any], params: Any, grid_heat: np.ndarray | None = None
) -> Any:
    """``batch -> batch`` with the LVLM's inputs of ``feats``' sampled frames repeated for
    every row (what :func:`answer` and :func:`ask` feed the scorer); with
    ``rae.heat_frames="segment_mean"`` also RAE's segment-mean heatmaps (``heat``), pooled
    from ``grid_heat`` (``[T, g, g]``, every frame's AHD heatmaps) when given."""
    from vau_jax.methods.tvau.heat import reads_segment_means, video_heat

    sampled = D.sample_frames(feats, method.frames)
    if reads_segment_means(method):
        sampled["heat"] = video_heat(method, params["ahd"], feats, grid_heat)

    def attach(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["video"])
        return {**batch, **{k: np.repeat(v[None], n, 0) for k, v in sampled.items()}}

    return attach


def answer(
    method: Any,
    params: Any,
    feats: dict[str, Any],
    max_new_tokens: int,
    grid_heat: np.ndarray | None = None,
) -> list[dict]:
    """Greedy answers to :data:`QUESTIONS` about the video of ``feats``; the KV cache of the
    first (Yes/No) answer is kept as ``method.last_chat`` (follow-ups continue it, :func:`ask`)."""
    from vau_jax.methods.pretrain.video_llm import chat_row
    from vau_jax.methods.tvau.evaluation import scorer
    from vau_jax.methods.tvau.questions import trim_padding
    from vau_jax.models.llama import LlamaForCausalLM

    attach = _attach(method, feats, params, grid_heat)
    rows = [
        chat_row(
            method.tok,
            method.config,
            f"{T.VIDEO_MARKER}\n{q}",
            q,
            None,
            0,
            method.num_video_tokens,
            f"question {kind}",
            max_length=int(method.config.rae_max_length),
            query_tok=method.query_tok,
        )
        for kind, q in QUESTIONS
    ]
    rows = trim_padding(rows, left=True)

    texts, gen = scorer(method).generate_cached(
        {**params, "llm": params["vlm"]["llm"]},  # the scorer decodes with params["llm"]
        LlamaForCausalLM(method.llm_cfg),
        rows,
        method.tok,
        attach=attach,
        max_new_tokens=int(max_new_tokens),
    )
    answers = [{"kind": k, "question": q, "answer": a} for (k, q), a in zip(QUESTIONS, texts)]
    slots = chat_cache.capacity(int(method.config.rae_max_length))
    opening = opening_turns({"answers": answers})
    method.last_chat = chat_cache.start(gen, 0, opening, 2, QUESTIONS[0][1], slots)
    return answers


def predict(
    method: Any,
    params: Any,
    frames: np.ndarray,
    fps: float,
    state: Any = None,
    max_new_tokens: int = 32,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Frames -> ``(timeline, state)`` (module docstring)."""
    from vau_jax.eval.boxes import frame_scores
    from vau_jax.methods.tvau.evaluation import box_rule, heatmaps, native_boxes

    method._need("inference")
    start_s = float((state or {}).get("seconds", 0.0))
    feats = video_features(method, frames, fps)
    heat, grid_heat = heatmaps(method, params["ahd"], feats["taps"], grid=True)
    probs = frame_scores(heat)
    rows = native_boxes(method, heat, feats["indices"], frames.shape[1:3], box_rule(method.config))
    t_in = np.arange(len(frames)) / float(fps)
    j = np.clip(
        np.searchsorted(feats["timestamps"], t_in + 1e-6, side="right") - 1, 0, len(probs) - 1
    )
    frame_probs = probs[j]
    g = method.grid
    answers = answer(method, params, feats, max_new_tokens, grid_heat)
    duration = len(frames) / float(fps)
    timeline = {
        **timeline_head("tvau", frames, fps, start_s, frame_probs, THRESHOLD),
        "heatmap_grid": [g, g],
        "heatmaps": np.round(grid_heat[j], 3).tolist(),
        "boxes": [[int(r[0]), *(int(x) for x in r[1:5]), round(float(r[5]), 4)] for r in rows],
        "answers": answers,
        "explanation": " ".join(a["answer"] for a in answers),
    }
    method.last_prediction = {
        "heatmaps": heat,
        "grid_heatmaps": grid_heat,
        "indices": feats["indices"],
        "feats": feats,
    }
    return timeline, {"seconds": start_s + duration}


def opening_turns(timeline: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation a follow-up continues: the Yes/No question and its answer."""
    first = timeline["answers"][0]
    return [
        {"from": "human", "value": f"{T.VIDEO_MARKER}\n{first['question']}"},
        {"from": "gpt", "value": str(first["answer"])},
    ]


def ask(
    method: Any,
    params: Any,
    last: dict[str, Any],
    turns: list[dict[str, str]],
    question: str,
    *,
    max_new_tokens: int = 32,
    source: str = "chat",
    chat: chat_cache.ChatState | None = None,
) -> str:
    """A follow-up question about a video :func:`predict` has seen: the LVLM's greedy answer.

    With ``chat`` (``method.last_chat`` of that call, updated in place) the answer continues
    the LLM's KV cache, which holds the Yes/No prompt (visual tokens and RAE's prompts) and
    answer and every follow-up since: only the question's tokens are prefilled, nothing is
    encoded, and the visual tokens are the Yes/No question's (the Q-Former's instruction was
    "Is there an anomaly in this video?"). Without it, or when the conversation outgrows the
    cache, the prompt is rebuilt from ``last`` (``method.last_prediction`` of that call: its
    tapped tokens are reused, no frame decoded or encoded again; RAE's prompts come from them
    as in :func:`answer`) with the Q-Former's instruction ``question`` and the prompt
    ``turns`` + ``question`` (see :func:`vau_jax.inference.followup_row`); ``chat`` restarts
    from it.
    """
    from vau_jax.inference import followup_chat
    from vau_jax.methods.tvau.evaluation import scorer
    from vau_jax.models.llama import LlamaForCausalLM

    method._need("inference")
    attach = _attach(method, last["feats"], params, last.get("grid_heatmaps"))

    return followup_chat(
        chat,
        scorer(method),
        {**params, "llm": params["vlm"]["llm"]},  # the scorer decodes with params["llm"]
        LlamaForCausalLM(method.llm_cfg),
        method.tok,
        method.config,
        turns,
        question,
        method.num_video_tokens,
        int(method.config.rae_max_length),
        attach,
        method.query_tok,
        source,
        int(max_new_tokens),
    )
