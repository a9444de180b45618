"""VAD-LLaMA phases 1–2: the VADor (video Q-Former + AP) and its Long-Term Context.

Tiny preset (SynthVAD): the frozen, contrastively pretrained tiny CLIP encodes every frame
after causal background subtraction (it was pretrained on such frames, see
``synth_features.background_subtracted``) into the class token + ``pool×pool`` pooled
patches, cached once per split (optionally each token's change since the previous frame is
appended as a motion cue); 8-frame clips (1 s at 8 fps) go through a video Q-Former; phase 1
trains Q-Former + AP with MIL BCE on the max clip score per video (the tiny video Q-Former
has no pretrained weights, so unlike the paper's frozen VE it is trained here, then frozen);
phase 2 copies the AP into ``ap_base`` (frozen; its scores choose the LTC lists) and
co-trains AP + LTC. Evaluation: frame-level AUC_O / AUC_A on the *test* split (disjoint
seeds), each clip score repeated over its 8 frames.

    python -m vau_jax.main --config=configs/vadllama.py
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.data import synthvad
from vau_jax.data.formats.record import VideoRecord
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.eval.metrics import frame_auc
from vau_jax.methods import clip_pretrain
from vau_jax.methods.runner import run_method
from vau_jax.models import registry
from vau_jax.models.heads.ltc import LTCConfig, init_state
from vau_jax.models.heads.vador import VADor, VADorConfig, mil_loss
from vau_jax.train.trainer import Stage


def clips_from_frames(
    tokens: np.ndarray, n_frames: int, frames_per_clip: int, max_clips: int
) -> tuple[np.ndarray, np.ndarray]:
    """Frame tokens ``[T, M, D]`` -> clip tokens ``[max_clips, F*M, D]`` + mask ``[max_clips]``.

    ``ceil(n_frames / F)`` clips; the last one is zero-padded; clips past the video are masked.
    """
    t, m, d = tokens.shape[0], tokens.shape[1], tokens.shape[2]
    nc = -(-n_frames // frames_per_clip)
    if nc > max_clips:
        raise ValueError(f"video has {nc} clips > max_clips={max_clips}; raise config.max_clips")
    buf = np.zeros((max_clips * frames_per_clip, m, d), np.float32)
    buf[:n_frames] = tokens[:n_frames]
    mask = np.arange(max_clips) < nc
    del t
    return buf.reshape(max_clips, frames_per_clip * m, d), mask


def with_motion_tokens(tokens: np.ndarray, n_frames: int) -> np.ndarray:
    """``[T, M, D]`` -> ``[T, 2M, D]``: each frame's tokens and their change since the
    previous frame (zero for the first), a causal motion cue for running / falling /
    fighting that a single frame cannot show."""
    prev = np.concatenate([tokens[:1], tokens[:-1]], 0)
    diff = tokens - prev
    diff[n_frames:] = 0.0
    return np.concatenate([tokens, diff], 1)


class VADLLaMA:
    """Method object for the trainer: VADor phases 1 and 2 on SynthVAD."""

    name = "vadllama"

    def __init__(self, config: Any):
        self.config = config
        c = config
        self.synth = synthvad.SynthConfig(**dict(c.synthvad))
        self.encoder = clip_pretrain.load_frozen_clip(c)
        qcfg = dataclasses.replace(
            registry.get_config(c.video_qformer),
            encoder_hidden_size=self.encoder.width,
            text_input=False,
            hf_model_type="blip_2_qformer",
            hidden_dropout_prob=0.0,
        )
        ltc = LTCConfig(
            dim=qcfg.hidden_size,
            k=c.ltc.k,
            use_normal=c.ltc.use_normal,
            use_abnormal=c.ltc.use_abnormal,
            use_history=c.ltc.use_history,
            retrieval=c.ltc.retrieval,
        )
        self.vcfg = VADorConfig(
            qformer=qcfg,
            ltc=ltc,
            frames_per_clip=c.frames_per_clip,
            tokens_per_frame=(1 + c.pool * c.pool) * (2 if c.motion_tokens else 1),
            vision_width=self.encoder.width,
            ap_hidden=c.ap_hidden,
        )
        self.model = VADor(self.vcfg)
        self._feats: dict[str, dict[str, np.ndarray]] = {}

    # -- data ----------------------------------------------------------------------------

    def features(self, split: str) -> dict[str, np.ndarray]:
        if split not in self._feats:
            n = self.config.num_train_videos if split == "train" else self.config.num_test_videos
            self._feats[split] = self.encoder.split_features(split, n, self.synth, self.config.pool)
        return self._feats[split]

    def examples(self, split: str) -> list[dict[str, np.ndarray]]:
        f = self.features(split)
        out = []
        for i in range(len(f["n_frames"])):
            frames = f["tokens"][i].astype(np.float32)  # [T, M, D]
            if self.config.motion_tokens:
                frames = with_motion_tokens(frames, int(f["n_frames"][i]))
            tok, mask = clips_from_frames(
                frames,
                int(f["n_frames"][i]),
                self.vcfg.frames_per_clip,
                self.config.max_clips,
            )
            out.append(
                {
                    "tokens": tok,
                    "mask": mask,
                    "label": np.int32(f["anomaly_type"][i] != synthvad.NORMAL),
                }
            )
        return out

    # -- params --------------------------------------------------------------------------

    def _dummy(self) -> tuple[jax.Array, jax.Array]:
        v = self.vcfg
        return jnp.zeros((1, 2, v.frames_per_clip * v.tokens_per_frame, v.vision_width)), jnp.ones(
            (1, 2), bool
        )

    def abstract_params(self) -> Any:
        tok, mask = self._dummy()
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), tok, mask))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        tok, mask = self._dummy()
        return nn.unbox(self.model.init(rng, tok, mask)["params"])

    # -- stages --------------------------------------------------------------------------

    def _loss(self, phase: int):
        extras = bool(self.config.extra_losses)

        def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
            del rng
            out = self.model.apply({"params": params}, batch["tokens"], batch["mask"], phase=phase)
            return mil_loss(out["scores"], batch["mask"], batch["label"], extras=extras)

        return loss_fn

    def stages(self) -> list[Stage]:
        c = self.config
        train = self.examples("train")

        def data(seed: int):
            pcfg = PipelineConfig(
                global_batch_size=c.batch_size,
                seed=seed,
                num_epochs=None,
                read_threads=1,
                prefetch=2,
            )
            return lambda: make_iterator(train, pcfg)

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

    # -- evaluation ----------------------------------------------------------------------

    def clip_scores(
        self, params: Any, split: str = "test", phase: int = 2, chunk: int = 0
    ) -> list[np.ndarray]:
        """Per-video clip scores. ``chunk > 0`` streams ``chunk`` clips at a time carrying the
        LTC lists (memory independent of video length); the result is the same."""
        f = self.features(split)
        apply = jax.jit(
            lambda p, tok, mask, st: self.model.apply(
                {"params": p}, tok, mask, phase=phase, state=st
            )
        )
        out = []
        for ex, n in zip(self.examples(split), f["n_frames"]):
            nc = -(-int(n) // self.vcfg.frames_per_clip)
            tok, mask = ex["tokens"][None, :nc], ex["mask"][None, :nc]
            if chunk <= 0:
                out.append(np.asarray(apply(params, tok, mask, None)["scores"][0]))
                continue
            state = init_state(1, max(self.vcfg.ltc.k, 1), self.vcfg.qformer.hidden_size)
            parts = []
            for s in range(0, nc, chunk):
                r = apply(params, tok[:, s : s + chunk], mask[:, s : s + chunk], state)
                parts.append(np.asarray(r["scores"][0]))
                state = r["state"]
            out.append(np.concatenate(parts))
        return out

    def records(self, split: str = "test") -> list[VideoRecord]:
        f = self.features(split)
        recs = []
        for i in range(len(f["n_frames"])):
            n = int(f["n_frames"][i])
            labels = f["labels"][i, :n]
            runs = synthvad.types.label_runs(labels)
            recs.append(
                VideoRecord(
                    id=str(f["video_id"][i]),
                    n_frames=n,
                    fps=float(f["fps"][i]),
                    label=str(f["anomaly_type"][i]),
                    intervals=[(int(a), int(b)) for a, b in runs],
                )
            )
        return recs

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        recs = self.records("test")
        metrics: dict[str, float] = {}
        # The phase-1 detector survives as ap_base (frozen in phase 2, same frozen Q-Former).
        phase1 = {**params, "ap": params["ap_base"]}
        for p, phase, suffix in ((params, 2, ""), (phase1, 1, "_phase1")):
            scores = self.clip_scores(p, "test", phase=phase)
            res = frame_auc(
                recs, {r.id: s for r, s in zip(recs, scores)}, snippet=self.vcfg.frames_per_clip
            )
            metrics.update({f"{k}{suffix}": v for k, v in res.items()})
        metrics["test_videos"] = float(len(recs))
        return metrics


def paper_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size parameter trees of the paper preset under ``jax.eval_shape`` (no memory):
    the EVA-ViT-g image encoder, the image Q-Former and the VADor (video Q-Former on
    1408-wide EVA tokens, AP, LTC). Leaves keep their logical axis names."""
    qcfg = dataclasses.replace(
        registry.get_config(config.video_qformer),
        encoder_hidden_size=registry.get_config(config.image_qformer).hidden_size,
        text_input=False,
        hf_model_type="blip_2_qformer",
    )
    ltc = LTCConfig(dim=qcfg.hidden_size, k=config.ltc.k)
    vcfg = VADorConfig(
        qformer=qcfg,
        ltc=ltc,
        frames_per_clip=config.frames_per_clip,
        tokens_per_frame=registry.get_config(config.image_qformer).num_query_tokens,
        vision_width=qcfg.encoder_hidden_size,
        ap_hidden=config.ap_hidden,
    )
    tok = jnp.zeros((1, 2, vcfg.frames_per_clip * vcfg.tokens_per_frame, vcfg.vision_width))
    vador = jax.eval_shape(lambda: VADor(vcfg).init(jax.random.key(0), tok, jnp.ones((1, 2), bool)))
    return {
        "vision": registry.abstract_params(config.vision_encoder),
        "image_qformer": registry.abstract_params(config.image_qformer),
        "vador": vador["params"],
    }


def run(config: Any, workdir: str, mode: str) -> int:
    """Entry point for ``python -m vau_jax.main --config=configs/vadllama.py``."""
    if config.preset == "paper":
        from vau_jax.methods.paper import explain_missing_weights

        return explain_missing_weights(config)
    method = VADLLaMA(config)
    params, _ = run_method(method, config, workdir, mode)
    if "phase3" in config and config.phase3.enabled:
        from vau_jax.methods.vadllama_phase3 import run_phase3

        run_phase3(method, params, config, workdir, mode)
    return 0
