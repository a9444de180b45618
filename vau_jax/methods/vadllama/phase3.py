"""VAD-LLaMA phase 3: instruction-tuning the adaptor; VADor, encoder and LLM frozen.

The model (:class:`VADLLaMAChat`, top-level parameters ``vador``, ``adaptor``, ``llm``):
the phase-2 VADor turns a video's clips into ``x_i`` (video Q-Former) and ``x̃_i`` (LTC);
the **adaptor** ``f`` (one Linear, ``2·D -> D_llm``) maps ``x̂_i = [x_i, x̃_i]`` to one LLM
input embedding per clip, spliced in order at the prompt's ``video_mask`` positions (the
timeline layout of :mod:`vau_jax.methods.vadllama.text`). Only the adaptor learns
(``freeze = ["^vador/", "^llm/"]``: zero updates, bit-identical); the image encoder is
frozen too (its tokens are cached features).

Tiny preset: the frozen LLM is the tiny LLaMA pretrained on text by
:mod:`vau_jax.methods.pretrain.llm` (built and cached when missing), standing in for the
paper's Vicuna.

Training data (SynthVAD *train* split, a separate trainer run in ``<workdir>/phase3``):

* **pseudo-instructions** from the phase-2 VADor's clip scores
  (:func:`vau_jax.data.instruct.pseudo_instruction`, ``threshold``): "Yes, there are
  anomalies from 3.0s to 5.0s." / "No, there is no anomaly in this video." — no ground
  truth is used (weak supervision, as in the paper);
* mixed with **normal-description** conversations of normal train videos (the stand-in for
  the paper's WebVid captions), ``description_fraction`` of the examples.

The loss is the token cross-entropy on the answer tokens only (``loss_mask``).

Evaluation (SynthVAD *test* split): the VAD-LLaMA question, greedy generation, parsing and
scoring as in :mod:`vau_jax.methods.vadllama.text` -> ``phase3_yes_no_accuracy``,
``phase3_temporal_iou`` (+ ``phase3_parsed``, ``phase3_recall_iou0.5``); the same metrics of
the trivial baseline that writes the pseudo-instruction of the phase-2 test scores directly
(``phase3_baseline_*``); and the agreement with that teacher: the fraction of test answers
equal to it (``phase3_pseudo_agreement``), with its yes/no
(``phase3_pseudo_yes_no_agreement``), and the interval IoU against it where it says yes
(``phase3_pseudo_temporal_iou``). Answers are written to ``<workdir>/phase3/answers.jsonl``.

    python -m vau_jax.main --config=configs/vadllama.py --config.phase3.enabled=True
"""

from __future__ import annotations

import dataclasses
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
from vau_jax.data.chat import TooLongError, tokenize_chat
from vau_jax.data.instruct import pseudo_instruction
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.methods.pretrain import llm as llm_pretrain
from vau_jax.methods.vadllama import text as vt
from vau_jax.models import layers
from vau_jax.models.heads.vador import VADor, VADorConfig
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM
from vau_jax.models.vlm import lm_loss
from vau_jax.train.trainer import Stage

Array = jax.Array
FREEZE = (r"^vador/", r"^llm/")
PSEUDO, DESCRIPTION = 0, 1  # example kinds


@dataclasses.dataclass(frozen=True)
class ChatConfig:
    """The phase-3 model: a VADor and a causal LLM joined by the adaptor."""

    vador: VADorConfig
    llm: LlamaConfig


class VADLLaMAChat(nn.Module):
    """VADor -> adaptor -> LLM (see the module docstring)."""

    config: ChatConfig

    def setup(self) -> None:
        self.vador = VADor(self.config.vador)
        self.adaptor = layers.dense(self.config.llm.hidden_size, (None, "embed"), name="adaptor")
        self.llm = LlamaForCausalLM(self.config.llm)

    def clip_embeds(self, tokens: Array, mask: Array) -> Array:
        """Clip tokens ``[B, Nc, F*M, Dv]`` + mask ``[B, Nc]`` -> ``f([x, x̃])`` ``[B, Nc, D_llm]``."""
        out = self.vador(tokens, mask, phase=2)
        x_hat = jnp.concatenate([out["x"], out["x_tilde"]], axis=-1)  # [B, Nc, 2D]
        return self.adaptor(jax.lax.stop_gradient(x_hat))

    def prefix_embeds(
        self, input_ids: Array, video_mask: Array, tokens: Array, mask: Array
    ) -> Array:
        """Text embeddings ``[B, L, D_llm]`` with clip ``k``'s embedding written at the
        ``k``-th ``video_mask [B, L]`` position of its row (``VideoLLM.embed``'s splice)."""
        text = self.llm.embed(input_ids)
        vis = self.clip_embeds(tokens, mask)
        slot = jnp.clip(jnp.cumsum(video_mask, axis=1) - 1, 0, vis.shape[1] - 1)  # [B, L]
        vis = jnp.take_along_axis(vis, slot[..., None], axis=1)  # [B, L, D]
        return jnp.where(video_mask[..., None], vis.astype(text.dtype), text)

    def __call__(
        self,
        input_ids: Array,  # [B, L]
        attention_mask: Array,  # [B, L]
        video_mask: Array,  # [B, L]
        tokens: Array,  # [B, Nc, F*M, Dv]
        mask: Array,  # [B, Nc]
    ) -> dict[str, Any]:
        """``{"logits": [B, L, V]}``."""
        x = self.prefix_embeds(input_ids, video_mask, tokens, mask)
        return self.llm(inputs_embeds=x, attention_mask=attention_mask)


class VADLLaMAPhase3:
    """Method object for the trainer: phase 3 on top of a trained phase-2 VADor.

    Args:
      config: the VAD-LLaMA config (``config.phase3`` holds this phase's knobs).
      vador_method: the prepared phases-1–2 method (``source``, ``records``, ``model``,
        ``vcfg``, ``spec``, ``dataset``).
      vador_params: its trained parameters (phase 2), kept frozen.
      llm: ``(module, params)`` of the frozen LLM; default: the text-pretrained tiny LLaMA
        of ``config.phase3.llm_pretrain`` (trained and cached when missing).
      tokenizer: default: the SynthVAD sentencepiece tokenizer.
    """

    name = "vadllama_phase3"

    def __init__(
        self,
        config: Any,
        vador_method: Any,
        vador_params: Any,
        *,
        llm: tuple[LlamaForCausalLM, Any] | None = None,
        tokenizer: Any = None,
    ):
        from vau_jax.convert.checkpoint import load_converted

        self.config, self.p3, self.vm = config, config.phase3, vador_method
        lp = self.p3.llm_pretrain
        if lp.frames_per_clip != vador_method.vcfg.frames_per_clip or lp.max_clips < (
            config.max_clips
        ):
            raise ValueError(
                "phase3.llm_pretrain must have frames_per_clip == frames_per_clip and "
                f"max_clips >= {config.max_clips}"
            )
        self.vador_params = jax.device_get(vador_params)
        self.tok = tokenizer or llm_pretrain.synthvad_tokenizer(lp)
        if llm is None:  # the text-pretrained tiny LLM (built and cached when missing)
            llm = load_converted(llm_pretrain.ensure_pretrained_llm(lp))
        from vau_jax.models.precision import llm_policy

        # host copies: never donated; the module under the config's precision policy
        self.llm, self.llm_params = (
            LlamaForCausalLM(llm_policy(config, llm[0].config)),
            (jax.device_get(llm[1])),
        )
        self._clips: dict[str, list[dict[str, np.ndarray]]] = {}
        self.model = VADLLaMAChat(ChatConfig(vador_method.vcfg, self.llm.config))
        self.clip_seconds = vador_method.frames_per_clip / float(vador_method.spec.fps)

    # -- params --------------------------------------------------------------------------

    def _dummy(self) -> tuple[Array, ...]:
        v = self.vm.vcfg
        tok = jnp.zeros((1, 2, v.frames_per_clip * v.tokens_per_frame, v.vision_width))
        ids = jnp.zeros((1, 4), jnp.int32)
        vmask = jnp.array([[False, True, True, False]])
        return ids, jnp.ones((1, 4), bool), vmask, tok, jnp.ones((1, 2), bool)

    def abstract_params(self) -> Any:
        args = self._dummy()
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), *args))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(self.model.init(rng, *self._dummy())["params"])

    def load_frozen(self, params: Any) -> Any:
        """``params`` with ``vador`` / ``llm`` replaced by the phase-2 / pretrained weights."""

        def put(new: Any, old: jax.Array) -> jax.Array:
            if np.shape(new) != old.shape:
                raise ValueError(f"frozen weight of shape {np.shape(new)} for {old.shape}")
            return jax.device_put(jnp.asarray(new, old.dtype), old.sharding)

        vador = jax.tree.map(put, dict(self.vador_params), dict(params["vador"]))
        llm = jax.tree.map(put, dict(self.llm_params), dict(params["llm"]))
        return {**params, "vador": vador, "llm": llm}

    # -- data ----------------------------------------------------------------------------

    def clips(self, split: str) -> list[dict[str, np.ndarray]]:
        """The VADor's per-video examples (``tokens [max_clips, F*M, Dv]``, ``mask``), cached."""
        if split not in self._clips:
            src = self.vm.source(split)
            self._clips[split] = [src[i] for i in range(len(src))]
        return self._clips[split]

    def scores(self, split: str, batch_size: int = 64) -> list[np.ndarray]:
        """Phase-2 clip scores ``[n_clips]`` per video, batched over padded videos (equal to
        ``vador_method.clip_scores``: the LTC is causal and masks the padding)."""
        clips = self.clips(split)
        apply = jax.jit(lambda p, t, m: self.vm.model.apply({"params": p}, t, m, phase=2)["scores"])
        out = []
        for s in range(0, len(clips), batch_size):
            rows = [clips[min(i, len(clips) - 1)] for i in range(s, s + batch_size)]
            sc = np.asarray(
                apply(
                    self.vador_params,
                    jnp.asarray(np.stack([r["tokens"] for r in rows]), jnp.float32),
                    jnp.asarray(np.stack([r["mask"] for r in rows])),
                )
            )
            out += [sc[i, : int(r["mask"].sum())] for i, r in enumerate(rows[: len(clips) - s])]
        return out

    def encode(self, conversation: list, num_clips: int, **kw: Any) -> dict[str, np.ndarray]:
        """A conversation on a video of ``num_clips`` clips -> token arrays (placeholders at
        the clip positions; the model splices the adaptor outputs there)."""
        lp = self.p3.llm_pretrain
        conv = vt.with_timeline(conversation, num_clips, self.clip_seconds)
        return tokenize_chat(
            self.tok,
            conv,
            lp.max_length,
            lp.chat_format,
            num_video_tokens=1,
            system=lp.system,
            **kw,
        )

    def train_examples(self, scores: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Pseudo-instructions of every train video (from its phase-2 ``scores``; those longer
        than ``max_length`` tokens are left out and counted in ``self.dropped``) mixed with
        description conversations of normal train videos."""
        p3 = self.p3
        clips = self.clips("train")
        out = []
        self.dropped = 0
        for i, (ex, s) in enumerate(zip(clips, scores)):
            conv = pseudo_instruction(s, self.clip_seconds, p3.threshold, seed=i)
            try:
                out.append(self._example(ex, self.encode(conv, len(s)), PSEUDO))
            except TooLongError:  # longer than max_length (many short intervals): left out
                self.dropped += 1
        if self.dropped:
            logging.warning("phase3: %d over-long pseudo-instructions left out", self.dropped)
        n = min(p3.num_description_videos, len(clips))
        normal = []
        captions = str(p3.get("captions", "synthvad"))  # where the caption data comes from
        if captions == "synthvad" and self.vm.dataset.name == "synthvad":  # its ground truth
            synth = synthvad.SynthConfig(**dict(self.config.synthvad))
            descs = llm_pretrain.video_descriptions(self.config.data_dir, "train", n, synth)
            normal = [d for d in descs if d["anomaly_type"] == synthvad.NORMAL]
        elif captions == "uca":  # the dataset's UCA captions of normal train videos
            from vau_jax.methods.vadllama.paper import caption_conversations

            question = f"{T.VIDEO_MARKER}\n{T.DESCRIBE_QUESTIONS[0]}"
            pairs = caption_conversations(self.vm.dataset.split("train"), question)
            normal = [{"index": i, "conversation": conv} for i, conv in pairs]
        k = round(len(out) * p3.description_fraction / (1.0 - p3.description_fraction))
        if normal and k:
            rng = np.random.default_rng(self.config.seed)
            for j in rng.integers(0, len(normal), k):
                d = normal[int(j)]
                ex = clips[d["index"]]
                enc = self.encode(d["conversation"], int(ex["mask"].sum()))
                out.append(self._example(ex, enc, DESCRIPTION))
        return out

    @staticmethod
    def _example(clips: dict, enc: dict, kind: int) -> dict[str, np.ndarray]:
        return {
            "tokens": clips["tokens"].astype(np.float16),  # cached features are float16
            "mask": clips["mask"],
            **{k: enc[k] for k in ("input_ids", "attention_mask", "loss_mask", "video_mask")},
            "kind": np.int32(kind),
        }

    def _loss(self, params: Any, batch: dict[str, Array], rng: Array):
        del rng
        out = self.model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["video_mask"],
            batch["tokens"].astype(jnp.float32),
            batch["mask"],
        )
        return lm_loss(out["logits"], batch["input_ids"], batch["loss_mask"])

    def stages(self) -> list[Stage]:
        p3 = self.p3
        cache: dict[str, Any] = {}

        def source() -> list[dict[str, np.ndarray]]:  # built when the stage starts
            if "rows" not in cache:
                cache["rows"] = self.train_examples(self.scores("train"))
                self._clips.pop("train", None)  # the float16 copies in the rows are kept
            return cache["rows"]

        pcfg = PipelineConfig(
            global_batch_size=p3.batch_size,
            seed=self.config.seed + 3,
            num_epochs=None,
            read_threads=1,
            prefetch=2,
        )
        opt = dict(p3.optimizer)
        opt["freeze"] = sorted(set(opt.get("freeze", ())) | set(FREEZE))
        return [
            Stage(
                "phase3",
                p3.steps,
                opt,
                self._loss,
                lambda: make_iterator(source(), pcfg),
                log_every=self.config.log_every,
                on_start=self.load_frozen,
            )
        ]

    # -- evaluation ----------------------------------------------------------------------

    def answer(self, params: Any, split: str = "test") -> list[str]:
        """Greedy answers to the VAD-LLaMA question, one per video of ``split``."""
        p3, lp = self.p3, self.p3.llm_pretrain
        question = T.VADLLAMA_QUESTIONS[p3.question_index]
        clips = self.clips(split)
        prefix = jax.jit(
            lambda p, ids, vm, tok, m: self.model.apply(
                {"params": p}, ids, vm, tok, m, method=VADLLaMAChat.prefix_embeds
            )
        )
        answers: list[str] = []
        bs = p3.eval_batch_size
        for s in range(0, len(clips), bs):
            rows = [clips[min(i, len(clips) - 1)] for i in range(s, s + bs)]  # pad last batch
            enc = [
                self.encode(
                    vt.question_conversation(question),
                    int(ex["mask"].sum()),
                    add_generation_prompt=True,
                    left_pad=True,
                )
                for ex in rows
            ]
            stack = {k: jnp.asarray(np.stack([e[k] for e in enc])) for k in enc[0]}
            embeds = prefix(
                params,
                stack["input_ids"],
                stack["video_mask"],
                jnp.asarray(np.stack([ex["tokens"] for ex in rows]), jnp.float32),
                jnp.asarray(np.stack([ex["mask"] for ex in rows])),
            )
            out = vt.generate_answers(
                self.llm, params["llm"], embeds, stack["attention_mask"], self.tok, lp.max_answer
            )
            answers += out[: len(clips) - s]
        return answers

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Phase-3 answers vs the ground truth, and the pseudo-instruction baseline."""
        recs = self.vm.records("test")
        fps = float(self.vm.spec.fps)
        gts = [[(a / fps, b / fps) for a, b in r.intervals] for r in recs]
        answers = self.answer(params, "test")
        scores = self.scores("test")
        pseudo = [
            pseudo_instruction(s, self.clip_seconds, self.p3.threshold, seed=0)[1]["value"]
            for s in scores
        ]
        metrics = vt.answer_metrics(answers, gts, prefix="phase3_")
        metrics.update(vt.answer_metrics(pseudo, gts, prefix="phase3_baseline_"))
        # How faithfully the LLM answers what the frozen VADor's scores say (its teacher):
        ans, ref = [vt.parse_answer(a) for a in answers], [vt.parse_answer(p) for p in pseudo]
        metrics["phase3_pseudo_agreement"] = float(
            np.mean([a == p for a, p in zip(answers, pseudo)])
        )
        metrics["phase3_pseudo_yes_no_agreement"] = float(
            np.mean([a[0] == r[0] for a, r in zip(ans, ref)])
        )
        ious = [vt.interval_set_iou(a[1], r[1]) for a, r in zip(ans, ref) if r[1]]
        metrics["phase3_pseudo_temporal_iou"] = float(np.mean(ious)) if ious else 0.0
        metrics["phase3_test_videos"] = float(len(recs))
        if jax.process_index() == 0:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "answers.jsonl"), "w") as f:
                for r, a, p, g in zip(recs, answers, pseudo, gts):
                    row = {"video_id": r.id, "answer": a, "pseudo": p, "gt": g, "type": r.label}
                    f.write(json.dumps(row) + "\n")
        logging.info("phase3 answers (first 3): %s", answers[:3])
        return metrics


def run_phase3(
    vador_method: Any, vador_params: Any, config: Any, workdir: str, mode: str
) -> dict[str, float]:
    """Phase 3 as its own trainer run in ``<workdir>/phase3`` (resumable); its metrics are
    also merged into ``<workdir>/metrics.json``. Returns them."""
    from vau_jax.methods.runner import run_method
    from vau_jax.train.writers import write_final_metrics

    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.resume, cfg.init_from = "", ""  # they name phases-1–2 checkpoints
        if cfg.phase3.get("mesh", None) is not None:  # its own (paper: batch 2, a 7B LLM)
            cfg.mesh = cfg.phase3.mesh
    extra = {}
    if cfg.get("preset", "tiny") == "paper":  # Vicuna-7B (paper_checkpoints.llm), frozen
        from vau_jax.methods.vadllama.paper import phase3_llm

        llm, tok = phase3_llm(cfg)
        extra = {"llm": llm, "tokenizer": tok}
    method = VADLLaMAPhase3(cfg, vador_method, vador_params, **extra)
    _, metrics = run_method(method, cfg, os.path.join(workdir, "phase3"), mode)
    metrics = {k: v for k, v in metrics.items()}
    if mode != "train" and jax.process_index() == 0:
        merged: dict[str, Any] = {}
        path = os.path.join(workdir, "metrics.json")
        if os.path.isfile(path):
            with open(path) as f:
                merged = json.load(f)
        merged.update({k: v for k, v in metrics.items() if k.startswith("phase3_")})
        merged["phase3_seconds"] = metrics.get("train_and_eval_seconds", 0.0)
        write_final_metrics(workdir, merged)
    return metrics
