"""VA-GPT end to end: TETG, then stage 1 (full tokens) and stage 2 (SETS tokens).

    python -m vau_jax.main --config=configs/vagpt.py

``prepare()``:

1. the tokenizer and LLM (tiny: the SynthVAD sentencepiece model, LLaMA from scratch;
   ``llm=smollm2``: the GGUF weights; paper: the converted Vicuna and its tokenizer);
2. the frozen encoders' features of the dataset's train and test videos, from the feature
   store (:mod:`vau_jax.methods.vagpt.data`);
3. TETG (:mod:`vau_jax.methods.vagpt.tetg`), trained alone in ``<workdir>/tetg`` and frozen;
   its per-frame probabilities of every video, whose longest confident run becomes the
   prior sentence of the prompt.

Then the video LLM (:class:`vau_jax.models.vlm.VideoLLM`, LLaMA-VID context + content tokens,
text-conditioned Q-Former) is instruction-tuned: stage 1 on all patch tokens, stage 2
(≤150 steps) on the SETS-selected ones (:mod:`vau_jax.models.heads.sets`), selected under
jit with a static count. Evaluation (:mod:`vau_jax.methods.vagpt.evaluation`) on the test
split: Total / Temporal Acc, TETG frame AUC, after stage 1 and after stage 2.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.data.datasets import load_dataset
from vau_jax.data.features import FeatureStore
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.eval.scoring import Scorer
from vau_jax.methods.base import MethodBase, put_parts
from vau_jax.methods.pretrain.video_llm import build_vlm
from vau_jax.methods.pretrain.vlm_parts import smollm2_gguf_path
from vau_jax.methods.vagpt import data as D
from vau_jax.methods.vagpt.tetg import TETGRun, tetg_prompt, tetg_types_word
from vau_jax.models.heads import sets as S
from vau_jax.models.vlm import VideoLLM, lm_loss, shared_prefix_logprob
from vau_jax.train.trainer import Stage


def sets_keep(visual: jax.Array, dino: jax.Array, keep: float) -> jax.Array:
    """SETS under jit: ``visual [B, S, N, D]`` -> ``[B, S, round(keep*N), D]``, the patches
    kept by DINOv2 distance ``dino [B, S, N, Dd]`` (identity at ``keep`` = 1)."""
    if keep >= 1.0:
        return visual
    return S.sets_select(dino, visual, keep)[0]


def prompt_embeds(model: VideoLLM, params: Any, b: dict[str, jax.Array], keep: float) -> jax.Array:
    """LLM input embeddings ``[B, L, D]`` of a prompt batch (``input_ids`` / ``video_mask
    [B, L]``, ``visual`` / ``dino``, ``query_ids`` / ``query_mask``), the video tokens
    SETS-selected at ``keep``: what scoring and generation feed the LLM."""
    visual = sets_keep(b["visual"], b.get("dino"), keep)
    return model.apply(
        {"params": params},
        b["input_ids"],
        b["video_mask"],
        visual,
        b["query_ids"],
        b["query_mask"],
        method=VideoLLM.prefix_embeds,
    )


def instruction_loss(model: VideoLLM, keep: float):
    """Stage 1-2's loss ``(params, batch, rng) -> (loss, aux)``: next-token cross-entropy on
    the answer tokens of an instruction batch (``input_ids`` / ``attention_mask`` /
    ``video_mask`` / ``loss_mask [B, L]``, ``visual [B, S, N, Dv]``, ``dino [B, S, N, Dd]``
    (only read when ``keep`` < 1), ``query_ids`` / ``query_mask [B, Lq]``), the video tokens
    SETS-selected at ``keep``."""

    def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        visual = sets_keep(batch["visual"], batch.get("dino"), keep)
        logits = model.apply(
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


class VAGPT(MethodBase):
    """VA-GPT's two instruction-tuning stages (see the module docstring)."""

    name = "vagpt"

    def __init__(self, config: Any, workdir: str):
        super().__init__(config, workdir)
        self.dataset = None
        self.feats: dict[str, D.SplitFeatures] = {}
        self.tetg_probs: dict[str, list[np.ndarray]] = {}
        self.tetg_metrics: dict[str, float] = {}
        self.last_eval: dict[str, Any] = {}
        self._scorers: dict[float, Scorer] = {}
        self.trace_wrap = lambda f: f  # tests: chex.assert_max_traces

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, inference: bool = False) -> None:
        """Tokenizer, LLM, encoders, features (training only) and TETG (module docstring)."""
        c = self.config
        if self.prepared == "train" or (inference and self.prepared):
            return
        if c.get("features", ""):
            from vau_jax.cli import ConfigError

            raise ConfigError(
                f"--config.features={c.features}: VA-GPT needs frames (its CLIP and DINOv2 "
                "see every sampled frame); pre-extracted snippet features are for VAD-LLaMA"
            )
        if not inference:  # the dataset index first: bad input fails before anything is built
            self.dataset = load_dataset(c)
            D.check_object_mc(c, self.dataset)
        self._setup_llm()
        if c.preset == "paper":  # LLaMA-VID's EVA tokens (raw patches), DINOv2
            from vau_jax.methods.vagpt.paper import paper_encoders

            self.encoders = paper_encoders(c)
        else:
            self.encoders = D.make_encoders(c, inference)
        self.specs = D.frame_specs(c)
        vis = self.encoders["visual"]
        self.vision_width = vis.width
        grid = vis.config.image_size // vis.config.patch_size
        self.num_patches = grid * grid
        self.dino_width = self.encoders["dino"].width
        if c.llm == "paper":  # the converted LLaMA-VID: its layout and sizes
            from vau_jax.methods.vagpt.paper import paper_vlm_config

            self.model = VideoLLM(paper_vlm_config(c, self.vision_width))
            self.llm_cfg = self.model.config.llm  # under the precision policy (scan layout)
        else:
            vocab = self.tok.vocab_size if self.query_tok is self.tok else None
            self.model = build_vlm(c, self.llm_cfg, self.vision_width, vocab)
            self.llm_cfg = self.model.config.llm  # under the precision policy (scan layout)
        self.vcfg = self.model.config
        self.num_video_tokens = 2 * int(c.frames_per_video)
        self.class_names = tuple(c.get("class_names", ()) or ())
        self.keep = {"stage1": 1.0, "stage2": float(c.sets_keep_ratio) if c.use_sets else 1.0}
        self.tetg = TETGRun(c, self.encoders["cls"].width)
        classes_path = os.path.join(self.workdir, "classes.json")
        if inference:
            self.tetg_params = self._restore_tetg()
            if not self.class_names and os.path.isfile(classes_path):
                with open(classes_path, encoding="utf-8") as fh:
                    self.class_names = tuple(json.load(fh))
        else:
            self.class_names = self.class_names or self.dataset.class_names
            from vau_jax.data.features import atomic_write

            names = list(self.class_names)  # the templates' class list, for prediction
            atomic_write(classes_path, lambda fh: json.dump(names, fh), mode="w")
            from vau_jax.methods.base import standardise
            from vau_jax.methods.vagpt.evaluation import cross_dataset

            self.cross = cross_dataset(c)
            for split in ("train", "test"):
                self.feats[split] = self._features(split)
            if self.dataset.videos.get("validation"):  # SynthVAD's, for choices (evaluation)
                self.feats["validation"] = self._features("validation")
            if self.cross is not None:
                self.feats["cross"] = self._features("test", self.cross, "cross")
            self.tetg_params = self._train_tetg()
            for split in self.feats:
                cls = [self.feats[split].cls[i]["cls"] for i in range(len(self.feats[split]))]
                self.tetg_probs[split] = self.tetg.probs(
                    self.tetg_params, [standardise(z) for z in cls]
                )
            self.base_params = None
            if c.llm == "tiny" and c.base_llm.enabled:
                from vau_jax.methods.pretrain.video_llm import ensure_base_llm

                self.base_params = ensure_base_llm(c)
        self.prepared = "inference" if inference else "train"

    def _setup_llm(self) -> None:
        c = self.config
        self.llm_params = None
        self.query_tok = None
        if c.llm == "tiny":
            from vau_jax.methods.pretrain.video_llm import tiny_llm

            self.tok, self.llm_cfg = tiny_llm(c)
        elif c.llm == "smollm2":
            from vau_jax.convert import load_gguf

            module, params, self.tok = load_gguf(smollm2_gguf_path())
            self.llm_cfg, self.llm_params = module.config, params
        elif c.llm == "paper":
            from vau_jax.methods.vagpt.paper import load_paper_llm

            self.llm_cfg, self.tok, self.query_tok = load_paper_llm(c)
        else:
            raise ValueError(f"config.llm={c.llm!r}: use 'tiny' or 'smollm2' (or the paper preset)")
        self.query_tok = self.query_tok or self.tok

    def _features(self, split: str, dataset: Any = None, tag: str = "") -> D.SplitFeatures:
        dataset = dataset or self.dataset
        videos = dataset.split(split)
        if not videos:
            raise ValueError(f"dataset {dataset.name!r}: the {split} split is empty")
        root = os.path.join(self.config.data_dir, "features")
        sets = {}
        for name in ("cls", "visual", "dino"):
            store = FeatureStore(
                root,
                self.encoders[name],
                self.specs[name],
                dtype=str(self.config.feature_dtype),
                name=f"{dataset.name}-vagpt-{name}",
            )
            sets[name] = store.ensure(videos, desc=f"VA-GPT {tag or split} {name}")
        return D.SplitFeatures(**sets)

    def _frame_labels(self, split: str) -> list[np.ndarray]:
        """Per video, uint8 labels of its encoded frames: TETG's targets (train) and its AUC's
        truth (test). Weakly labelled videos (UCF-Crime train) take the UCA caption times."""
        out = []
        videos = self.dataset.split(split)
        fs = self.feats[split].cls
        for v, iv, i in zip(videos, D.anomaly_intervals(videos), range(len(fs))):
            rec = fs[i]
            if v.has_frame_truth:
                out.append(v.frame_labels(rec["indices"], rec["timestamps"]))
            else:  # weakly labelled (UCF-Crime train): the UCA caption times
                out.append(D.interval_labels(rec["timestamps"], iv))
        return out

    def _train_tetg(self) -> Any:
        from vau_jax.methods.base import standardise
        from vau_jax.methods.runner import run_method
        from vau_jax.methods.vagpt.tetg import FrameSource

        fs = self.feats["test"].cls
        test = [
            (standardise(fs[i]["cls"]), lab) for i, lab in enumerate(self._frame_labels("test"))
        ]
        train = FrameSource(self.feats["train"].cls, self._frame_labels("train"))
        run = TETGRun(self.config, self.encoders["cls"].width, train, test)
        params, metrics = run_method(
            run, self.config, os.path.join(self.workdir, "tetg"), "train_and_eval"
        )
        self.tetg_metrics = metrics
        return jax.device_get(params)

    def _restore_tetg(self) -> Any:
        from vau_jax.train.trainer import Trainer

        folder = os.path.join(self.workdir, "tetg")
        trainer = Trainer(self.tetg, self.config, folder)
        try:
            if trainer.ckpt.latest_step() is None:
                raise FileNotFoundError(f"{folder}/checkpoints: no TETG checkpoint")
            return jax.device_get(trainer.restore_params())
        finally:
            trainer.close()

    # -- params ----------------------------------------------------------------------------

    def _dummy(self) -> tuple:
        c = self.config
        ids = jnp.zeros((1, self.num_video_tokens + 4), jnp.int32)
        video = jnp.arange(ids.shape[1])[None] < self.num_video_tokens
        visual = jnp.zeros((1, int(c.frames_per_video), self.num_patches, self.vision_width))
        q = jnp.zeros((1, int(c.max_query_length)), jnp.int32)
        return ids, jnp.ones(ids.shape, bool), video, visual, q

    def abstract_params(self) -> Any:
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), *self._dummy()))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(self.model.init(rng, *self._dummy())["params"])

    def load_pretrained(self, params: Any) -> Any:
        """``params`` with the pretrained parts put in (the tiny presets' base video LLM, as
        VA-GPT starts from LLaMA-VID; SmolLM2's LLM; in the paper preset every part of the
        converted LLaMA-VID), on the params' own shardings."""
        parts = {}
        if getattr(self, "base_params", None) is not None:
            parts.update(self.base_params)
        if self.llm_params is not None:
            parts["llm"] = self.llm_params
        if self.config.llm == "paper":
            from vau_jax.methods.vagpt.paper import paper_parts

            parts.update(paper_parts(self.config, params))
        return put_parts(params, parts)

    # -- data ------------------------------------------------------------------------------

    def tetg_sentence(self, split: str, i: int) -> tuple[str | None, tuple[float, float] | None]:
        if not self.config.use_tetg:
            return None, None
        return tetg_prompt(
            self.tetg_probs[split][i],
            float(self.specs["cls"].fps),
            float(self.config.tetg.threshold),
            self.class_names,
            float(self.config.tetg.get("smooth_s", 0.0)),
            tetg_types_word(self.config),
        )

    def train_examples(self) -> list[dict[str, np.ndarray]]:
        """Stage 1-2 instruction rows from the train videos' caption clips
        (:func:`vau_jax.methods.vagpt.data.instruction_rows`): never a multiple-choice
        question about anomalies (object questions only, ``train_data.object_mc``)."""
        self._need()
        return D.instruction_rows(self)

    def select(self, visual: jax.Array, dino: jax.Array, keep: float) -> jax.Array:
        """SETS under jit: ``[B, S, N, D]`` -> ``[B, S, round(keep*N), D]`` (identity at 1)."""
        return sets_keep(visual, dino, keep)

    def _loss(self, keep: float):
        return instruction_loss(self.model, keep)

    def stages(self) -> list[Stage]:
        c = self.config
        cache: dict[str, Any] = {}

        def examples() -> list[dict[str, np.ndarray]]:  # built once, when a stage starts
            if "rows" not in cache:
                cache["rows"] = self.train_examples()
            return cache["rows"]

        def data(seed: int, keep: float):
            pcfg = PipelineConfig(int(c.batch_size), seed=seed, num_epochs=None, read_threads=1)

            def make():  # when the stage starts (the training features exist by then)
                feats = self.feats["train"]
                attach = D.AttachVisual(feats, str(c.compute_dtype), dino=keep < 1.0)
                return make_iterator(examples(), pcfg, transforms=[attach])

            return make

        freeze = [] if c.train_llm else [r"^llm/"]

        def opt(stage: Any) -> dict:
            o = dict(stage.optimizer)
            o["freeze"] = list(o.get("freeze", ())) + freeze
            return o

        def stage1_eval(params: Any) -> Any:
            path = os.path.join(self.workdir, "metrics_stage1.json")
            if not os.path.isfile(path) and jax.process_index() == 0:
                from vau_jax.data.features import atomic_write
                from vau_jax.methods.vagpt.evaluation import evaluate_all

                gen = bool(self.config.get("eval_generate", True))
                m = evaluate_all(self, params, self.keep["stage1"], generate=gen)
                atomic_write(path, lambda fh: json.dump(m, fh), mode="w")
            return params

        return [
            Stage(
                "stage1",
                int(c.stage1.steps),
                opt(c.stage1),
                self._loss(self.keep["stage1"]),
                data(c.seed, self.keep["stage1"]),
                grad_accum_steps=int(c.stage1.get("grad_accum_steps", 1)),
                accum_dtype=c.stage1.get("accum_dtype", None) or None,
                log_every=int(c.log_every),
                on_start=self.load_pretrained,
            ),
            Stage(
                "stage2",
                int(c.stage2.steps),
                opt(c.stage2),
                self._loss(self.keep["stage2"]),
                data(c.seed + 1, self.keep["stage2"]),
                grad_accum_steps=int(c.stage2.get("grad_accum_steps", 1)),
                accum_dtype=c.stage2.get("accum_dtype", None) or None,
                log_every=int(c.log_every),
                on_start=stage1_eval,
            ),
        ]

    # -- scoring ---------------------------------------------------------------------------

    def scorer(self, keep: float) -> Scorer:
        """The jitted option-likelihood and prefix functions at SETS ratio ``keep`` (built
        once per ratio and reused, so evaluations never recompile)."""
        if keep not in self._scorers:
            model = self.model

            def option_logprob(params: Any, b: dict[str, jax.Array]) -> jax.Array:
                visual = self.select(b["visual"], b["dino"], keep)
                return shared_prefix_logprob(
                    model,
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

            def prefix_embeds(params: Any, b: dict[str, jax.Array]) -> jax.Array:
                return prompt_embeds(model, params, b, keep)

            self._scorers[keep] = Scorer(option_logprob, prefix_embeds, self.trace_wrap)
        return self._scorers[keep]

    # -- evaluation, prediction, report ----------------------------------------------------

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        from vau_jax.methods.vagpt.evaluation import evaluate

        return evaluate(self, params, workdir)

    def predict(
        self, params: Any, frames: np.ndarray, fps: float, state: Any = None
    ) -> tuple[dict[str, Any], Any]:
        from vau_jax.methods.vagpt.predict import predict

        return predict(self, params, frames, fps, state)

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str:
        from vau_jax.methods.vagpt.report import write_vagpt_report

        return write_vagpt_report(self, params, metrics, workdir)
