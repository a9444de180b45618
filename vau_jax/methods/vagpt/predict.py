"""VA-GPT on one video: TETG timeline, ranked options and the LLM's explanation.

``predict(method, params, frames, fps, ...)``:

1. the frames are encoded like the training features (the same feature-store code path,
   :func:`vau_jax.data.features.encode_video`, without caching): the CLIP class token of
   every frame at the run's frame rate -> TETG's anomaly probability per frame; CLIP patch
   tokens and DINOv2 patches of ``frames_per_video`` uniformly sampled frames -> SETS;
2. TETG's sentence (its longest run of frames with ``p >= threshold``, in seconds) goes into
   the prompt as in training (when the run used TETG);
3. options: "No anomaly happens in this video" and every anomaly class with TETG's interval
   (the whole video when TETG finds none), lettered A-H (``num_options=8``) or the best four
   re-asked as A-D (``num_options=4``, the only format the tiny LLM was trained on); each
   scored by the log-likelihood of its answer line; ``p`` is the softmax over the options;
4. the explanation: the LLM's greedy answer to that prompt (``question`` replaces the
   question line; ``free_form`` asks the question without options). Its KV cache is kept
   as ``method.last_chat`` (:mod:`vau_jax.eval.chat_cache`): follow-ups (:func:`ask`)
   continue it.

The timeline holds ``frame_probs`` per *input* frame (the probability of the newest encoded
frame at or before it) and ``intervals_s`` (runs above the threshold). VA-GPT answers about
the frames it is given: ``state`` only carries the stream time, so a stream's windows are
explained one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.benchmark import MCOption, candidate_options, human_turn, mc_prompt, relettered
from vau_jax.data.datasets import ArrayVideo
from vau_jax.data.features import encode_video
from vau_jax.eval import chat_cache
from vau_jax.methods.base import standardise, timeline_head
from vau_jax.methods.vagpt import data as D
from vau_jax.methods.vagpt.tetg import tetg_prompt, tetg_types_word

HONESTY_NOTE = (
    "On the tiny preset every model here was trained on SynthVAD (synthetic 64x64 scenes) "
    "only, and the language model only on four-option multiple-choice questions about them: "
    "the options and the answer tell which SynthVAD option the model prefers, not a "
    "description of real footage."
)


def video_features(method: Any, frames: np.ndarray, fps: float) -> dict[str, np.ndarray]:
    """One video's features as :meth:`SplitFeatures.video` gives them (float32)."""
    src = ArrayVideo(id="input", split="test", fps=float(fps), array=frames)
    raw = {
        name: encode_video(src, method.specs[name], method.encoders[name], "float32")
        for name in ("cls", "visual", "dino")
    }
    return {
        "cls": standardise(raw["cls"]["cls"]),
        "timestamps": raw["cls"]["timestamps"],
        "indices": raw["cls"]["indices"],
        "visual": standardise(raw["visual"]["patches"]),
        "dino": raw["dino"]["patches"].astype(np.float32),
        "sample_times": raw["visual"]["timestamps"],
    }


def _row(method: Any, human: str, question: str, answer: str | None, source: str) -> dict:
    limit = _chat_length(method)
    return D.chat_row(
        method.tok,
        method.config,
        human,
        question,
        answer,
        0,
        method.num_video_tokens,
        source,
        limit,
        query_tok=method.query_tok,
    )


def _attach(feats: dict[str, np.ndarray]):
    def attach(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(b["video"])
        return {
            **b,
            "visual": np.stack([feats["visual"]] * n),
            "dino": np.stack([feats["dino"]] * n),
        }

    return attach


def score_options(
    method: Any,
    params: Any,
    feats: dict,
    keep: float,
    question: str,
    prior: str | None,
    options: list[MCOption],
    source: str,
) -> np.ndarray:
    """Log-likelihood ``[K]`` of each option's answer line after the prompt."""
    human = human_turn(mc_prompt(question, options), prior)
    rows = [_row(method, human, question, f"{o.letter}. {o.text}", source) for o in options]
    scores = method.scorer(keep).options(
        params, rows, len(rows), int(method.tok.pad_id), attach=_attach(feats), source=source
    )
    return np.asarray(scores[0], np.float64)


def predict(
    method: Any,
    params: Any,
    frames: np.ndarray,
    fps: float,
    state: Any = None,
    *,
    question: str | None = None,
    num_options: int = 8,
    free_form: bool = False,
    max_new_tokens: int = 32,
    keep: float | None = None,
    source: str = "input",
) -> tuple[dict[str, Any], dict[str, float]]:
    """Frames -> ``(timeline, state)`` (module docstring). ``keep`` is the SETS ratio (default:
    stage 2's)."""
    method._need("inference")
    if num_options not in (4, 8):
        raise ValueError(f"num_options must be 4 or 8, got {num_options}")
    from vau_jax.models.llama import LlamaForCausalLM

    c = method.config
    keep = method.keep["stage2"] if keep is None else float(keep)
    start_s = float((state or {}).get("seconds", 0.0))
    feats = video_features(method, frames, fps)
    run_fps = float(method.specs["cls"].fps)
    probs = method.tetg.probs(method.tetg_params, [feats["cls"]])[0]  # [T'] at run_fps
    threshold = float(c.tetg.threshold)
    smooth_s = float(c.tetg.get("smooth_s", 0.0))
    sentence, interval = tetg_prompt(
        probs, run_fps, threshold, method.class_names, smooth_s, tetg_types_word(c)
    )
    prior = sentence if c.use_tetg else None
    duration = len(frames) / float(fps)
    question = question or T.MC_QUESTIONS[0]
    options = candidate_options(method.class_names, interval, duration)
    scores = score_options(method, params, feats, keep, T.MC_QUESTIONS[0], prior, options, source)
    asked = options
    if num_options == 4:
        top = sorted(np.argsort(-scores, kind="stable")[:4].tolist())
        asked = relettered([options[i] for i in top])
        scores = score_options(method, params, feats, keep, T.MC_QUESTIONS[0], prior, asked, source)
    p = np.exp(scores - scores.max())
    p /= p.sum()
    order = np.argsort(-scores, kind="stable")
    ranked = [
        {
            "letter": asked[int(i)].letter,
            "text": asked[int(i)].text,
            "anomaly_type": asked[int(i)].anomaly_type,
            "interval_s": None if asked[int(i)].interval is None else list(asked[int(i)].interval),
            "logprob": round(float(scores[i]), 4),
            "p": round(float(p[i]), 6),
        }
        for i in order
    ]
    human = human_turn(question if free_form else mc_prompt(question, asked), prior)
    texts, gen = method.scorer(keep).generate_cached(
        params,
        LlamaForCausalLM(method.llm_cfg),
        [_row(method, human, question, None, source)],
        method.tok,
        attach=_attach(feats),
        max_new_tokens=int(max_new_tokens),
    )
    explanation = texts[0]
    t_in = np.arange(len(frames)) / float(fps)
    j = np.clip(
        np.searchsorted(feats["timestamps"], t_in + 1e-6, side="right") - 1, 0, len(probs) - 1
    )
    frame_probs = probs[j]
    timeline = {
        **timeline_head("vagpt", frames, fps, start_s, frame_probs, threshold),
        "tetg_fps": run_fps,
        "tetg_probs": [round(float(x), 6) for x in probs],
        "tetg_interval_s": None if interval is None else [float(interval[0]), float(interval[1])],
        "tetg_sentence": sentence,
        "tetg_in_prompt": bool(c.use_tetg),
        "question": question,
        "prompt": human,
        "explanation": explanation,
        "options": ranked,
        "sampled_frames_s": [round(float(t), 4) for t in feats["sample_times"]],
        "sets_keep_ratio": keep,
        "note": HONESTY_NOTE if c.llm == "tiny" else "",
    }
    method.last_prediction = feats
    method.last_chat = chat_cache.start(
        gen, 0, opening_turns(timeline), 2, question, chat_cache.capacity(_chat_length(method))
    )
    return timeline, {"seconds": start_s + duration}


def _chat_length(method: Any) -> int:
    """The longest prompt of a chat (the explanation's, a rebuilt follow-up's): half the
    LLM's positions."""
    return int(method.llm_cfg.max_position_embeddings) // 2


def opening_turns(timeline: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation a follow-up continues: the prediction's prompt and explanation."""
    return [
        {"from": "human", "value": str(timeline["prompt"])},
        {"from": "gpt", "value": str(timeline["explanation"])},
    ]


def ask(
    method: Any,
    params: Any,
    feats: dict[str, np.ndarray],
    turns: list[dict[str, str]],
    question: str,
    *,
    keep: float | None = None,
    max_new_tokens: int = 32,
    source: str = "chat",
    chat: chat_cache.ChatState | None = None,
) -> str:
    """A follow-up question about a video :func:`predict` has seen: the LLM's greedy answer.

    With ``chat`` (``method.last_chat`` of that call, updated in place) the answer continues
    the LLM's KV cache, which holds the explanation's prompt (video tokens included) and
    answer and every follow-up since: only the question's tokens are prefilled, nothing is
    encoded, and the video tokens are those of the explanation (the Q-Former's instruction
    was the explanation's ``question``). Without it, or when the conversation outgrows the
    cache, the prompt is rebuilt from ``feats``, that call's :func:`video_features`
    (``method.last_prediction``): no frame is decoded or encoded again, SETS selects from the
    cached DINOv2 patches, and the text-conditioned Q-Former (its instruction is
    ``question``) and the prompt (``turns`` + ``question``, see
    :func:`vau_jax.inference.followup_row`) are recomputed; ``chat`` restarts from it.
    ``keep``: the SETS ratio (default: stage 2's).
    """
    from vau_jax.inference import followup_chat
    from vau_jax.models.llama import LlamaForCausalLM

    method._need("inference")
    keep = method.keep["stage2"] if keep is None else float(keep)
    return followup_chat(
        chat,
        method.scorer(keep),
        params,
        LlamaForCausalLM(method.llm_cfg),
        method.tok,
        method.config,
        turns,
        question,
        method.num_video_tokens,
        _chat_length(method),
        _attach(feats),
        method.query_tok,
        source,
        int(max_new_tokens),
    )
