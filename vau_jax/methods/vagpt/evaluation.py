"""VA-GPT's evaluation on the test split: multiple-choice Total / Temporal Acc.

Each test video gets ``questions_per_test_video`` four-option questions (never seen in
training: their seeds and videos are the test split's). Scored two ways: by the option
log-likelihood of each answer line after the prompt (the prompt runs once, the options
continue it: :class:`vau_jax.eval.scoring.Scorer`), and by generate-and-parse (greedy
answer, letter parsed). Also TETG's frame AUC, and the stage-1 numbers saved before stage 2.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from vau_jax.eval.metrics import mcqa_accuracy, parse_choice
from vau_jax.methods.vagpt import data as D


def test_items(method: Any) -> list[tuple[int, Any, str | None, Any]]:
    """``(video index, MCQuestion, TETG sentence, TETG interval)`` of every test question:
    the benchmark file's (``config.test_questions``, :mod:`vau_jax.data.formats.mcqa`) or
    ``questions_per_test_video`` generated from each test video's annotation."""
    from vau_jax.data import templates as T
    from vau_jax.data.formats.mcqa import read_mc_questions
    from vau_jax.data.formats.record import FormatError

    c = method.config
    videos = method.dataset.split("test")
    given = None
    if c.get("test_questions", ""):
        given = read_mc_questions(str(c.test_questions), T.MC_QUESTIONS[0])
        unknown = sorted(set(given) - {v.id for v in videos})
        if unknown:
            raise FormatError(f"{c.test_questions}: questions about videos not in the test "
                              f"split: {unknown[:3]}")
    items = []
    for i, v in enumerate(videos):
        sentence, interval = method.tetg_sentence("test", i)
        if given is not None:
            qs = given.get(v.id, [])
        else:
            qs = D.questions(v, int(c.questions_per_test_video), method.class_names)
        items += [(i, q, sentence, interval) for q in qs]
    if not items:
        raise FormatError(f"{c.get('test_questions', '')}: no question about a test video")
    return items


def rows_for(method: Any, items: list, answers: bool) -> list[dict[str, np.ndarray]]:
    """Tokenised test rows: 4 per question (one per option line) when ``answers``, else one
    left-padded generation prompt per question."""
    rows = []
    for i, q, sentence, _ in items:
        human = D.human_text(q, sentence)
        lines = [f"{o.letter}. {o.text}" for o in q.options] if answers else [None]
        for line in lines:
            rows.append(
                D.chat_row(
                    method.tok,
                    method.config,
                    human,
                    q.question,
                    line,
                    i,
                    method.num_video_tokens,
                    q.video_id,
                    query_tok=method.query_tok,
                )
            )
    return rows


def evaluate_mc(method: Any, params: Any, keep: float, generate_too: bool = True) -> dict[str, Any]:
    """Total / Temporal Acc on the test questions by option log-likelihood (and by
    generate-and-parse when ``generate_too``); keeps per-question details for the report."""
    feats = method.feats["test"]
    items = test_items(method)
    scorer = method.scorer(keep)
    scores = scorer.options(
        params,
        rows_for(method, items, True),
        4,
        int(method.tok.pad_id),
        attach=lambda b: D.attach_batch(b, feats),
        source="test",
    )
    chosen = scores.argmax(1).tolist()
    qs = [q for _, q, _, _ in items]
    intervals = [[o.interval for o in q.options] for q in qs]
    acc = mcqa_accuracy(chosen, [q.answer_index for q in qs], intervals)
    out: dict[str, Any] = {"total_acc": acc["Total_Acc"], "temporal_acc": acc["Temporal_Acc"]}
    details = {"items": items, "scores": scores, "chosen": chosen}
    if generate_too:
        from vau_jax.models.llama import LlamaForCausalLM

        texts = scorer.generate(
            params,
            LlamaForCausalLM(method.llm_cfg),
            rows_for(method, items, False),
            method.tok,
            attach=lambda b: D.attach_batch(b, feats),
            max_new_tokens=24,
        )
        parsed = [parse_choice(t, [o.text for o in q.options]) for t, q in zip(texts, qs)]
        g = mcqa_accuracy(parsed, [q.answer_index for q in qs], intervals)
        out.update(
            total_acc_generate=g["Total_Acc"],
            temporal_acc_generate=g["Temporal_Acc"],
            unparsed_generate=float(sum(p is None for p in parsed)) / len(parsed),
        )
        details["generated"] = texts
    method.last_eval = details
    return out


def evaluate(method: Any, params: Any, workdir: str) -> dict[str, float]:
    """The run's final metrics (``metrics.json``)."""
    metrics: dict[str, float] = {"chance_acc": 0.25}
    metrics.update({k: float(v) for k, v in method.tetg_metrics.items() if k.startswith("tetg")})
    path = os.path.join(workdir, "metrics_stage1.json")
    if os.path.isfile(path):
        with open(path) as fh:
            metrics.update({f"{k}_stage1": float(v) for k, v in json.load(fh).items()})
    gen = bool(method.config.get("eval_generate", True))
    res = evaluate_mc(method, params, method.keep["stage2"], generate_too=gen)
    metrics.update({k: float(v) for k, v in res.items()})
    metrics["test_questions"] = float(len(method.last_eval["items"]))
    metrics["sets_keep_ratio"] = method.keep["stage2"]
    return metrics
