"""Text-only pretraining of the tiny LLaMA that VA-GPT's video LLM starts from.

Vicuna arrives knowing how to read a report and answer a lettered question; the tiny LLaMA
trained from scratch does not, so it first learns those general skills from text alone, on
videos of SynthVAD's ``pretrain`` split (never a train or test video of any method). Every
example starts from a *report*: the video's captions with their times, one line per caption
segment (``"2.1s-4.5s: A person in red runs along the path."``), and asks one of:

* **multiple choice on text** (``mc``): which option describes the anomaly and when —
  the balanced four options of :mod:`vau_jax.data.benchmark`, answered "C. A person
  running from 2.1s to 4.5s" (answering with a letter is a general skill, as for Vicuna);
* **anomaly QA** (``qa``): is there an anomaly, what and when — answered in a sentence;
* **summary** (``summary``): the report summarised as the video's event description;
* optional, only when ``mix`` weights it: **object** (``object``): which object the report's
  anomaly involves, answered "The person is the anomalous object of the report." (ours: the
  words a frozen LLM needs to name an anomalous object, as T-VAU's target question asks; its
  wording shares no 4-gram with T-VAU's target question and answers);
* optional, only when ``mix`` weights it: **prior-only multiple choice** (``prior_mc``): the
  same options with a TETG-style prior sentence as the only evidence
  (:func:`prior_mc_conversation`; ours: reading an interval off VA-GPT's prior and matching
  it among options, a text skill).
* optional, only when ``mix`` weights it: **lookup** (``lookup``): which lettered option
  repeats a quoted line (:func:`lookup_conversation`; ours: the line lookup that reading
  the prior needs, alone).

The loss is the next-token cross-entropy on the answers. Evaluation: accuracy of the
generated letter on held-out pretrain-split reports (``text_mc_acc``; chance 0.25). The
result is cached as a converted checkpoint ``<data_dir>/text_pretrain_<hash>``.

    python -m vau_jax.main --config=configs/text_pretrain.py
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from vau_jax.data import templates as T
from vau_jax.data.benchmark import MC_ANSWER_STYLES, MCQuestion, mc_answer_text, multiple_choice
from vau_jax.data.chat import TooLongError, letter_weighted_row, tokenize_chat
from vau_jax.data.instruct import NORMAL, VideoFacts, format_time, type_phrase
from vau_jax.data.packing import pack_rows, packing_summary
from vau_jax.methods.base import MethodBase
from vau_jax.methods.pretrain.llm import LLMPretrain
from vau_jax.methods.pretrain.prior_text import (
    TIME_EMBEDDINGS,
    lookup_conversation,
    prior_mc_conversation,
    prior_sentence,
    sinusoid_time_rows,
)
from vau_jax.methods.runner import ensure_pretrained, pretrained_dir, single_stage
from vau_jax.models import registry
from vau_jax.models.llama import LlamaForCausalLM
from vau_jax.train.trainer import Stage

KINDS = ("mc", "qa", "summary")
#: Optional kinds, used only when ``mix`` names them with a weight above 0 (so the default
#: corpus, its sampling and its cache key stay those of :data:`KINDS`).
OPTIONAL_KINDS = ("object", "prior_mc", "lookup")
SUMMARY_QUESTIONS = ("Summarize the report in one sentence.", "What happened, in short?")
QA_QUESTIONS = (
    "Is there an anomaly in this report? If so, what is it and when does it happen?",
    "Does the report describe anything abnormal? Say what and when.",
)
#: ``object`` (optional, ours): which object the report's anomaly involves. Worded unlike
#: T-VAU's target question and answer (templates.TARGET_*; no 4-gram in common), so the
#: LLM learns the words ("anomalous", "object") as Vicuna knows them, not T-VAU's sentence.
OBJECT_QUESTIONS = (
    "Which object in the report behaves anomalously?",
    "What does the anomaly in this report involve?",
)
OBJECT_ANSWER = "The {target} is the anomalous object of the report."
OBJECT_NONE_ANSWER = "Nothing in this report is anomalous."


@dataclasses.dataclass(frozen=True)
class Report:
    """What the text tasks know of one pretrain-split video."""

    facts: VideoFacts
    captions: tuple[tuple[float, float, str], ...]
    description: str

    def text(self) -> str:
        lines = [f"{format_time(s)}-{format_time(e)}: {c}" for s, e, c in self.captions]
        return "Report:\n" + "\n".join(lines)


def merge_normal(
    captions: Sequence[tuple[float, float, str]], anomaly: Sequence[tuple[float, float]]
) -> tuple[tuple[float, float, str], ...]:
    """Caption segments with every run of consecutive segments outside the anomaly merged
    into one (keeping its first sentence): a report of a few lines, not one per change of
    walkers."""
    out: list[list] = []
    for s, e, text in captions:
        normal = not any(min(e, b) > max(s, a) for a, b in anomaly)
        if out and normal and out[-1][3]:
            out[-1][1] = e
        else:
            out.append([s, e, text, normal])
    return tuple((s, e, text) for s, e, text, _ in out)


def reports(data_dir: str, synth_cfg: Any, num_videos: int) -> list[Report]:
    """The :class:`Report` of the first ``num_videos`` videos of SynthVAD's pretrain split
    (its captions with the normal stretches merged, :func:`merge_normal`)."""
    from vau_jax.data.datasets import synthvad_dataset
    from vau_jax.data.instruct import facts_from_synth
    from vau_jax.data.synthvad import from_record
    from vau_jax.data.synthvad.captions import uca_segments

    out = []
    for v in synthvad_dataset(data_dir, synth_cfg, 0, 0, num_pretrain=num_videos).split("pretrain"):
        video = from_record(v.record())
        facts = facts_from_synth(video)
        captions = merge_normal(uca_segments(video), facts.intervals)
        out.append(Report(facts, captions, video.event_description))
    return out


def anomaly_answer(facts: VideoFacts) -> str:
    """The sentence answer to "is there an anomaly, what and when" (never an option letter)."""
    if facts.anomaly_type == NORMAL or not facts.intervals:
        return "No, nothing abnormal happens in this video."
    times = " and ".join(
        f"between {format_time(a)} and {format_time(b)}" for a, b in facts.intervals
    )
    return f"Yes: {type_phrase(facts.anomaly_type)}, {times}."


#: The multiple-choice questions of the replayed text rows (:func:`replay_conversations`):
#: about the report, so that no training row of a video method carries the wording of its
#: evaluation questions (``templates.MC_QUESTIONS``).
REPORT_MC_QUESTIONS = (
    "Which option describes the anomaly in this report and when it happens?",
    "Select the anomaly type and the time interval that the report describes.",
)


def approximate(report: Report, noise: float, rng: np.random.Generator) -> Report:
    """``report`` with every caption boundary moved by up to ``±noise`` seconds (uniform,
    kept inside the video and in order, rounded to 0.1 s): evidence that is only roughly
    right, as a video LLM's own reading of a video or TETG's interval is."""
    if noise <= 0:
        return report
    dur = float(report.facts.duration)
    bounds = sorted({b for s, e, _ in report.captions for b in (s, e)})
    moved = {b: b for b in bounds}
    prev = 0.0
    for b in bounds:
        if 0.0 < b < dur:
            moved[b] = max(prev, min(dur, round(b + float(rng.uniform(-noise, noise)), 1)))
        prev = moved[b]
    caps = tuple((moved[s], moved[e], c) for s, e, c in report.captions if moved[e] > moved[s])
    return dataclasses.replace(report, captions=caps or report.captions)


def reported_intervals(truth: Report, written: Report) -> tuple[tuple[float, float], ...]:
    """The anomaly intervals as ``written`` (an :func:`approximate` copy of ``truth``) gives
    them: per true interval, the span of the written caption segments whose true segments
    lie at least half inside it (the true interval when the two reports' segments do not
    line up, or none does)."""
    if len(written.captions) != len(truth.captions):
        return tuple(truth.facts.intervals)
    out = []
    for a, b in truth.facts.intervals:
        idx = [
            k
            for k, (s, e, _) in enumerate(truth.captions)
            if max(0.0, min(e, b) - max(s, a)) >= 0.5 * (e - s) > 0
        ]
        if not idx:
            out.append((a, b))
            continue
        out.append((written.captions[idx[0]][0], written.captions[idx[-1]][1]))
    return tuple(out)


def reported_anomaly(truth: Report, written: Report) -> str:
    """The evidence an ``mc_answer="evidence"`` multiple-choice answer restates before its
    letter (ours, off by default): the anomaly-QA sentence of :func:`anomaly_answer` with the
    times as the report ``written`` gives them (:func:`reported_intervals`), as in ``"Yes: a
    person running, between 2.3s and 4.4s. Answer: C."``. The letter then follows the model's
    own statement of what happened, the statement a video LLM also learns to make about a
    video."""
    facts = dataclasses.replace(truth.facts, intervals=reported_intervals(truth, written))
    return anomaly_answer(facts)


def conversation(
    report: Report,
    kind: str,
    seed: int,
    class_names: tuple[str, ...],
    mc_questions: Sequence[str] = T.MC_QUESTIONS,
    time_noise: float = 0.0,
    answer_style: str = "letter",
    types_word: str = T.TETG_TYPES_WORD,
) -> tuple[list[dict[str, str]], MCQuestion | None]:
    """One text example of ``kind`` (module docstring); the question for ``mc``, worded
    from ``mc_questions``. With ``time_noise > 0`` an ``mc`` report's times are only
    approximate (:func:`approximate`), so the right option is the one that agrees best with
    the report, not the one that repeats its numbers (the distractors' intervals overlap the
    true one by at most 30% IoU). ``answer_style`` words an ``mc`` answer
    (:func:`mc_answer_text`). ``types_word`` names the class list of ``prior_mc`` rows'
    TETG-style sentences (:func:`prior_types_word`)."""
    rng = np.random.default_rng(seed)
    if kind == "mc":
        q = multiple_choice(report.facts, class_names, seed, questions=mc_questions)
        written = approximate(report, time_noise, np.random.default_rng([seed, 1]))
        o = q.options[q.answer_index]
        evidence = reported_anomaly(report, written) if answer_style == "evidence" else None
        answer = mc_answer_text(o.letter, o.text, answer_style, evidence)
        return [
            {"from": "human", "value": f"{written.text()}\n{q.prompt()}"},
            {"from": "gpt", "value": answer},
        ], q
    if kind == "qa":
        question = QA_QUESTIONS[int(rng.integers(len(QA_QUESTIONS)))]
        return [
            {"from": "human", "value": f"{report.text()}\n{question}"},
            {"from": "gpt", "value": anomaly_answer(report.facts)},
        ], None
    if kind == "object":
        question = OBJECT_QUESTIONS[int(rng.integers(len(OBJECT_QUESTIONS)))]
        f = report.facts
        answer = OBJECT_NONE_ANSWER
        if f.anomaly_type != NORMAL and f.intervals:
            if not f.target:
                raise ValueError(f"video {f.video_id!r}: an anomaly without a known object")
            answer = OBJECT_ANSWER.format(target=f.target)
        return [
            {"from": "human", "value": f"{report.text()}\n{question}"},
            {"from": "gpt", "value": answer},
        ], None
    if kind == "summary":
        question = SUMMARY_QUESTIONS[int(rng.integers(len(SUMMARY_QUESTIONS)))]
        return [
            {"from": "human", "value": f"{report.text()}\n{question}"},
            {"from": "gpt", "value": report.description},
        ], None
    if kind == "prior_mc":
        return prior_mc_conversation(report, seed, class_names, answer_style, types_word)
    if kind == "lookup":
        return lookup_conversation(report, seed, class_names, answer_style)
    raise ValueError(f"unknown text task {kind!r}; choose from {KINDS + OPTIONAL_KINDS}")


def mixed_kinds(mix: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """``(kinds, probabilities)`` a ``mix`` draws from: :data:`KINDS`, then each of
    :data:`OPTIONAL_KINDS` that ``mix`` gives a weight above 0, with the weights normalised."""
    unknown = sorted(set(mix.keys()) - set(KINDS + OPTIONAL_KINDS))
    if unknown:
        raise ValueError(
            f"mix: unknown text task(s) {unknown}; choose from {KINDS + OPTIONAL_KINDS}"
        )
    kinds = KINDS + tuple(k for k in OPTIONAL_KINDS if float(mix.get(k, 0.0)) > 0)
    weights = np.array([float(mix[k]) for k in kinds])
    return kinds, weights / weights.sum()


def _noise(config: Any) -> float:
    """``config.mc_time_noise``: seconds of noise on the times of multiple-choice reports."""
    return float(config.get("mc_time_noise", 0.0))


#: Tokens an answer whose letter comes last needs (the anomaly sentence or the option's
#: text, then "Answer: X.": 22-38 pieces of the tiny tokenizer), so that the letter is
#: generated.
REASONED_ANSWER_TOKENS = 48


def prior_types_word(config: Any) -> str:
    """``config.prior_types_word`` of a text pretraining config: what its TETG-style prior
    sentences call the class list (VA-GPT's ``tetg.types_word``); for a config saved before
    the field, the word its cache was trained with (:data:`~vau_jax.data.templates.
    TETG_TYPES_WORD_BEFORE`, the field's :data:`~vau_jax.methods.runner.KEY_DEFAULTS` value)."""
    return str(config.get("prior_types_word", T.TETG_TYPES_WORD_BEFORE))


def mc_answer_style(config: Any) -> str:
    """``config.mc_answer`` of a text pretraining config
    (:data:`vau_jax.data.benchmark.MC_ANSWER_STYLES`; ``"letter"`` when absent). Raises
    ValueError for another value."""
    style = str(config.get("mc_answer", "letter"))
    if style not in MC_ANSWER_STYLES:
        raise ValueError(f"mc_answer={style!r}: choose from {MC_ANSWER_STYLES}")
    return style


def object_answer_style(config: Any) -> str:
    """How lettered questions about a video's objects are answered for a text pretraining
    config: its :func:`mc_answer_style`, with ``"evidence"`` read as ``"letter"`` (object
    questions have no report to restate)."""
    style = mc_answer_style(config)
    return "letter" if style == "evidence" else style


def letter_last(config: Any) -> bool:
    """Whether the text pretraining config's multiple-choice answers give their letter last
    (after the evidence or the option's text), so that generating one needs
    :data:`REASONED_ANSWER_TOKENS`."""
    return mc_answer_style(config) != "letter"


def replay_conversations(
    config: Any,
    count: int,
    seed: int,
    prior_fraction: float = 0.0,
    prior_mc_fraction: float = 0.0,
) -> list[list[dict[str, str]]]:
    """``count`` text-only conversations drawn like the text pretraining corpus of
    ``config`` (a ``configs/text_pretrain.py`` config: its pretrain-split reports and
    ``mix``), for the later trainings of the same LLM to replay.

    With ``prior_mc_fraction > 0`` that fraction of them are prior-only multiple-choice rows
    instead (:func:`prior_mc_conversation`). With ``prior_fraction > 0`` that fraction of the
    others opens with a TETG-style prior
    (:func:`prior_sentence`), so that a prompt carrying VA-GPT's temporal-prior sentence is
    not only ever a clip-caption question: without it, the sentence switched the 4-layer LLM
    from lettered answers to caption fragments (README, VA-GPT).

    A 4-layer LLM trained from scratch forgets what it is not shown: fine-tuned on video
    captions and clip dialogues alone it stops answering lettered questions at all. Replaying
    text-only dialogue keeps its general skills, as LLaVA-style instruction data mixes text
    conversations in. Every conversation is about a pretrain-split report, never about a
    video of any method's train or test split.
    """
    from vau_jax.data.synthvad import ANOMALY_TYPES, SynthConfig

    if count <= 0:
        return []
    reps = reports(
        config.data_dir, SynthConfig(**dict(config.synthvad)), int(config.num_train_videos)
    )
    kinds, p = mixed_kinds(config.mix)
    word = prior_types_word(config)
    rng = np.random.default_rng([int(seed), 7919])
    out = []
    for _ in range(int(count)):
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        rep = reps[int(rng.integers(len(reps)))]
        seed_k = int(rng.integers(2**31))
        if prior_mc_fraction > 0 and rng.uniform() < prior_mc_fraction:
            conv, _ = prior_mc_conversation(
                rep, seed_k, tuple(ANOMALY_TYPES), mc_answer_style(config), word
            )
            out.append(conv)
            continue
        conv, _ = conversation(
            rep,
            kind,
            seed_k,
            tuple(ANOMALY_TYPES),
            REPORT_MC_QUESTIONS,
            _noise(config),
            mc_answer_style(config),
            word,
        )
        if prior_fraction > 0 and rng.uniform() < prior_fraction:
            prior = prior_sentence(rep, tuple(ANOMALY_TYPES), rng, word)
            conv = [{**conv[0], "value": f"{prior}\n{conv[0]['value']}"}, *conv[1:]]
        out.append(conv)
    return out


class TextPretrain(MethodBase):
    """The method object the trainer runs (module docstring)."""

    name = "text_pretrain"

    def __init__(self, config: Any, workdir: str = "", tokenizer: Any = None):
        super().__init__(config, workdir)
        self.tok = tokenizer

    def prepare(self, inference: bool = False) -> None:
        from vau_jax.data.synthvad import ANOMALY_TYPES, SynthConfig
        from vau_jax.methods.pretrain.clip import synthvad_tokenizer

        c = self.config
        self.tok = self.tok or synthvad_tokenizer(c)
        self.llm_cfg = registry.get_config(
            c.model,
            vocab_size=self.tok.vocab_size,
            bos_token_id=self.tok.bos_id,
            eos_token_id=self.tok.eos_id,
            pad_token_id=self.tok.pad_id,
        )
        self.model = LlamaForCausalLM(self.llm_cfg)
        self.synth = SynthConfig(**dict(c.synthvad))
        self.class_names = tuple(ANOMALY_TYPES)
        self.prepared = "inference" if inference else "train"

    # The same text-only LLaMA as the text LLM's: its params and loss.
    abstract_params = LLMPretrain.abstract_params

    def init_params(self, rng: Any) -> Any:
        """Fresh params; with ``time_embedding="sinusoid"`` the time tokens' input rows start
        from their value (:func:`prior_text.sinusoid_time_rows`)."""
        params = LLMPretrain.init_params(self, rng)
        how = str(self.config.get("time_embedding", "random"))
        if how not in TIME_EMBEDDINGS:
            raise ValueError(f"time_embedding={how!r}: choose from {TIME_EMBEDDINGS}")
        if how == "sinusoid":
            params = sinusoid_time_rows(params, self.tok)
        return params

    def encode(self, conv: list, **kw: Any) -> dict[str, np.ndarray]:
        c = self.config
        return tokenize_chat(
            self.tok,
            conv,
            int(kw.pop("max_length", c.max_length)),
            str(c.chat_format),
            system=c.system,
            **kw,
        )

    def _source(self) -> list[dict[str, np.ndarray]]:
        c = self.config
        reps = reports(c.data_dir, self.synth, int(c.num_train_videos))
        kinds, p = mixed_kinds(c.mix)
        rng = np.random.default_rng(c.seed)
        letter_weight = float(c.get("mc_letter_weight", 1.0))
        out, skipped = [], 0
        for i in range(int(c.num_train_examples)):
            kind = kinds[int(rng.choice(len(kinds), p=p))]
            rep = reps[int(rng.integers(len(reps)))]
            conv, q = conversation(
                rep,
                kind,
                c.seed * 1_000_003 + i,
                self.class_names,
                time_noise=_noise(c),
                answer_style=mc_answer_style(c),
                types_word=prior_types_word(c),
            )
            try:
                ex = self.encode(conv, source=f"text example {i}")
            except TooLongError:  # a report longer than max_length (a video of many segments)
                skipped += 1
                continue
            row = {k: ex[k] for k in ("input_ids", "attention_mask", "loss_mask")}
            if letter_weight != 1.0:  # the letter, and where it stands, read off the answer
                row = letter_weighted_row(self.tok, row, conv, letter_weight)
                if q is not None and not np.any(row["loss_mask"] == letter_weight):
                    raise ValueError(f"text example {i}: no letter read off {conv[-1]['value']!r}")
            out.append(row)
        if skipped:
            logging.info(
                "text pretraining: %d of %d examples longer than max_length left out",
                skipped,
                int(c.num_train_examples),
            )
        length = int(c.get("pack_length", 0))
        if length:  # several conversations per row: ~2.5 per 432 tokens, not 1 per 288
            packed = pack_rows(out, length, seed=int(c.seed))
            logging.info("text pretraining: %s", packing_summary(out, packed))
            out = packed
        return out

    _loss = LLMPretrain._loss  # the next-token loss on the answers (packed rows too)

    def stages(self) -> list[Stage]:
        return single_stage("text_lm", self.config, self._loss, self._source)

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Generated-letter accuracy on held-out pretrain-split reports (the videos after the
        training ones; chance 0.25): ``text_mc_acc`` on report questions and, when ``mix``
        weights ``prior_mc``, ``text_prior_mc_acc`` on prior-only ones; each also on the
        questions about anomalous reports alone (``..._anomalous``), where the options'
        intervals, not "no anomaly", decide."""
        del workdir
        out = self.letter_accuracy(params, "mc")
        out = {
            "text_mc_acc": out["Total_Acc"],
            "text_mc_temporal_acc": out["Temporal_Acc"],
            "text_mc_acc_anomalous": out["Total_Acc_anomalous"],
            "text_mc_eval_questions": out["questions"],
        }
        if float(self.config.mix.get("prior_mc", 0.0)) > 0:
            prior = self.letter_accuracy(params, "prior_mc")
            out["text_prior_mc_acc"] = prior["Total_Acc"]
            out["text_prior_mc_acc_anomalous"] = prior["Total_Acc_anomalous"]
        if float(self.config.mix.get("lookup", 0.0)) > 0:
            out["text_lookup_acc"] = self.letter_accuracy(params, "lookup")["Total_Acc"]
        return out

    def letter_accuracy(
        self,
        params: Any,
        kind: str,
        first: int | None = None,
        count: int | None = None,
        batch_size: int = 64,
    ) -> dict[str, float]:
        """MC-QA accuracy of the generated answers to held-out reports' ``kind`` questions
        (``"mc"`` or ``"prior_mc"``).

        Args:
          params: the text LLM's parameters.
          kind: the question kind.
          first: the first pretrain-split video asked about (default: the one after the
            ``num_train_videos`` trained on); ``scripts/text_reading.py`` asks further ones.
          count: how many videos (default ``num_eval_videos``).
          batch_size: questions generated per call.

        Returns:
          ``Total_Acc``, ``Temporal_Acc``, ``Total_Acc_normal``, ``Total_Acc_anomalous``,
          ``No_Anomaly_Rate`` (:func:`vau_jax.eval.metrics.mcqa_by_truth`) and ``questions``
          (how many were asked: a report longer than ``max_length`` is not).
        """
        from vau_jax.eval.generate import generate
        from vau_jax.eval.metrics import mcqa_accuracy, mcqa_by_truth, parse_choice
        from vau_jax.eval.scoring import stack_rows

        c = self.config
        first = int(c.num_train_videos) if first is None else int(first)
        count = int(c.num_eval_videos) if count is None else int(count)
        if first < int(c.num_train_videos):
            raise ValueError(
                f"first={first}: the first {c.num_train_videos} reports are trained on"
            )
        held = reports(c.data_dir, self.synth, first + count)[first:]
        qs, rows = [], []
        for i, rep in enumerate(held, start=first - int(c.num_train_videos)):
            conv, q = conversation(
                rep,
                kind,
                10**9 + i,
                self.class_names,
                time_noise=_noise(c),
                answer_style=mc_answer_style(c),
                types_word=prior_types_word(c),
            )
            try:
                rows.append(self.encode(conv[:1], add_generation_prompt=True, left_pad=True))
            except TooLongError:  # longer than max_length: not asked
                continue
            qs.append(q)
        texts = []
        for s in range(0, len(rows), batch_size):
            b = stack_rows(rows[s : s + batch_size])
            toks, lengths = generate(
                self.model,
                params,
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                max_new_tokens=REASONED_ANSWER_TOKENS if letter_last(c) else 12,
                eos_id=self.tok.eos_id,
                pad_id=self.tok.pad_id,
            )
            toks, lengths = np.asarray(toks), np.asarray(lengths)
            skip = (self.tok.eos_id, self.tok.pad_id)
            texts += [
                self.tok.decode([int(t) for t in toks[r, : lengths[r]] if int(t) not in skip])
                for r in range(len(toks))
            ]
        chosen = [parse_choice(t, [o.text for o in q.options]) for t, q in zip(texts, qs)]
        correct = [q.answer_index for q in qs]
        intervals = [[o.interval for o in q.options] for q in qs]
        acc = mcqa_accuracy(chosen, correct, intervals)
        logging.info("text pretraining, held-out %s answers: %s", kind, texts[:3])
        return {**acc, **mcqa_by_truth(chosen, correct, intervals), "questions": float(len(qs))}


def checkpoint_dir(config: Any) -> str:
    """Where the converted text-pretrained LLM of a ``text_pretrain`` config lives (by hash)."""
    return pretrained_dir(config, "text_pretrain")


def ensure_text_llm(config: Any) -> str:
    """The converted checkpoint folder, training it first when missing (run in ``<dir>.run``)."""
    return ensure_pretrained(
        config,
        "text_pretrain",
        "text-pretrained tiny LLM",
        lambda: TextPretrain(config, checkpoint_dir(config) + ".run"),
    )
