"""Text-only pretraining of the tiny LLaMA that VAD-LLaMA phase 3 keeps frozen.

The paper freezes a Vicuna that already speaks; the tiny preset has no pretrained LLM, so
this run teaches the tiny LLaMA (the SynthVAD 512-piece tokenizer's vocabulary) the language
phase 3 relies on, from text alone (no video, no visual feature):

* **timelines** (``1 - description_fraction`` of the examples): a random clip timeline
  (4–16 clips, half of them without anomaly, else 1–3 anomalous runs) written as the
  phase-3 prompt (:mod:`vau_jax.methods.vadllama_text`), each clip slot holding a *word*
  (``clip_words[0]`` for a normal clip, ``clip_words[1]`` for an anomalous one), a
  VAD-LLaMA question, and the answer that ``pseudo_instruction`` writes for that timeline
  ("Yes, there are anomalies from 3.0s to 5.0s." / "No, there is no anomaly in this video.");
* **descriptions**: "Describe this video."-style conversations of normal SynthVAD *train*
  videos, every slot holding the normal-clip word. The answer is the activity description
  only ("Four people walk calmly along the paths ..."): the static scene description would
  double the sequence length (every 512-piece token costs on CPU).

The loss is the next-token cross-entropy on the answer tokens only. Evaluation generates
answers for held-out random timelines (``reading_*`` metrics: yes/no accuracy, interval IoU,
exact match): how well the frozen LLM reads a timeline before any visual feature is plugged
in. The result is cached as a converted checkpoint ``<data_dir>/llm_pretrain_<hash>``.

    python -m vau_jax.main --config=configs/llm_pretrain.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn

from vau_jax.data import synthvad
from vau_jax.data import templates as T
from vau_jax.data.chat import tokenize_chat
from vau_jax.data.instruct import (
    description_conversation,
    facts_from_synth,
    pseudo_instruction,
    scores_to_intervals,
)
from vau_jax.methods.base import MethodBase
from vau_jax.methods.runner import ensure_pretrained, pretrained_dir, single_stage
from vau_jax.methods.vadllama import text as vt
from vau_jax.models import registry
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vau_jax.models.vlm import lm_loss
from vau_jax.train.trainer import Stage


def llm_config(model: str, tok: Any, max_positions: int) -> LlamaConfig:
    """The named LLaMA preset resized to the tokenizer (vocabulary and special ids)."""
    return registry.get_config(
        model,
        vocab_size=tok.vocab_size,
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
        max_position_embeddings=max_positions,
    )


def clip_word_ids(tok: Any, words: tuple[str, ...]) -> np.ndarray:
    """int32 ``[2]``: the single-piece token ids of the normal / anomalous clip words."""
    ids = []
    for w in words:
        enc = [i for i in tok.encode(w) if tok.decode([i]).strip()]
        if len(enc) != 1:
            raise ValueError(f"clip word {w!r} is {len(enc)} tokens; choose a single-piece word")
        ids.append(enc[0])
    return np.asarray(ids, np.int32)


def random_timeline(rng: np.random.Generator, min_clips: int, max_clips: int) -> np.ndarray:
    """bool ``[n]`` clip states: half the timelines normal, else 1–3 anomalous runs."""
    n = int(rng.integers(min_clips, max_clips + 1))
    states = np.zeros(n, bool)
    if rng.random() < 0.5:
        return states
    for _ in range(int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))):
        length = int(rng.integers(1, max(n // 2, 1) + 1))
        start = int(rng.integers(0, n - length + 1))
        states[start : start + length] = True
    return states


def video_descriptions(
    data_dir: str, split: str, num_videos: int, synth_cfg: synthvad.SynthConfig
) -> list[dict[str, Any]]:
    """``[{"index", "n_frames", "fps", "anomaly_type", "conversation"}]`` per video (cached
    JSON): the activity-description conversation of every video of a SynthVAD split, read
    from its tfds ArrayRecord build (rendered once, shared)."""
    from vau_jax.data.datasets import synthvad_dataset
    from vau_jax.data.features import atomic_write
    from vau_jax.data.synthvad import from_record

    key = hashlib.sha1(
        json.dumps([split, num_videos, dataclasses.asdict(synth_cfg)], sort_keys=True).encode()
    ).hexdigest()[:12]
    path = os.path.join(data_dir, f"descriptions_{split}_{key}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    counts = {"train": 0, "test": 0, split: num_videos}
    videos = synthvad_dataset(data_dir, synth_cfg, counts["train"], counts["test"]).split(split)
    out = []
    for i, vid in enumerate(videos):
        v = from_record(vid.record())
        out.append(
            {
                "index": i,
                "n_frames": int(v.num_frames),
                "fps": float(v.fps),
                "anomaly_type": v.anomaly_type,
                "conversation": description_conversation(
                    dataclasses.replace(facts_from_synth(v), description=""), v.seed
                ),
            }
        )
    atomic_write(path, lambda f: json.dump(out, f), mode="w")
    return out


class LLMPretrain(MethodBase):
    """The method object the trainer runs (see ``vau_jax.methods.base``)."""

    name = "llm_pretrain"

    def __init__(self, config: Any, workdir: str = "", tokenizer: Any = None):
        super().__init__(config, workdir)
        self.tok = tokenizer
        self.synth = synthvad.SynthConfig(**dict(config.synthvad))
        self.clip_seconds = config.frames_per_clip / self.synth.fps

    def prepare(self, inference: bool = False) -> None:
        """The tokenizer (trained once, cached) and the model."""
        config = self.config
        if self.tok is None:
            self.tok = synthvad_tokenizer(config)
        self.llm_cfg = llm_config(config.model, self.tok, config.max_length + config.max_answer)
        self.model = LlamaForCausalLM(self.llm_cfg)
        self.words = clip_word_ids(self.tok, tuple(config.clip_words))
        self.prepared = "inference" if inference else "train"

    # -- params --------------------------------------------------------------------------

    def abstract_params(self) -> Any:
        ids = jnp.zeros((1, 8), jnp.int32)
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), ids))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(self.model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"])

    # -- data ----------------------------------------------------------------------------

    def encode(self, conversation: list, states: np.ndarray, **kw: Any) -> dict[str, np.ndarray]:
        """A conversation on a timeline of ``states`` -> token arrays with word-filled slots."""
        c = self.config
        conv = vt.with_timeline(conversation, len(states), self.clip_seconds)
        ex = tokenize_chat(
            self.tok,
            conv,
            kw.pop("max_length", c.max_length),
            c.chat_format,
            num_video_tokens=1,
            system=c.system,
            **kw,
        )
        ex["input_ids"] = vt.fill_slots(ex, self.words[states.astype(int)])
        return ex

    def timeline_example(self, seed: int) -> dict[str, np.ndarray]:
        states = random_timeline(
            np.random.default_rng(seed), self.config.min_clips, self.config.max_clips
        )
        conv = pseudo_instruction(states.astype(np.float32), self.clip_seconds, 0.5, seed)
        return self.encode(conv, states)

    def description_examples(self) -> list[dict[str, np.ndarray]]:
        c = self.config
        out = []
        for d in video_descriptions(c.data_dir, "train", c.num_description_videos, self.synth):
            if d["anomaly_type"] != synthvad.NORMAL:
                continue
            n = -(-d["n_frames"] // c.frames_per_clip)
            out.append(self.encode(d["conversation"], np.zeros(n, bool)))
        return out

    def _source(self) -> list[dict[str, np.ndarray]]:
        c = self.config
        desc = self.description_examples()
        n_timeline = c.num_train_examples
        n_desc = round(n_timeline * c.description_fraction / (1 - c.description_fraction))
        rng = np.random.default_rng(c.seed)
        examples = [self.timeline_example(c.seed * 1_000_003 + i) for i in range(n_timeline)]
        if desc and n_desc:
            examples += [desc[int(i)] for i in rng.integers(0, len(desc), n_desc)]
        keys = ("input_ids", "attention_mask", "loss_mask")
        return [{k: ex[k] for k in keys} for ex in examples]

    def _loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        """The next-token loss on the answers; packed rows (``segment_ids``,
        :mod:`vau_jax.data.packing`) attend within each conversation."""
        del rng
        logits = self.model.apply(
            {"params": params},
            batch["input_ids"],
            attention_mask=batch.get("attention_mask"),  # None in packed rows
            segment_ids=batch.get("segment_ids"),
        )["logits"]
        return lm_loss(logits, batch["input_ids"], batch["loss_mask"])

    def stages(self) -> list[Stage]:
        return single_stage("text_lm", self.config, self._loss, self._source)

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Reading accuracy on held-out random timelines (word-filled slots)."""
        del workdir
        c = self.config
        answers, targets, gts = [], [], []
        for s in range(0, c.num_eval_examples, 32):
            prompts = []
            for i in range(s, min(s + 32, c.num_eval_examples)):
                seed = 10**9 + i  # disjoint from the training seeds
                states = random_timeline(np.random.default_rng(seed), c.min_clips, c.max_clips)
                target = pseudo_instruction(states.astype(np.float32), self.clip_seconds, 0.5, 0)
                targets.append(target[1]["value"])
                gts.append(scores_to_intervals(states.astype(np.float32), self.clip_seconds))
                conv = vt.question_conversation(T.VADLLAMA_QUESTIONS[i % 4])
                prompts.append(
                    self.encode(
                        conv,
                        states,
                        add_generation_prompt=True,
                        left_pad=True,
                        max_length=c.max_length,
                    )
                )
            ids = jnp.asarray(np.stack([p["input_ids"] for p in prompts]))
            mask = jnp.asarray(np.stack([p["attention_mask"] for p in prompts]))
            embeds = self.model.apply({"params": params}, ids, method=LlamaForCausalLM.embed)
            answers += vt.generate_answers(self.model, params, embeds, mask, self.tok, c.max_answer)
        metrics = vt.answer_metrics(answers, gts, prefix="reading_")
        metrics["reading_exact_match"] = float(np.mean([a == t for a, t in zip(answers, targets)]))
        logging.info("llm_pretrain examples: %s", list(zip(answers[:3], targets[:3])))
        return metrics


# -- the pretrained checkpoint phase 3 starts from ---------------------------------------------


def checkpoint_dir(config: Any) -> str:
    """Where the converted tiny-LLM checkpoint of an llm_pretrain config lives (by hash)."""
    return pretrained_dir(config, "llm_pretrain")


def synthvad_tokenizer(config: Any) -> Any:
    """The tiny presets' sentencepiece tokenizer over the SynthVAD text corpus (cached)."""
    from vau_jax.data.corpus import config_tokenizer

    return config_tokenizer(config)


def ensure_pretrained_llm(config: Any) -> str:
    """Returns the converted checkpoint folder, training it first when it is missing (the
    resumable run lives in ``<dir>.run``)."""
    return ensure_pretrained(
        config,
        "llm_pretrain",
        "tiny LLM",
        lambda: LLMPretrain(config, checkpoint_dir(config) + ".run"),
    )
