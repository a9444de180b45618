"""VAD-LLaMA phases 1–2: the VADor (video Q-Former + AP) and its Long-Term Context.

Any dataset of :mod:`vau_jax.data.datasets` (``config.dataset``): the frozen encoder's
frame tokens come from the feature store (tiny: the contrastively pretrained tiny CLIP, on
causally background-subtracted frames, class token + ``pool × pool`` pooled patches; paper:
EVA-ViT-g + the image Q-Former's 32 queries), or pre-extracted snippet features
(``config.features``); ``F``-frame clips go through the video Q-Former
(:mod:`vau_jax.methods.vadllama.data`). Phase 1 trains Q-Former + AP with the MIL objective
``config.mil_loss_phase1`` (the max-score BCE, §4.2's baseline), phase 2 with
``config.mil_loss`` (+ the max-margin term), on video-level labels only (weak supervision;
the tiny video Q-Former has no pretrained weights, so unlike the paper's frozen VE it is
trained here, then frozen); phase 2 copies the AP into ``ap_base`` (frozen; its scores
choose the LTC lists) and co-trains AP + LTC.
Evaluation: the dataset's protocol (:data:`vau_jax.data.datasets.METRICS`) on the test split,
each clip score repeated over its frames.

    python -m vau_jax.main --config=configs/vadllama.py
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.data.datasets import frame_records, load_dataset
from vau_jax.data.features import FeatureStore
from vau_jax.data.frames import FrameSpec
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.eval.metrics import frame_metrics
from vau_jax.methods.base import MethodBase
from vau_jax.methods.vadllama import data as D
from vau_jax.models import registry
from vau_jax.models.heads.ltc import LTCConfig, init_state
from vau_jax.models.heads.vador import VADor, VADorConfig, check_mil_objective, mil_loss
from vau_jax.train.trainer import Stage


def frame_spec(config: Any) -> FrameSpec:
    """The frames the VE sees: ``config.fps`` (default: SynthVAD's rate), ``frame_size``,
    the tiny CLIP's input mode (``rgb`` for converted checkpoints)."""
    fps = config.get("fps", None) or float(config.synthvad.fps)
    mode = "rgb" if config.preset == "paper" else str(config.clip_pretrain.get("input", "rgb"))
    return FrameSpec(fps=float(fps), size=int(config.frame_size), input=mode)


def make_encoder(config: Any, inference: bool = False) -> Any:
    """The frozen VE: the tiny CLIP (pretrained when missing, unless ``inference``) or, in
    the paper preset, the converted EVA-ViT-g + image Q-Former."""
    if config.preset == "paper":
        from vau_jax.methods.vadllama.paper import paper_encoder

        return paper_encoder(config)
    from vau_jax.methods.pretrain import clip

    if inference:
        path = clip.checkpoint_dir(config.clip_pretrain)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: the run's frozen tiny CLIP is missing")
    return clip.frozen_clip(
        config.clip_pretrain, ("cls", "patches"), int(config.pool), batch_size=128
    )


def vador_config(
    config: Any, qformer: Any, width: int, per_frame: int, frames_per_clip: int
) -> VADorConfig:
    """The VADor of ``config``: the video Q-Former ``qformer`` (no text input, no dropout)
    reading ``width``-wide tokens, ``per_frame`` tokens per frame (twice that with motion
    tokens), the LTC options and the AP width."""
    qcfg = dataclasses.replace(
        qformer,
        encoder_hidden_size=int(width),
        text_input=False,
        hf_model_type="blip_2_qformer",
        hidden_dropout_prob=0.0,
    )
    ltc = LTCConfig(
        dim=qcfg.hidden_size,
        k=config.ltc.k,
        use_normal=config.ltc.use_normal,
        use_abnormal=config.ltc.use_abnormal,
        use_history=config.ltc.use_history,
        retrieval=config.ltc.retrieval,
    )
    return VADorConfig(
        qformer=qcfg,
        ltc=ltc,
        frames_per_clip=int(frames_per_clip),
        tokens_per_frame=int(per_frame) * (2 if config.get("motion_tokens", False) else 1),
        vision_width=int(width),
        ap_hidden=config.ap_hidden,
    )


def vador_loss(model: VADor, objective: str, phase: int) -> Any:
    """The trainer's ``(params, batch, rng) -> (loss, aux)`` of a VADor phase: the MIL
    ``objective`` on the video-level ``label`` of ``batch`` (``tokens [B, C, F*M, D]``,
    ``mask [B, C]``)."""
    objective = check_mil_objective(objective)

    def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        out = model.apply({"params": params}, batch["tokens"], batch["mask"], phase=phase)
        return mil_loss(out["scores"], batch["mask"], batch["label"], objective=objective)

    return loss_fn


class VADLLaMA(MethodBase):
    """VADor phases 1 and 2 (see the module docstring)."""

    name = "vadllama"

    def __init__(self, config: Any, workdir: str):
        super().__init__(config, workdir)
        self.dataset = None
        self.feats: dict[str, Any] = {}

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, inference: bool = False) -> None:
        """The frozen VE and the model config; for training also the dataset index and the
        train/test features in the store (encoded once, cached)."""
        c = self.config
        if self.prepared == "train" or (inference and self.prepared):
            return
        if not inference:  # the dataset index first: bad input fails before anything is built
            self.dataset = D.feature_dataset(c) if c.get("features", "") else load_dataset(c)
        self.spec = frame_spec(c)
        if c.get("features", ""):
            if not int(c.get("feature_width", 0)):
                raise ValueError("--config.features needs --config.feature_width (e.g. 2048)")
            self.encoder, width, per_frame = None, int(c.feature_width), 1
            self.frames_per_clip = 1
        else:
            self.encoder = make_encoder(c, inference)
            width, per_frame = self.encoder.width, self.encoder.tokens_per_frame
            self.frames_per_clip = int(c.frames_per_clip)
        base = registry.get_config(c.video_qformer)
        if c.preset == "paper":  # sizes of the converted video Q-Former
            from vau_jax.methods.vadllama.paper import video_qformer_config

            base = video_qformer_config(c)
        self.vcfg = vador_config(c, base, width, per_frame, self.frames_per_clip)
        self.model = VADor(self.vcfg)
        if not inference:
            for split in ("train", "test"):
                self.feats[split] = self._features(split)
        self.prepared = "inference" if inference else "train"

    def _features(self, split: str) -> Any:
        """Per-video frame tokens of a split: a FeatureSet (store) or snippet features."""
        videos = self.dataset.split(split)
        if not videos:
            raise ValueError(f"dataset {self.dataset.name!r}: the {split} split is empty")
        c = self.config
        if c.get("features", ""):
            return D.SnippetFeatures(
                D.snippet_feature_records(c, self.dataset, split),
                int(c.feature_crop),
                int(c.feature_width),
            )
        store = FeatureStore(
            os.path.join(c.data_dir, "features"),
            self.encoder,
            self.spec,
            dtype=str(c.feature_dtype),
            name=f"{self.dataset.name}-vadllama",
        )
        return store.ensure(videos, desc=f"VAD-LLaMA {split} features")

    def source(self, split: str) -> D.ClipSource:
        """The split's examples (video-level labels only) as a grain source."""
        self._need()
        labels = [int(v.is_anomalous) for v in self.dataset.split(split)]
        return D.ClipSource(
            self.feats[split],
            labels,
            self.frames_per_clip,
            int(self.config.max_clips),
            bool(self.config.motion_tokens),
        )

    # -- params ----------------------------------------------------------------------------

    def _dummy(self) -> tuple[jax.Array, jax.Array]:
        v = self.vcfg
        tok = jnp.zeros((1, 2, v.frames_per_clip * v.tokens_per_frame, v.vision_width))
        return tok, jnp.ones((1, 2), bool)

    def abstract_params(self) -> Any:
        tok, mask = self._dummy()
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), tok, mask))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        tok, mask = self._dummy()
        return nn.unbox(self.model.init(rng, tok, mask)["params"])

    def load_pretrained(self, params: Any) -> Any:
        """Phase 1's starting point: in the paper preset the VADor's video Q-Former and frame
        positions come from the converted Video-LLaMA checkpoint
        (``paper_checkpoints.video_qformer``)."""
        if self.config.preset != "paper":
            return params
        from vau_jax.methods.vadllama.paper import load_video_encoder

        return load_video_encoder(self.config, params)

    # -- stages ----------------------------------------------------------------------------

    def _loss(self, phase: int):
        objective = str(self.config.mil_loss)  # phase 1: config.mil_loss_phase1 when set
        if phase == 1 and self.config.get("mil_loss_phase1"):
            objective = str(self.config.mil_loss_phase1)
        return vador_loss(self.model, objective, phase)

    def stages(self) -> list[Stage]:
        c = self.config

        def data(seed: int):  # built when a stage starts (stages() itself stays cheap)
            pcfg = PipelineConfig(
                global_batch_size=c.batch_size,
                seed=seed,
                num_epochs=None,
                read_threads=1,
                prefetch=2,
            )
            return lambda: make_iterator(self.source("train"), pcfg)

        def copy_ap(params: Any) -> Any:
            return {**params, "ap_base": jax.tree.map(jnp.copy, params["ap"])}

        def optimizer(phase: Any) -> dict:
            opt = dict(phase.optimizer)
            if not self.vcfg.ltc.enabled:  # no LTC parameters exist to freeze
                opt["freeze"] = [f for f in opt.get("freeze", ()) if not f.startswith("^ltc")]
            return opt

        p1, p2 = c.phase1, c.phase2
        return [
            Stage(
                "phase1",
                p1.steps,
                optimizer(p1),
                self._loss(1),
                data(c.seed),
                log_every=c.log_every,
                on_start=self.load_pretrained,
            ),
            Stage(
                "phase2",
                p2.steps,
                optimizer(p2),
                self._loss(2),
                data(c.seed + 1),
                log_every=c.log_every,
                on_start=copy_ap,
            ),
        ]

    # -- scoring ---------------------------------------------------------------------------

    def scorer(self, phase: int = 2):
        """Jitted ``(params, tokens [1, C, F*M, D], mask [1, C], state) -> {"scores", "state"}``
        for chunks of ``C = max_clips`` clips (one compiled shape for every video), built once
        per phase and kept: a new ``jax.jit`` per call would compile again on every evaluation."""
        cache = self.__dict__.setdefault("_scorers", {})
        key = (phase, id(self.model))  # a re-prepared method gets new scorers
        if key not in cache:
            model = self.model
            cache[key] = jax.jit(
                lambda p, tok, mask, st: model.apply(
                    {"params": p}, tok, mask, phase=phase, state=st
                )
            )
        return cache[key]

    def new_state(self) -> Any:
        """An empty LTC state for one stream."""
        return init_state(1, max(self.vcfg.ltc.k, 1), self.vcfg.qformer.hidden_size)

    def score_clips(
        self, params: Any, clips: np.ndarray, state: Any = None, phase: int = 2, fn: Any = None
    ) -> tuple[np.ndarray, Any]:
        """Clip scores ``[nc]`` of clip tokens ``[nc, F*M, D]``, streamed ``max_clips`` at a
        time carrying the LTC lists (the same numbers as one pass over the whole video)."""
        fn = fn or self.scorer(phase)
        state = self.new_state() if state is None else state
        chunk = int(self.config.max_clips)
        out = []
        for s in range(0, len(clips), chunk):
            part = clips[s : s + chunk]
            tok, mask = D.pad_clips(part, chunk)
            r = fn(params, jnp.asarray(tok[None]), jnp.asarray(mask[None]), state)
            out.append(np.asarray(r["scores"])[0, : len(part)])  # host slice: no compile per length
            state = r["state"]
        return np.concatenate(out) if out else np.zeros((0,), np.float32), state

    def clip_scores(self, params: Any, split: str = "test", phase: int = 2) -> list[np.ndarray]:
        """Per-video clip scores of a split."""
        src, fn = self.source(split), self.scorer(phase)
        return [
            self.score_clips(
                params, D.to_clips(src.tokens(i), self.frames_per_clip), None, phase, fn
            )[0]
            for i in range(len(src))
        ]

    def frame_scores(self, params: Any, split: str = "test", phase: int = 2) -> list[np.ndarray]:
        """Per-video scores of every encoded frame (clip score repeated over its frames)."""
        feats = self.feats[split]
        snippets = isinstance(feats, D.SnippetFeatures)
        repeat = D.SNIPPET_FRAMES if snippets else self.frames_per_clip
        out = []
        for i, s in enumerate(self.clip_scores(params, split, phase)):
            n = len(s) * repeat if snippets else self._n_frames(feats, i)
            out.append(np.repeat(s, repeat)[:n])
        return out

    @staticmethod
    def _n_frames(feats: Any, i: int) -> int:
        rec = feats[i]
        return len(rec) if isinstance(rec, np.ndarray) else len(rec["timestamps"])

    def records(self, split: str = "test") -> list[Any]:
        """Ground truth at the encoded frames (snippet features: 16 native frames each)."""
        videos, feats = self.dataset.split(split), self.feats[split]
        if isinstance(feats, D.SnippetFeatures):
            return D.snippet_records(videos, feats)
        return frame_records(videos, [feats[i] for i in range(len(videos))])

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        recs = self.records("test")
        metric = self.dataset.metric
        metrics: dict[str, float] = {}
        # The phase-1 detector survives as ap_base (frozen in phase 2, same frozen Q-Former).
        phase1 = {**params, "ap": params["ap_base"]}
        for p, phase, suffix in ((params, 2, ""), (phase1, 1, "_phase1")):
            scores = self.frame_scores(p, "test", phase)
            res = frame_metrics(metric, recs, {r.id: s for r, s in zip(recs, scores)})
            metrics.update({f"{k}{suffix}": v for k, v in res.items()})
        metrics["test_videos"] = float(len(recs))
        return metrics

    # -- prediction, report, phase 3 -------------------------------------------------------

    def predict(
        self, params: Any, frames: np.ndarray, fps: float, state: Any = None
    ) -> tuple[dict[str, Any], Any]:
        from vau_jax.methods.vadllama.predict import predict

        return predict(self, params, frames, fps, state)

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str | None:
        from vau_jax.methods.vadllama.report import write_vadllama_report

        return write_vadllama_report(self, params, metrics, workdir)

    def finish(self, params: Any, metrics: dict[str, float], mode: str) -> dict[str, float]:
        c = self.config
        if "phase3" in c and c.phase3.enabled:
            from vau_jax.methods.vadllama.phase3 import run_phase3

            return run_phase3(self, params, c, self.workdir, mode)
        return {}
