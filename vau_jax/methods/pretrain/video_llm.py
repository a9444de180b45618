"""The base video LLM: a LLaMA-VID-style model pretrained on captions only (tiny presets).

VA-GPT is built on LLaMA-VID, a video LLM that already describes videos before VA-GPT's
stages teach it about anomalies; T-VAU keeps such an LVLM frozen. No such checkpoint exists
for the tiny presets, so this run builds one, in two cached steps:

1. the tiny LLaMA learns language from text alone (:mod:`vau_jax.methods.pretrain.text_llm`);
   with ``llm="smollm2"`` the real SmolLM2-135M-Instruct is the LLM instead, and stays frozen
   (it is instruction-tuned already; only the Q-Former and projectors learn in step 2);
2. :class:`VideoPretrain` trains the video LLM (:class:`vau_jax.models.vlm.VideoLLM`: the
   text-conditioned Q-Former, the context / content projectors and that LLM) to caption
   videos of SynthVAD's **pretrain** split — "Describe this video." and "What happens from
   s to e?" answered with the videos' descriptions and caption segments, and (``base_llm.
   object_qa``) generic questions about the objects (which, is there a X, where, how it
   moves: :mod:`vau_jax.data.object_qa`) and (``base_llm.object_mc``) the same asked as
   four-option multiple choice answered with a letter, as LLaVA's A-OKVQA rows in LLaMA-VID's
   instruction data: general video-QA skills, no anomaly question, no question about times.

The result (the whole ``VideoLLM`` params tree) is saved with orbax under
``<data_dir>/base_video_llm_<hash>/params`` and loaded by :func:`ensure_base_llm`. What
every user of such a video LLM shares (encoders, frame specs, per-split features, the
Q-Former/LLM assembly, row building) is :mod:`vau_jax.methods.pretrain.vlm_parts`,
re-exported here.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn

from vau_jax import timing
from vau_jax.methods.base import MethodBase
from vau_jax.methods.pretrain.vlm_parts import (  # noqa: F401 - shared parts, re-exported
    AttachVisual,
    SplitFeatures,
    attach_batch,
    build_vlm,
    chat_row,
    conversation_row,
    dummy_inputs,
    encode_query,
    frame_specs,
    frozen_llm,
    make_encoders,
    replay_rows,
    tiny_llm,
)
from vau_jax.models.vlm import lm_loss
from vau_jax.train.trainer import Stage

# ------------------------------------------------------------------------ base pretraining

BASE_KEYS = (
    "clip_pretrain",
    "synthvad",
    "fps",
    "frame_size",
    "frames_per_video",
    "patch_encoder",
    "patch_encoder_grid",
    "patch_encoder_seed",
    "qformer",
    "projector_hidden",
    "max_query_length",
    "max_length",
    "chat_format",
    "system_prompt",
    "llm",
    "llm_preset",
    "base_llm",
    "data_dir",
    "feature_dtype",
)


def base_key_config(config: Any) -> Any:
    """The part of a VA-GPT config the base video LLM depends on (its cache key)."""
    import ml_collections

    return ml_collections.ConfigDict({k: config[k] for k in BASE_KEYS if k in config})


def base_dir(config: Any) -> str:
    """``<data_dir>/base_video_llm_<hash>``: where the base video LLM of ``config`` lives."""
    from vau_jax.methods.runner import pretrained_dir

    return pretrained_dir(base_key_config(config), "base_video_llm")


class VideoPretrain(MethodBase):
    """Caption pretraining of the video LLM on SynthVAD's pretrain split (module docstring).

    ``config`` is the VA-GPT config (encoders, Q-Former, LLM); ``config.base_llm`` holds this
    run's knobs: ``num_videos``, ``num_eval_videos``, ``steps``, ``batch_size``,
    ``optimizer``, ``text_pretrain`` (the text-only LLM pretraining config).
    """

    name = "video_pretrain"

    def __init__(self, config: Any, workdir: str = ""):
        super().__init__(config, workdir)
        self.feats: dict[str, SplitFeatures] = {}

    def prepare(self, inference: bool = False) -> None:
        c = self.config
        # inference: only the model's shape is needed (no LLM weights, no pretraining)
        self.tok, self.llm_cfg, self.start_llm = frozen_llm(c, weights=not inference)
        self.encoders = make_encoders(c, inference)
        self.specs = frame_specs(c)
        vis = self.encoders["visual"]
        self.vision_width = vis.width
        grid = vis.config.image_size // vis.config.patch_size
        self.num_patches = grid * grid
        self.model = build_vlm(c, self.llm_cfg, self.vision_width, self.tok.vocab_size)
        self.num_video_tokens = 2 * int(c.frames_per_video)
        if not inference:
            self._data()
        self.prepared = "inference" if inference else "train"

    def _data(self) -> None:
        from vau_jax.data.datasets import synthvad_dataset
        from vau_jax.data.features import FeatureStore
        from vau_jax.data.synthvad import SynthConfig

        c, b = self.config, self.config.base_llm
        n, n_eval = int(b.num_videos), int(b.num_eval_videos)
        videos = synthvad_dataset(
            c.data_dir, SynthConfig(**dict(c.synthvad)), 0, 0, num_pretrain=n + n_eval
        ).split("pretrain")
        root = os.path.join(c.data_dir, "features")
        sets = {}
        for name in ("visual", "dino"):
            store = FeatureStore(
                root,
                self.encoders[name],
                self.specs[name],
                dtype=str(c.feature_dtype),
                name=f"synthvad-video_llm-{name}",
            )
            sets[name] = store.ensure(videos, desc=f"base video LLM {name}")
        self.videos = {"train": videos[:n], "eval": videos[n:]}
        self.feats_all = SplitFeatures(cls=sets["visual"], **sets)

    def rows(self, split: str) -> list[dict[str, np.ndarray]]:
        """Caption conversations of the pretrain videos (generic: no anomaly question)."""
        from vau_jax.data import templates as T
        from vau_jax.data.caption_qa import SPAN_QUESTIONS
        from vau_jax.data.instruct import format_time
        from vau_jax.data.synthvad import from_record
        from vau_jax.data.synthvad.captions import uca_segments

        offset = 0 if split == "train" else len(self.videos["train"])
        out = []
        for i, v in enumerate(self.videos[split]):
            video = from_record(v.record())
            rng = np.random.default_rng([int(self.config.seed), offset + i])
            q = T.DESCRIBE_QUESTIONS[int(rng.integers(len(T.DESCRIBE_QUESTIONS)))]
            convs = [
                [
                    {"from": "human", "value": f"{T.VIDEO_MARKER}\n{q}"},
                    {"from": "gpt", "value": video.event_description},
                ]
            ]
            for s, e, sentence in uca_segments(video):
                span = SPAN_QUESTIONS[int(rng.integers(len(SPAN_QUESTIONS)))]
                span = span.format(start=format_time(s), end=format_time(e))
                convs.append(
                    [
                        {"from": "human", "value": f"{T.VIDEO_MARKER}\n{span}"},
                        {"from": "gpt", "value": sentence},
                    ]
                )
            if self.config.base_llm.get("object_qa", False):
                from vau_jax.data.object_qa import conversations as object_qa

                convs += object_qa(video, int(rng.integers(1 << 30)))
            if self.config.base_llm.get("object_mc", False):
                from vau_jax.data.object_qa import choice_conversations
                from vau_jax.methods.pretrain.text_llm import object_answer_style

                style = object_answer_style(self.config.base_llm.text_pretrain)
                convs += choice_conversations(video, int(rng.integers(1 << 30)), answer_style=style)
            for k, conv in enumerate(convs):
                out.append(
                    conversation_row(
                        self.tok,
                        self.config,
                        conv,
                        offset + i,
                        self.num_video_tokens,
                        f"{v.id} caption {k}",
                    )
                )
        if split == "train" and self.config.llm == "tiny":  # a frozen LLM keeps its skills
            out += replay_rows(self, len(out), float(self.config.base_llm.get("text_replay", 0.0)))
        return out

    def abstract_params(self) -> Any:
        args = dummy_inputs(self.config, self.num_patches, self.vision_width)
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), *args))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        args = dummy_inputs(self.config, self.num_patches, self.vision_width)
        return nn.unbox(self.model.init(rng, *args)["params"])

    def _loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        logits = self.model.apply(
            {"params": params},
            batch["input_ids"],
            batch.get("attention_mask"),  # None in packed rows
            batch["video_mask"],
            batch["visual"],
            batch["query_ids"],
            batch["query_mask"],
            segment_ids=batch.get("segment_ids"),
        )["logits"]
        return lm_loss(logits, batch["input_ids"], batch["loss_mask"])

    def train_rows(self) -> list[dict[str, np.ndarray]]:
        """The training rows, packed when ``base_llm.pack_length`` is set: conversations side
        by side (at most ``base_llm.pack_videos`` per row, each video's features and Q-Former
        query kept beside it; :func:`vau_jax.data.packing.pack_rows`)."""
        from vau_jax.data.packing import pack_rows, packing_summary

        b = self.config.base_llm
        rows = self.rows("train")
        length = int(b.get("pack_length", 0))
        if not length:
            return rows
        packed = pack_rows(
            rows,
            length,
            seed=int(self.config.seed),
            sequence_keys=("input_ids", "loss_mask", "video_mask"),
            side_keys=("video", "query_ids", "query_mask"),
            max_segments=int(b.pack_videos),
            side_mask_key="video_mask",
        )
        logging.info("base video LLM: %s", packing_summary(rows, packed))
        return packed

    def stages(self) -> list[Stage]:
        from vau_jax.data.pipeline import PipelineConfig, make_iterator
        from vau_jax.methods.base import put_parts

        b = self.config.base_llm
        pcfg = PipelineConfig(
            int(b.batch_size), seed=int(self.config.seed), num_epochs=None, read_threads=1
        )

        def data():
            return make_iterator(
                self.train_rows(), pcfg, transforms=[AttachVisual(self.feats_all, dino=False)]
            )

        opt = dict(b.optimizer)
        if self.config.llm == "smollm2":  # the real instruction-tuned LLM stays as it is
            opt["freeze"] = [*opt.get("freeze", []), r"^llm/"]
        start = lambda p: put_parts(p, {"llm": self.start_llm})  # noqa: E731
        stages = []
        align = int(b.get("align_steps", 0))
        if align > 0:  # LLaVA / LLaMA-VID stage 1: the LLM frozen, the visual path learns
            aopt = {**opt, "freeze": [*opt.get("freeze", []), r"^llm/"]}
            aopt.update(total_steps=align, warmup_steps=min(int(opt["warmup_steps"]), align))
            stages.append(
                Stage("align", align, aopt, self._loss, data, log_every=50, on_start=start)
            )
        stages.append(
            Stage("captions", int(b.steps), opt, self._loss, data, log_every=50, on_start=start)
        )
        return stages

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Caption loss and token accuracy on held-out pretrain videos."""
        from vau_jax.eval.scoring import stack_rows

        del workdir
        rows = self.rows("eval")
        loss_fn = jax.jit(self._loss)
        losses, accs, weights = [], [], []
        for s in range(0, len(rows), 16):
            chunk = rows[s : s + 16]
            b = attach_batch(
                stack_rows(chunk + [chunk[-1]] * (16 - len(chunk)), min_length=0), self.feats_all
            )
            loss, aux = loss_fn(params, {k: jnp.asarray(v) for k, v in b.items()}, None)
            losses.append(float(loss))
            accs.append(float(aux["token_accuracy"]))
            weights.append(len(chunk))
        w = np.asarray(weights, np.float64)
        return {
            "caption_loss": float(np.average(losses, weights=w)),
            "caption_token_accuracy": float(np.average(accs, weights=w)),
        }


def ensure_base_llm(config: Any) -> Any:
    """The base video LLM's params (host arrays) for a VA-GPT ``config``: text pretraining
    and caption pretraining run once when missing (resumable in ``<dir>.run``), then cached
    in ``<dir>/params``."""
    import orbax.checkpoint as ocp

    from vau_jax.methods.runner import run_method

    path = base_dir(config)
    params_dir = os.path.abspath(os.path.join(path, "params"))
    # One released checkpoint whatever the VA-GPT seed: the base model's own seed is
    # ``base_llm.seed`` (part of its cache key), not the seed of the run that asks for it.
    config = config.copy_and_resolve_references()
    config.seed = int(config.base_llm.get("seed", 0))
    config.steps_per_call = int(config.base_llm.get("steps_per_call", 1))
    method = VideoPretrain(config, path + ".run")
    if not os.path.isdir(params_dir):
        logging.info("no base video LLM at %s: pretraining it on captions", path)
        with timing.phase("pretrain"), timing.within("pretrain"):
            method.prepare()
            params, _ = run_method(method, config, path + ".run", "train_and_eval")
        if jax.process_index() == 0:
            tmp = params_dir + ".tmp"
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp)
            ckptr = ocp.StandardCheckpointer()
            ckptr.save(tmp, jax.device_get(params))
            ckptr.wait_until_finished()
            ckptr.close()
            os.replace(tmp, params_dir)
    else:
        method.prepare(inference=True)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nn.unbox(method.abstract_params())
    )
    return restore_base(params_dir, target)


def restore_base(params_dir: str, target: Any) -> Any:
    """The cached base video LLM in ``target``'s structure (a tree of ``ShapeDtypeStruct``).

    The LLM's decoder blocks are stored in the layout they were trained in; ``scan_layers``
    is not part of the cache key, so they are converted to ``target``'s layout
    (:func:`vau_jax.models.llama_layout.match_layer_layout`), as a converted checkpoint loads into
    either. Raises ``ValueError`` naming the folder when the leaves still differ."""
    import orbax.checkpoint as ocp

    from vau_jax.models.llama_layout import match_layer_layout
    from vau_jax.tree import flatten

    ckptr = ocp.StandardCheckpointer()
    try:
        stored = jax.device_get(ckptr.restore(params_dir))
    finally:
        ckptr.close()
    if isinstance(stored.get("llm"), dict) and isinstance(target.get("llm"), dict):
        stored["llm"] = match_layer_layout(stored["llm"], target["llm"])
    got, want = flatten(stored), flatten(target)
    bad = sorted(
        k
        for k in got.keys() | want.keys()
        if k not in got or k not in want or tuple(got[k].shape) != tuple(want[k].shape)
    )
    if bad:
        raise ValueError(
            f"{params_dir}: the cached base video LLM does not match the model: {len(bad)} "
            f"leaves differ, first {bad[0]!r} (delete the folder to pretrain it again)"
        )
    return jax.tree.map(lambda w, x: np.asarray(x, dtype=w.dtype), target, stored)
