"""Contrastive pretraining of the tiny CLIP on SynthVAD frame/caption pairs.

No pretrained CLIP exists offline, so the tiny presets of every method start from this
checkpoint (``init_from``). Pairs are frames of SynthVAD's *pretrain* split
(``config.split``) with their per-frame captions ("a person running on the path at the
left", "people walking on the paths", ...): a split of its own, with seeds disjoint from
the train and test videos, as a real CLIP pretrains on the web and never on a benchmark's
training videos. The captions describe the anomaly frame by frame, so pretraining on the
*train* videos would hand their frame labels to every weakly supervised method standing on
this frozen encoder (DESIGN §5); ``split="train"`` is refused for that reason. Many
frames share a caption, so the InfoNCE targets are soft: each image's target is spread
uniformly over the texts in the batch with the same caption (and vice versa). With
``config.input = "background"`` the tower sees every frame minus a causal per-video
background estimate instead of its pixels (``synth_features.background_subtracted``).

Evaluation (SynthVAD *test* split, disjoint seeds): zero-shot classification of frames into
the 7 anomaly types + "normal activity" by cosine similarity with prompt embeddings
(averaged over the spatial words), reported as ``zeroshot_acc`` (all sampled test frames,
8-way, chance 1/8) and ``zeroshot_acc_anomalous`` (anomalous frames only, 7-way, chance 1/7).

    python -m vau_jax.main --config=configs/clip_pretrain.py
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
from vau_jax.data.synthvad import text as synth_text
from vau_jax.methods.base import MethodBase
from vau_jax.methods.runner import ensure_pretrained, pretrained_dir, single_stage
from vau_jax.models import registry
from vau_jax.models.clip_text import CLIPConfig, CLIPModel
from vau_jax.train.trainer import Stage

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
ZEROSHOT_CLASSES = (*synthvad.ANOMALY_TYPES, "normal")


def normalize_pixels(frames: jax.Array) -> jax.Array:
    """uint8 or [0,1] float frames ``[..., H, W, 3]`` -> CLIP-normalised float32."""
    x = frames.astype(jnp.float32)
    if frames.dtype == jnp.uint8:
        x = x / 255.0
    return (x - CLIP_MEAN) / CLIP_STD


def _cache_key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def frame_caption_pairs(
    data_dir: str,
    split: str,
    num_videos: int,
    synth_cfg: synthvad.SynthConfig,
    frames_per_video: int,
    input_mode: str = "rgb",
) -> dict[str, np.ndarray]:
    """Samples ``frames_per_video`` frames per video with captions (evenly spaced; for
    anomalous videos half of them evenly spaced inside the anomaly); cached.

    The videos are read from SynthVAD's tfds ArrayRecord build (rendered once, shared with
    every method). ``input_mode`` is what the encoder sees of the frames
    (:class:`vau_jax.data.frames.FrameSpec` ``input``): the pixels or, with
    ``"background"``, the causal background-subtracted frames.

    Returns ``frames`` uint8 [M, H, W, 3], ``caption`` str [M], ``klass`` int [M] (index into
    :data:`ZEROSHOT_CLASSES`; the type for anomalous frames, "normal" otherwise).
    """
    from vau_jax.data.datasets import synthvad_dataset
    from vau_jax.data.features import atomic_write
    from vau_jax.data.frames import background_subtracted

    mode = [] if input_mode == "rgb" else [input_mode]
    key = _cache_key(split, num_videos, dataclasses.asdict(synth_cfg), frames_per_video, *mode)
    path = os.path.join(data_dir, f"clip_pairs_{split}_{key}.npz")
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    counts = {"train": 0, "test": 0, "pretrain": 0}
    if split not in counts:
        raise ValueError(f"frame_caption_pairs: split {split!r} not in {sorted(counts)}")
    counts[split] = num_videos
    videos = synthvad_dataset(
        data_dir, synth_cfg, counts["train"], counts["test"], num_pretrain=counts["pretrain"]
    ).split(split)
    frames, captions, klass = [], [], []
    for v in videos:
        rec = v.record()
        labels = np.asarray(rec["labels"])
        seen = rec["frames"] if input_mode == "rgb" else background_subtracted(rec["frames"])
        n = len(labels)
        idx = np.linspace(0, n - 1, frames_per_video).round().astype(int)
        anomalous_frames = np.flatnonzero(labels)
        if len(anomalous_frames):
            # Half of the samples from inside the anomaly: anomalies are short and small, and
            # evenly spaced frames would mostly show normal activity.
            half = frames_per_video // 2
            inside = anomalous_frames[
                np.linspace(0, len(anomalous_frames) - 1, half).round().astype(int)
            ]
            idx = np.concatenate([idx[::2][: frames_per_video - half], inside])
        kind = v.info["anomaly_type"]
        for t in idx:
            frames.append(seen[t])
            cap = rec["frame_captions"][t]
            captions.append(cap.decode() if isinstance(cap, bytes) else str(cap))
            anomalous = bool(labels[t]) and kind != synthvad.NORMAL
            klass.append(ZEROSHOT_CLASSES.index(kind if anomalous else "normal"))
    out = {
        "frames": np.stack(frames),
        "caption": np.array(captions),
        "klass": np.array(klass, np.int32),
    }
    atomic_write(path, lambda f: np.savez(f, **out))
    return out


def class_prompts(klass: str) -> list[str]:
    """Prompts of a zero-shot class: the frame caption at every spatial word."""
    if klass == "normal":
        return [synth_text.FRAME_CAPTIONS["many"], synth_text.FRAME_CAPTIONS["one"]]
    return [synth_text.FRAME_CAPTIONS[klass].format(where=w) for w in synthvad.SPATIAL_WORDS]


def soft_clip_loss(logits_per_image: jax.Array, caption_ids: jax.Array) -> jax.Array:
    """Symmetric InfoNCE with targets spread over same-caption pairs. ``logits`` [B, B]."""
    same = (caption_ids[:, None] == caption_ids[None, :]).astype(jnp.float32)
    targets = same / same.sum(-1, keepdims=True)
    li = -jnp.sum(targets * jax.nn.log_softmax(logits_per_image, -1), -1)
    lt = -jnp.sum(targets * jax.nn.log_softmax(logits_per_image.T, -1), -1)
    return 0.5 * (li.mean() + lt.mean())


class ClipPretrain(MethodBase):
    """The method object the trainer runs (see ``vau_jax.methods.base``)."""

    name = "clip_pretrain"

    def __init__(self, config: Any, workdir: str = "", tokenizer: Any = None):
        super().__init__(config, workdir)
        self.tokenizer = tokenizer
        self.synth = synthvad.SynthConfig(**dict(config.synthvad))
        self.data_dir = config.data_dir
        self.input_mode = input_mode(config)
        self.split = pretrain_split(config)  # validated before anything is built
        self._pairs = None
        self.model = None

    def prepare(self, inference: bool = False) -> None:
        """The tokenizer (trained once, cached) and the model; training pairs are read
        lazily by :meth:`stages`."""
        if self.tokenizer is None:
            self.tokenizer = synthvad_tokenizer(self.config)
        tok, config = self.tokenizer, self.config
        base: CLIPConfig = registry.get_config(config.model)
        text = dataclasses.replace(
            base.text_config,
            vocab_size=tok.vocab_size,
            max_position_embeddings=config.max_text_length,
            eos_token_id=tok.eos_id,
            bos_token_id=tok.bos_id if tok.bos_id is not None else tok.eos_id,
            pad_token_id=tok.pad_id,
        )
        self.clip_config = dataclasses.replace(base, text_config=text)
        self.model = CLIPModel(self.clip_config)
        self.prepared = "inference" if inference else "train"

    # -- params --------------------------------------------------------------------------

    def _dummy(self) -> tuple[jax.Array, jax.Array]:
        h, w = self.synth.height, self.synth.width
        return jnp.zeros((1, self.config.max_text_length), jnp.int32), jnp.zeros((1, h, w, 3))

    def abstract_params(self) -> Any:
        ids, px = self._dummy()
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), ids, px))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        ids, px = self._dummy()
        return nn.unbox(self.model.init(rng, ids, px)["params"])

    # -- data ----------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts -> int32 ``[N, L]``: ids + eos, padded with pad id, cut to ``L``."""
        length = self.config.max_text_length
        out = np.full((len(texts), length), self.tokenizer.pad_id, np.int32)
        for i, t in enumerate(texts):
            ids = list(self.tokenizer.encode(t))[: length - 1] + [self.tokenizer.eos_id]
            out[i, : len(ids)] = ids
        return out

    def pairs(self) -> dict[str, np.ndarray]:
        """The training pairs: ``num_train_videos`` videos of :func:`pretrain_split`."""
        if self._pairs is None:
            c = self.config
            self._pairs = frame_caption_pairs(
                self.data_dir,
                self.split,
                c.num_train_videos,
                self.synth,
                c.frames_per_video,
                self.input_mode,
            )
        return self._pairs

    def _source(self) -> list[dict[str, np.ndarray]]:
        p = self.pairs()
        captions = sorted(set(p["caption"].tolist()))
        cid = np.array([captions.index(c) for c in p["caption"]], np.int32)
        ids = self.encode(list(p["caption"]))
        return [
            {"frame": p["frames"][i], "input_ids": ids[i], "caption_id": cid[i]}
            for i in range(len(cid))
        ]

    def _loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        ids = batch["input_ids"]
        out = self.model.apply(
            {"params": params},
            ids,
            normalize_pixels(batch["frame"]),
            attention_mask=ids != self.tokenizer.pad_id,
        )
        loss = soft_clip_loss(out["logits_per_image"], batch["caption_id"])
        top1 = jnp.argmax(out["logits_per_image"], -1)
        acc = jnp.mean(batch["caption_id"][top1] == batch["caption_id"])
        return loss, {"batch_retrieval_acc": acc}

    def stages(self) -> list[Stage]:
        return single_stage("contrastive", self.config, self._loss, self._source)

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Zero-shot accuracy on SynthVAD *test* frames (never seen in training)."""
        c = self.config
        test = frame_caption_pairs(
            self.data_dir,
            "test",
            c.num_test_videos,
            self.synth,
            c.frames_per_video,
            self.input_mode,
        )
        apply = jax.jit(
            lambda p, px: self.model.apply({"params": p}, px, method=CLIPModel.get_image_features)
        )
        text_apply = jax.jit(
            lambda p, ids: self.model.apply(
                {"params": p}, ids, ids != self.tokenizer.pad_id, method=CLIPModel.get_text_features
            )
        )
        class_emb = []
        for k in ZEROSHOT_CLASSES:
            t = np.asarray(
                text_apply(params, jnp.asarray(self.encode(class_prompts(k))))["pooler_output"]
            )
            t = t / np.linalg.norm(t, axis=-1, keepdims=True)
            m = t.mean(0)
            class_emb.append(m / np.linalg.norm(m))
        class_emb = np.stack(class_emb)  # [C, P]
        preds = []
        for s in range(0, len(test["klass"]), 256):
            px = normalize_pixels(jnp.asarray(test["frames"][s : s + 256]))
            e = np.asarray(apply(params, px)["pooler_output"])
            e = e / np.linalg.norm(e, axis=-1, keepdims=True)
            preds.append(np.argmax(e @ class_emb.T, -1))
        pred = np.concatenate(preds)
        truth = test["klass"]
        anomalous = truth != ZEROSHOT_CLASSES.index("normal")
        # 7-way on anomalous frames: argmax over the anomaly classes only.
        metrics = {
            "zeroshot_acc": float(np.mean(pred == truth)),
            "zeroshot_chance": 1.0 / len(ZEROSHOT_CLASSES),
            "zeroshot_test_frames": float(len(truth)),
        }
        if anomalous.any():
            sims = []
            for s in range(0, int(anomalous.sum()), 256):
                px = normalize_pixels(jnp.asarray(test["frames"][anomalous][s : s + 256]))
                e = np.asarray(apply(params, px)["pooler_output"])
                sims.append(e @ class_emb[:-1].T)
            pred_a = np.argmax(np.concatenate(sims), -1)
            metrics["zeroshot_acc_anomalous"] = float(np.mean(pred_a == truth[anomalous]))
            metrics["zeroshot_chance_anomalous"] = 1.0 / (len(ZEROSHOT_CLASSES) - 1)
        logging.info("clip_pretrain zero-shot: %s", metrics)
        return metrics


# -- the pretrained checkpoint other methods start from ----------------------------------------


def pretrain_split(config: Any) -> str:
    """The SynthVAD split the tiny CLIP pretrains on (``config.split``, default
    ``"pretrain"``). ``"train"`` is refused (the weakly supervised methods' training videos:
    their per-frame captions are frame labels) and so is ``"test"`` (the zero-shot evaluation
    reads it)."""
    split = str(config.get("split", "pretrain"))
    if split in ("train", "test"):
        raise ValueError(
            f"clip_pretrain.split={split!r}: the tiny CLIP pretrains on SynthVAD's own "
            "'pretrain' split, never on the train/test videos of the methods built on it "
            "(per-frame captions would leak frame labels)"
        )
    return split


def input_mode(config: Any) -> str:
    """What the encoder of a clip_pretrain config sees: ``"rgb"`` pixels (the default) or
    ``"background"``-subtracted frames (``config.input``)."""
    return str(config.get("input", "rgb"))


def checkpoint_dir(config: Any) -> str:
    """Where the converted tiny-CLIP checkpoint of a clip_pretrain config lives (by hash)."""
    return pretrained_dir(config, "clip_pretrain")


def ensure_pretrained_clip(config: Any) -> str:
    """Returns the converted checkpoint folder, training it first when it is missing.

    The training run itself lives in ``<dir>.run`` (resumable); the final weights are saved
    with :func:`vau_jax.convert.checkpoint.save_converted`, so they load with
    ``load_converted`` like any converted HF checkpoint.
    """
    return ensure_pretrained(
        config,
        "clip_pretrain",
        "tiny CLIP",
        lambda: ClipPretrain(config, path_of_run(config)),
    )


def synthvad_tokenizer(config: Any) -> Any:
    """The tiny presets' sentencepiece tokenizer over the SynthVAD text corpus (cached)."""
    from vau_jax.data.corpus import config_tokenizer

    return config_tokenizer(config)


def frozen_clip(
    clip_config: Any,
    outputs: tuple[str, ...] = ("cls",),
    patch_pool: int = 0,
    batch_size: int = 128,
) -> Any:
    """The pretrained tiny CLIP of ``clip_config`` (a ``configs/clip_pretrain.py`` config;
    trained and cached when missing) as a frozen feature-store encoder
    (:class:`vau_jax.encoders.FrozenEncoder`) with the given outputs."""
    from vau_jax import encoders

    path = ensure_pretrained_clip(clip_config)
    return encoders.from_checkpoint(
        path, outputs=tuple(outputs), patch_pool=int(patch_pool), batch_size=batch_size
    )


def path_of_run(config: Any) -> str:
    """The resumable run folder of the pretraining that :func:`ensure_pretrained_clip` does."""
    return checkpoint_dir(config) + ".run"
