"""VA-GPT's evaluation as in the paper: the model *generates* its answer to a four-option
question, and the letter (or option text) parsed from it is scored.

Benchmarks, each a multiple-choice JSONL file (:mod:`vau_jax.data.benchmark`; the
ground truth ``python -m vau_jax.evaluate --metric=mcqa`` reads), written into the run
folder with the model's answers beside them:

* **in-domain** (``benchmark_in_domain.jsonl``): ``questions_per_test_video`` questions per
  test video of the dataset, built from its test annotations (or ``config.test_questions``);
* **cross-domain** (``benchmark_cross_domain.jsonl``): the same from another dataset
  (``config.cross_domain``): an XD-Violence tree, or on SynthVAD a domain-shifted test split
  (``SynthConfig(domain="shifted")``: other palettes, textures, camera noise, actor sizes);
* **validation** (``benchmark_validation.jsonl``, metrics prefixed ``validation_``): the same
  on SynthVAD's validation videos (``num_validation_videos``), where settings are chosen.

Metrics: ``total_acc`` / ``temporal_acc`` (generated answer, the headline), the option
log-likelihood diagnostics ``total_acc_loglik`` / ``temporal_acc_loglik`` (each option's
answer line scored after the prompt), ``total_acc_chance`` / ``temporal_acc_chance`` (a
uniform random choice, computed from the questions: both 0.25), ``unparsed``, the generated
answer's Total Acc on the questions about normal and about anomalous videos
(``total_acc_normal`` / ``total_acc_anomalous``) and how often it chooses "no anomaly"
(``no_anomaly_rate``: always choosing it scores 0.5 on these balanced benchmarks), the same with
an ``xd_`` prefix for the cross-domain benchmark, TETG's frame AUC, what an exact reader of
TETG's sentence would score (``tetg_reader_acc``, :func:`vau_jax.data.benchmark.
prior_reader_accuracy`: the prior's share of the answer apart from the LLM's reading), and the
stage-1 numbers
(``*_stage1``) saved before stage 2. Training never sees these questions nor any lettered
prompt about a video.

Permutation voting (ours, off by default; ``config.mcqa_orders = K``, 2..4): each question is
also asked with its options in the cyclic orders 1..K-1 (:func:`vau_jax.data.benchmark.
rotated`), each answer generated and parsed as the headline's, mapped back to its option, and
the option chosen most often wins (:func:`vau_jax.data.benchmark.vote`; ties go to the
question's own order). A small LLM's letter follows the position as much as the content
(README, VA-GPT); voting over positions cancels that. Reported beside the headline, never
instead of it: ``total_acc_voted`` / ``temporal_acc_voted`` and ``orders_agree`` (the share of
questions answered alike in every order), with the voted choices in
``answers_<benchmark>_voted.jsonl`` (``{"id", "answer_index"}``; ``{"id", "answer": ""}``,
wrong, when no order parsed) for ``vau_jax.evaluate --metric=mcqa``.
"""

from __future__ import annotations

import json
import os
import zlib
from typing import Any

import numpy as np

from vau_jax.data import templates as T
from vau_jax.data.benchmark import (
    chance,
    multiple_choice,
    prior_reader_accuracy,
    rotated,
    unrotated,
    vote,
    write_benchmark,
)
from vau_jax.eval.metrics import mcqa_accuracy, mcqa_by_truth, parse_choice
from vau_jax.methods.vagpt import data as D

#: benchmark name -> (feature split, metric prefix). "validation": SynthVAD's validation
#: videos (``num_validation_videos``), neither trained on nor tested: choices are made there.
BENCHMARKS = {
    "in_domain": ("test", ""),
    "cross_domain": ("cross", "xd_"),
    "validation": ("validation", "validation_"),
}


def _benchmark_videos(method: Any, split: str) -> tuple[Any, list[Any]]:
    """``(dataset, videos)`` of a benchmark's feature split (``BENCHMARKS``)."""
    if split == "cross":
        return method.cross, method.cross.split("test")
    return method.dataset, method.dataset.split(split)


def cross_dataset(config: Any) -> Any:
    """The cross-domain test dataset of ``config.cross_domain`` (``None`` when off):
    ``"synthvad_shifted"`` (SynthVAD's test split rendered with ``domain="shifted"``) or a
    published layout (``"xd_violence"`` + ``dataset_dir``)."""
    import dataclasses

    from vau_jax.data.datasets import layout_dataset, synthvad_dataset
    from vau_jax.data.synthvad import SynthConfig

    cd = config.get("cross_domain", None)
    if cd is None or not str(cd.get("dataset", "")):
        return None
    if cd.dataset == "synthvad_shifted":
        synth = SynthConfig(**{**dict(config.synthvad), "domain": "shifted"})
        ds = synthvad_dataset(config.data_dir, synth, 0, int(cd.num_test_videos))
        return dataclasses.replace(ds, name="synthvad_shifted")
    return layout_dataset(
        str(cd.dataset), str(cd.dataset_dir), config.data_dir, config.get("dataset_fps", None)
    )


def benchmark_questions(method: Any, split: str) -> list[Any]:
    """The questions of a benchmark (``split``: ``"test"`` in-domain, ``"cross"``,
    ``"validation"``)."""
    from vau_jax.data.formats.mcqa import read_mc_questions
    from vau_jax.data.formats.record import FormatError

    c = method.config
    dataset, videos = _benchmark_videos(method, split)
    given_path = str(c.get("test_questions", "")) if split == "test" else ""
    if given_path:
        given = read_mc_questions(given_path, T.MC_QUESTIONS[0])
        unknown = sorted(set(given) - {v.id for v in videos})
        if unknown:
            raise FormatError(
                f"{given_path}: questions about videos not in the test split: {unknown[:3]}"
            )
        return [q for v in videos for q in given.get(v.id, [])]
    classes = method.class_names
    if split == "cross":
        classes = dataset.class_names or method.class_names
    out = []
    for v, iv in zip(videos, D.anomaly_intervals(videos)):
        f = D.facts(v, intervals=iv)
        base = zlib.crc32(f"{dataset.name}/{v.id}".encode())
        out += [
            multiple_choice(f, classes, seed=base * 16 + q)
            for q in range(int(c.questions_per_test_video))
        ]
    return out


def benchmark_items(method: Any, split: str) -> list[tuple[int, Any, str | None, Any]]:
    """``(video index, question, TETG sentence, TETG interval)`` of every benchmark question."""
    _, videos = _benchmark_videos(method, split)
    index = {v.id: i for i, v in enumerate(videos)}
    items = []
    for q in benchmark_questions(method, split):
        i = index[q.video_id]
        sentence, interval = method.tetg_sentence(split, i)
        items.append((i, q, sentence, interval))
    if not items:
        raise ValueError(f"the {split} benchmark has no question")
    return items


def rows_for(method: Any, items: list, answers: bool) -> list[dict[str, np.ndarray]]:
    """Tokenised rows: one per option line when ``answers`` (log-likelihood), else one
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


def score_benchmark(
    method: Any,
    params: Any,
    keep: float,
    split: str = "test",
    generate: bool = True,
    loglik: bool = True,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Generation-based (headline) and log-likelihood (diagnostic) accuracy on a benchmark;
    returns ``(metrics, details)`` (details: items, answers, scores, choices)."""
    from vau_jax.models.llama import LlamaForCausalLM

    feats = method.feats[split]
    items = benchmark_items(method, split)
    qs = [q for _, q, _, _ in items]
    correct = [q.answer_index for q in qs]
    intervals = [[o.interval for o in q.options] for q in qs]
    out: dict[str, float] = dict(chance(qs))
    details: dict[str, Any] = {"items": items}
    if method.config.use_tetg:  # what an exact reader of TETG's sentence would score
        out["tetg_reader_acc"] = prior_reader_accuracy(qs, [iv for _, _, _, iv in items])
    scorer = method.scorer(keep)
    attach = lambda b: D.attach_batch(b, feats)  # noqa: E731

    def answers(batch_items: list) -> tuple[list[str], list[int | None]]:
        texts = scorer.generate(
            params,
            LlamaForCausalLM(method.llm_cfg),
            rows_for(method, batch_items, False),
            method.tok,
            attach=attach,
            max_new_tokens=answer_tokens(method.config),
        )
        qq = [q for _, q, _, _ in batch_items]
        return texts, [parse_choice(t, [o.text for o in q.options]) for t, q in zip(texts, qq)]

    orders = mcqa_orders(method.config, qs)  # checked before any generation
    if generate:
        texts, parsed = answers(items)
        acc = mcqa_accuracy(parsed, correct, intervals)
        halves = mcqa_by_truth(parsed, correct, intervals)
        out.update(
            total_acc=acc["Total_Acc"],
            temporal_acc=acc["Temporal_Acc"],
            unparsed=float(sum(p is None for p in parsed)) / len(parsed),
            # diagnostics: always answering "no anomaly" scores 0.5 on a balanced benchmark
            total_acc_normal=halves["Total_Acc_normal"],
            total_acc_anomalous=halves["Total_Acc_anomalous"],
            no_anomaly_rate=halves["No_Anomaly_Rate"],
        )
        details.update(generated=texts, parsed=parsed)
        if orders > 1:
            per_order = [parsed]
            for shift in range(1, orders):
                turned = [(i, rotated(q, shift), sent, iv) for i, q, sent, iv in items]
                _, chosen = answers(turned)
                per_order.append([unrotated(c, shift, len(q.options)) for c, q in zip(chosen, qs)])
            voted = vote(per_order)
            acc = mcqa_accuracy(voted, correct, intervals)
            out.update(
                total_acc_voted=acc["Total_Acc"],
                temporal_acc_voted=acc["Temporal_Acc"],
                orders_agree=float(np.mean([len(set(c)) == 1 for c in zip(*per_order)])),
            )
            details.update(voted=voted, per_order=per_order)
    if loglik:
        counts = {len(q.options) for q in qs}
        if len(counts) != 1:
            raise ValueError(f"benchmark questions have different option counts {sorted(counts)}")
        scores = scorer.options(
            params,
            rows_for(method, items, True),
            counts.pop(),
            int(method.tok.pad_id),
            attach=attach,
            source=split,
        )
        chosen = scores.argmax(1).tolist()
        acc = mcqa_accuracy(chosen, correct, intervals)
        out.update(total_acc_loglik=acc["Total_Acc"], temporal_acc_loglik=acc["Temporal_Acc"])
        details.update(scores=scores, chosen=chosen)
    out["questions"] = float(len(qs))
    return out, details


def mcqa_orders(config: Any, questions: list[Any]) -> int:
    """``config.mcqa_orders`` (1 when absent) checked against the questions' option count:
    between 1 (no voting) and the number of options (every cyclic order once)."""
    k = int(config.get("mcqa_orders", 1))
    n = min(len(q.options) for q in questions)
    if not 1 <= k <= n:
        raise ValueError(f"mcqa_orders={k}: expected 1 (no voting) to {n} (the option count)")
    return k


def answer_tokens(config: Any) -> int:
    """Greedy tokens per answer: ``config.max_answer_tokens``, at least
    ``text_llm.REASONED_ANSWER_TOKENS`` when the tiny LLM learnt multiple-choice answers
    whose letter comes last (``base_llm.text_pretrain.mc_answer`` "evidence" or "option")."""
    from vau_jax.methods.pretrain import text_llm

    n = int(config.get("max_answer_tokens", 24))
    base = config.get("base_llm", None)
    text = base.get("text_pretrain", None) if base is not None else None
    if config.get("llm", "tiny") == "tiny" and text is not None and text_llm.letter_last(text):
        n = max(n, text_llm.REASONED_ANSWER_TOKENS)
    return n


def write_answers(workdir: str, name: str, details: dict[str, Any]) -> None:
    """``benchmark_<name>.jsonl`` (the questions) and ``answers_<name>.jsonl`` (the model's
    generated answers, ``{"id", "answer"}``): ``python -m vau_jax.evaluate --metric=mcqa
    --gt=... --pred=...`` recomputes ``total_acc`` / ``temporal_acc`` from them."""
    from vau_jax.data.features import atomic_write

    qs = [q for _, q, _, _ in details["items"]]
    write_benchmark(os.path.join(workdir, f"benchmark_{name}.jsonl"), qs)

    def answers(suffix: str, records: list[dict[str, Any]]) -> None:
        """``answers_<name><suffix>.jsonl``: ``{"id": "q<n>", **record}`` per question."""
        text = "".join(json.dumps({"id": f"q{n}", **r}) + "\n" for n, r in enumerate(records))
        path = os.path.join(workdir, f"answers_{name}{suffix}.jsonl")
        atomic_write(path, lambda f: f.write(text), mode="w")

    if "generated" in details:
        answers("", [{"answer": t} for t in details["generated"]])
    if "voted" in details:  # unparsed in every order: an empty answer, scored wrong
        answers(
            "_voted",
            [{"answer": ""} if c is None else {"answer_index": c} for c in details["voted"]],
        )


def evaluate_all(
    method: Any, params: Any, keep: float, workdir: str | None = None, generate: bool = True
) -> dict[str, float]:
    """Both benchmarks (the cross-domain one when configured), metric names prefixed
    ``xd_`` for it; writes the benchmark and answer files into ``workdir`` when given."""
    metrics: dict[str, float] = {}
    for name, (split, prefix) in BENCHMARKS.items():
        if split not in method.feats:
            continue
        res, details = score_benchmark(method, params, keep, split, generate=generate)
        metrics.update({prefix + k: v for k, v in res.items()})
        if split == "test":
            method.last_eval = details
        if workdir is not None and jax_process_index() == 0:
            write_answers(workdir, name, details)
    return metrics


def jax_process_index() -> int:
    import jax

    return jax.process_index()


def evaluate(method: Any, params: Any, workdir: str) -> dict[str, float]:
    """The run's final metrics (``metrics.json``)."""
    metrics: dict[str, float] = {}
    metrics.update({k: float(v) for k, v in method.tetg_metrics.items() if k.startswith("tetg")})
    path = os.path.join(workdir, "metrics_stage1.json")
    if os.path.isfile(path):
        with open(path) as fh:
            metrics.update(
                {
                    f"{k}_stage1": float(v)
                    for k, v in json.load(fh).items()
                    if not any(s in k for s in ("chance", "questions", "reader"))
                }
            )
    gen = bool(method.config.get("eval_generate", True))
    metrics.update(evaluate_all(method, params, method.keep["stage2"], workdir, generate=gen))
    metrics["sets_keep_ratio"] = method.keep["stage2"]
    return metrics
