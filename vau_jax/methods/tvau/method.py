"""T-VAU: AHD heatmaps and RAE region prompts on a frozen video LLM (DESIGN §5).

Parameters: ``{"ahd", "rae", "vlm"}``. ``vlm`` is the frozen LVLM: on the tiny preset the
base video LLM that [2/7] pretrains on captions of SynthVAD's pretrain split (the same cached
artefact VA-GPT starts from; ``llm="smollm2"``: the one built on the frozen SmolLM2-135M-
Instruct, ``chat_format="chatml"``), on the paper preset the converted LLaMA-VID; put in place
when training starts and never updated (every stage freezes it: no gradient step, no
optimizer state). Stages, in order:

1. ``ahd``: AHD alone (RAE and LVLM frozen), patch-level soft cross-entropy against the
   fraction of each patch covered by an anomalous object's mask (train split frames);
2. ``rae_narration`` then ``rae_anomaly``: RAE alone (AHD and LVLM frozen), the curriculum
   of T-VAU's "Loss & Training": appearance/motion narration of the objects first, then the
   anomaly-focused questions (Yes/No, target, trajectory, spatial) of the dataset-construction
   pipeline (:mod:`vau_jax.data.tvau_dataset`). The LVLM reads at the video marker the
   LLaMA-VID context/content tokens of ``frames_per_video`` frames and RAE's ``[P_base,
   P_region, p_global]`` from the AHD heatmaps of those frames, in ``rae.order``
   (:data:`PROMPT_ORDERS`: the paper preset's ``"after"``, ``[visual tokens, P_An]``; the
   tiny preset's ``"base_first"``, ``[P_base, visual tokens, P_region, p_global]``).
   Three options of ours, off by default (measured worse, README, T-VAU): RAE trained on
   cross-fitted heatmaps (``rae.heatmap_folds``, :mod:`vau_jax.methods.tvau.crossfit`), the
   LVLM's own visual tokens hidden in some training rows (``rae.visual_dropout``), and each
   training row's heatmaps scaled by a factor from ``U(rae.heat_scale_min, 1)`` per step.

Evaluation on the test split (:mod:`vau_jax.methods.tvau.evaluation`).

    python -m vau_jax.main --config=configs/tvau.py
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.methods.base import MethodBase, put_parts
from vau_jax.methods.tvau import crossfit
from vau_jax.methods.tvau import data as D
from vau_jax.methods.tvau.heat import heat_frames
from vau_jax.models import llama
from vau_jax.models.heads.ahd import AHD, AHDConfig, ahd_loss, proportional_taps
from vau_jax.models.heads.rae import RAE, config_from, num_prompts
from vau_jax.models.vlm import VideoLLM, lm_loss, lm_loss_at
from vau_jax.train.trainer import Stage

#: ``config.rae.order``, where RAE's ``P_An = [P_base, P_region, p_global]`` sits in the video
#: span (ours: T-VAU feeds P_An "alongside" the visual tokens without an order): after the
#: LVLM's visual tokens (``"after"``), before them (``"before"``), or P_base before them and
#: the rest after (``"base_first"``). With the last two the text before the span and P_base are
#: the same in every row, so each RAE step computes them once per batch (``frozen.py``).
PROMPT_ORDERS = ("after", "before", "base_first")


def hide_visual_tokens(
    attention_mask: jax.Array,
    video_mask: jax.Array,
    num_visual: int,
    hide: jax.Array,
    after: int = 0,
) -> jax.Array:
    """``attention_mask [B, L]`` with the ``num_visual`` ``video_mask`` positions after its
    first ``after`` of every row where ``hide [B]`` (bool) set to 0: the LVLM's own visual
    tokens, which come first in the video span (``after=0``), or after RAE's first
    ``after`` prompts (``config.rae.order``) (``config.rae.visual_dropout``)."""
    video = video_mask.astype(bool)
    seen = jnp.cumsum(video, axis=1)
    visual = video & (seen > after) & (seen <= after + num_visual)
    return jnp.where(hide[:, None] & visual, 0, attention_mask).astype(attention_mask.dtype)


class TVAU(MethodBase):
    """AHD, then RAE with the LVLM frozen (see the module docstring)."""

    name = "tvau"

    def __init__(self, config: Any, workdir: str):
        super().__init__(config, workdir)
        self.dataset = None
        self.feats: dict[str, D.TapFeatures] = {}
        self.sampled: dict[str, D.SampledTaps] = {}  # per split, built on first use
        self._jit: dict[str, Any] = {}
        self._oof_heat: dict[int, np.ndarray] | None = None  # out_of_fold_heat, made once
        self._segment_heat: dict[str, Any] = {}  # heat.split_heat's, for one AHD at a time
        self._stage_params: Any = None  # the running RAE stage's starting params
        self.heat_frames = "sampled"  # config.rae.heat_frames, checked in prepare

    # -- preparation -----------------------------------------------------------------------

    def prepare(self, inference: bool = False) -> None:
        """Encoders, prompts and the models; for training also the layout tree, the tapped
        features of both splits and the constructed questions (all cached)."""
        from vau_jax.methods.pretrain.video_llm import build_vlm, frozen_llm

        c = self.config
        if self.prepared == "train" or (inference and self.prepared):
            return
        self.heat_frames = heat_frames(c)
        if c.llm not in ("tiny", "smollm2", "paper"):
            raise ValueError(
                f"config.llm={c.llm!r}: T-VAU's frozen LVLM is the base video LLM on the tiny "
                "LLaMA ('tiny') or on SmolLM2-135M-Instruct ('smollm2'), or the paper preset's "
                "converted LLaMA-VID ('paper')"
            )
        if not inference:  # the dataset index first: bad input fails before anything is built
            from vau_jax.data.datasets import layout_dataset
            from vau_jax.data.formats.layouts import read_layout
            from vau_jax.methods.tvau.evaluation import sigma_candidates

            self.root = D.ensure_layout(c)
            splits = read_layout(str(c.dataset), self.root)  # masks read once, for both
            fps = c.get("dataset_fps", None) or None
            self.dataset = layout_dataset(str(c.dataset), self.root, c.data_dir, fps, splits)
            sigma_candidates(self)  # a choice without validation videos fails now
            self.records = D.records_by_id(str(c.dataset), self.root, splits)
        self._encoders(inference)
        if c.llm == "paper":  # the converted LLaMA-VID: its layout, sizes and tokenizers
            from vau_jax.methods.vagpt.paper import load_paper_llm, paper_vlm_config

            self.llm_cfg, self.tok, self.query_tok = load_paper_llm(c)
            self.vlm = VideoLLM(paper_vlm_config(c, self.vis_width))
            self.llm_cfg = self.vlm.config.llm  # under the precision policy (scan layout)
        else:  # the base video LLM's own LLM and tokenizer (its shape; weights: load_lvlm)
            self.tok, self.llm_cfg, _ = frozen_llm(c, weights=False)
            self.query_tok = self.tok
            self.vlm = build_vlm(c, self.llm_cfg, self.vis_width, self.tok.vocab_size)
            self.llm_cfg = self.vlm.config.llm  # under the precision policy (scan layout)
        self.build_heads(int(self.prompts.shape[-1]))
        if not inference:
            for split in ("train", "test", "validation"):  # validation: UBnormal's, if any
                if split != "validation" or self.dataset.videos.get(split):
                    self.feats[split] = self._features(split)
            self._questions()
        self.prepared = "inference" if inference else "train"

    def build_heads(self, text_width: int) -> None:
        """AHD (``len(self.taps)`` taps to ``text_width``) and RAE (to the LLM's width,
        ``self.llm_cfg``) from the config, and the LVLM's video-token count; also used by
        :mod:`vau_jax.methods.tvau.aot` without encoders or data."""
        c = self.config
        self.frames = int(c.frames_per_video)
        self.motion = bool(c.ahd.get("motion", False))  # D.read_taps
        self.background = bool(c.ahd.get("background", False))  # D.read_taps
        self.ahd = AHD(
            AHDConfig(
                num_taps=len(self.taps),
                text_width=int(text_width),
                mlp_hidden=int(c.ahd.mlp_hidden),
                init_temperature=float(c.ahd.init_temperature),
            )
        )
        self.rcfg = config_from(c.rae, self.llm_cfg.hidden_size)
        self.rae = RAE(self.rcfg)
        self.use_ahd, self.use_rae = bool(c.get("use_ahd", True)), bool(c.get("use_rae", True))
        self.num_video_tokens = 2 * self.frames + (num_prompts(self.rcfg) if self.use_rae else 0)
        order = str(c.rae.get("order", "after"))  # ours: where P_An sits in the video span
        if order not in PROMPT_ORDERS:
            raise ValueError(f"rae.order={order!r}: expected one of {PROMPT_ORDERS}")
        self.prompt_order = order if self.use_rae else "after"

    def _encoders(self, inference: bool) -> None:
        """The frozen CLIP tower at the tapped blocks, the prompt embeddings of its text tower
        (``self.prompts [2, P]``: normal, abnormal) and the LVLM's visual encoder.

        Tiny: the pretrained tiny CLIP is both (its last block's tokens are the LVLM's).
        Paper: the converted CLIP model (``paper_checkpoints.clip``) for AHD, and the
        converted EVA tower's raw last-block tokens (``paper_checkpoints.vision``) for the
        LVLM (:mod:`vau_jax.methods.tvau.paper`)."""
        from vau_jax.data.frames import FrameSpec
        from vau_jax.data.synthvad.types import ANOMALY_TYPES

        c = self.config
        self.visual_encoder = None
        if c.preset == "paper":
            from vau_jax.methods.tvau import paper

            probe, text_tok = paper.clip_tower(c)
            self.visual_encoder = paper.visual_encoder(c)
            text = (text_tok, int(probe.module.config.text_config.max_position_embeddings), True)
        else:
            from vau_jax.methods.pretrain import clip

            if inference:
                path = clip.checkpoint_dir(c.clip_pretrain)
                if not os.path.isfile(os.path.join(path, "config.json")):
                    raise FileNotFoundError(f"{path}: the run's frozen tiny CLIP is missing")
            probe = clip.frozen_clip(c.clip_pretrain, ("cls",))
            tok = clip.synthvad_tokenizer(c.clip_pretrain)
            text = (tok, int(c.clip_pretrain.max_text_length), False)
        depth = int(probe.config.num_hidden_layers)
        self.taps = tuple(int(t) for t in c.taps) or proportional_taps(depth)
        if max(self.taps) > depth or min(self.taps) < 1:
            raise ValueError(f"taps {self.taps} outside the tower's blocks 1..{depth}")
        lvlm_tokens = () if self.visual_encoder is not None else (depth,)
        outputs = tuple(sorted({f"hidden_{b}" for b in (*self.taps, *lvlm_tokens)}))
        # the same loaded tower and weights, other outputs (no second checkpoint read)
        self.encoder = dataclasses.replace(probe, outputs=outputs, batch_size=64)
        self.depth, self.width = depth, int(self.encoder.width)
        vcfg = self.encoder.config
        self.grid = int(vcfg.image_size) // int(vcfg.patch_size)
        lvlm = self.visual_encoder or self.encoder
        self.vis_width = int(lvlm.width)
        self.vis_tokens = (int(lvlm.config.image_size) // int(lvlm.config.patch_size)) ** 2
        self.size = int(c.frame_size)
        mode = "rgb" if c.preset == "paper" else str(c.clip_pretrain.get("input", "rgb"))
        self.spec = FrameSpec(fps=None, size=self.size, input=mode)  # every native frame
        # explain / serve decode a user's video at the rate the layout's videos have
        self.predict_fps = float(c.get("fps", 0.0) or c.synthvad.fps)
        normal, abnormal = D.prompt_texts(c, ANOMALY_TYPES)
        self.prompts = self._embed_prompts(probe, text, normal, abnormal)

    def _embed_prompts(
        self, enc: Any, text: tuple[Any, int, bool], normal: list[str], abnormal: list[str]
    ) -> np.ndarray:
        """``[2, P]`` prompt-ensemble embeddings of the CLIP text tower; ``text`` is
        ``(tokenizer, length, add_bos)`` (the tiny CLIP was trained without a BOS token; an
        HF CLIP tokenizer's rows start with ``<|startoftext|>``). Rows end with EOS, the
        pooled position."""
        from vau_jax.models.clip_text import CLIPModel
        from vau_jax.models.heads.ahd import prompt_embeddings

        tok, length, bos = text

        def embed(texts: list[str]) -> jax.Array:
            ids = np.full((len(texts), length), tok.pad_id, np.int32)
            for i, t in enumerate(texts):
                row = list(tok.encode(t, add_bos=bos))[: length - 1] + [tok.eos_id]
                ids[i, : len(row)] = row
            out = enc.module.apply(
                {"params": enc.params},
                jnp.asarray(ids),
                jnp.asarray(ids != tok.pad_id),
                method=CLIPModel.get_text_features,
            )
            return out["pooler_output"]

        return np.asarray(prompt_embeddings(embed(normal), embed(abnormal)), np.float32)

    def _features(self, split: str) -> D.TapFeatures:
        from vau_jax.data.features import FeatureStore

        c = self.config
        videos = self.dataset.split(split)
        if not videos:
            raise ValueError(f"{self.root}: the {split} split has no video")

        def store(encoder: Any, tag: str, what: str) -> Any:
            folder = os.path.join(c.data_dir, "features")
            name = f"{self.dataset.name}-{tag}"
            return FeatureStore(folder, encoder, self.spec, dtype=str(c.feature_dtype),
                                name=name).ensure(videos, desc=f"T-VAU {split} {what}")  # fmt: skip

        taps = store(self.encoder, "tvau", "taps")
        visual = None
        if self.visual_encoder is not None:  # the LVLM's own tower (paper preset)
            visual = store(self.visual_encoder, "tvau-visual", "LVLM tokens")
        return D.TapFeatures(taps, self.taps, self.depth, visual, self.motion, self.background)

    def _questions(self) -> None:
        """The constructed annotations and questions of both splits (cached per layout)."""
        from vau_jax.methods.tvau import questions as Q

        self.qa = Q.ensure_questions(self.config, self.root)

    # -- parameters ------------------------------------------------------------------------

    def _dummy(self) -> tuple[Any, ...]:
        from vau_jax.methods.pretrain.video_llm import dummy_inputs

        g = self.grid
        width = self.width * (1 + self.motion + self.background)  # D.read_taps
        taps = [jnp.zeros((1, 2, g, g, width), jnp.float32) for _ in self.taps]
        heat = jnp.zeros((1, self.frames, g, g), jnp.float32)
        return taps, heat, dummy_inputs(self.config, self.vis_tokens, self.vis_width)

    def _init(self, rng: jax.Array) -> Any:
        taps, heat, vlm_args = self._dummy()
        r1, r2, r3 = jax.random.split(rng, 3)
        return {
            "ahd": self.ahd.init(r1, taps, jnp.asarray(self.prompts))["params"],
            "rae": self.rae.init(r2, heat)["params"],
            "vlm": self.vlm.init(r3, *vlm_args)["params"],
        }

    def abstract_params(self) -> Any:
        return jax.eval_shape(self._init, jax.random.key(0))

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(jax.jit(self._init)(rng))

    def load_lvlm(self, params: Any) -> Any:
        """``params`` with the frozen LVLM put in ``vlm``: the cached base video LLM (tiny),
        or every part of the converted LLaMA-VID (paper; checked leaf by leaf, nothing
        re-initialised)."""
        if self.config.llm == "paper":
            from vau_jax.methods.vagpt.paper import paper_parts

            return put_parts(params, {"vlm": paper_parts(self.config, params["vlm"])})
        from vau_jax.methods.pretrain.video_llm import ensure_base_llm

        return put_parts(params, {"vlm": ensure_base_llm(self.config)})

    # -- the model -------------------------------------------------------------------------

    def heat(self, ahd_params: Any, taps: list[jax.Array]) -> dict[str, jax.Array]:
        """AHD on ``taps`` (each ``[..., N, D]`` patch tokens) -> its outputs on the
        ``grid × grid`` patch grid (``heatmap [..., g, g]``, ``logits [..., g, g, 2]``)."""
        g = self.grid
        grids = [t.reshape(*t.shape[:-2], g, g, t.shape[-1]) for t in taps]
        return self.ahd.apply({"params": ahd_params}, grids, jnp.asarray(self.prompts))

    def prefix_embeds(self, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
        """LLM input embeddings ``[B, L, D]``: text with the visual tokens (2S) and P_An at
        the video marker, in ``rae.order`` (:data:`PROMPT_ORDERS`) (``batch``: ``visual [B,
        S, N, D]``, ``tap_<k> [B, S, N, D_k]``, ``frame_valid [B, S]``, ``input_ids``, ``video_mask``, ``query_ids``/``mask``; or,
        in RAE's training rows, the frozen parts' outputs ``vis [B, 2S, D]`` and
        ``heat [B, S, g, g]`` in place of ``visual`` and the taps)."""
        vlm = {"params": params["vlm"]}
        if "vis" in batch:  # RAE's training rows: computed once (methods/tvau/frozen.py)
            vis = batch["vis"]
        else:
            vis = self.vlm.apply(
                vlm,
                batch["visual"],
                batch["query_ids"],
                batch["query_mask"],
                method=VideoLLM.visual_embeds,
            )
        embeds = vis
        if self.use_rae:  # without AHD (ablation) RAE reads all-zero heatmaps: no evidence
            if "heat" in batch:  # RAE's training rows (methods/tvau/frozen.py, crossfit.py)
                heat = batch["heat"]
            else:
                taps = [batch[f"tap_{k}"] for k in range(len(self.taps))]
                heat = jax.lax.stop_gradient(self.heat(params["ahd"], taps)["heatmap"])
            if not self.use_ahd:
                heat = jnp.zeros_like(heat)
            prompts = self.rae.apply({"params": params["rae"]}, heat, batch["frame_valid"])
            embeds = jnp.concatenate(self._span(vis, prompts.astype(vis.dtype)), axis=1)
        return self.vlm.apply(
            vlm, batch["input_ids"], batch["video_mask"], embeds, method=VideoLLM.embed
        )

    def _span(self, vis: jax.Array, prompts: jax.Array) -> list[jax.Array]:
        """The video span's parts in ``rae.order``: ``vis [B, 2S, D]``, ``prompts [B,
        num_prompts, D]`` (``[P_base, P_region, p_global]``)."""
        if self.prompt_order == "before":
            return [prompts, vis]
        if self.prompt_order == "base_first":
            nb = int(self.rcfg.num_base)
            return [prompts[:, :nb], vis, prompts[:, nb:]]
        return [vis, prompts]

    def visual_offset(self) -> int:
        """How many of RAE's prompts come before the visual tokens in the video span."""
        return {"after": 0, "before": num_prompts(self.rcfg), "base_first": self.rcfg.num_base}[
            self.prompt_order
        ]

    def _lm_logits(
        self, params: Any, embeds: jax.Array, mask: jax.Array, at: jax.Array | None = None
    ) -> jax.Array:
        """The frozen LLM's logits ``[B, L, V]``, or ``[B, K, V]`` at positions ``at``."""
        return self.vlm.apply(
            {"params": params["vlm"]},
            embeds,
            mask,
            at,
            method=lambda m, x, a, p: m.llm(inputs_embeds=x, attention_mask=a, logits_at=p)[
                "logits"
            ],
        )

    def _lm_logits_after(
        self,
        params: Any,
        embeds: jax.Array,
        mask: jax.Array,
        prefix_k: jax.Array,
        prefix_v: jax.Array,
        at: jax.Array,
    ) -> jax.Array:
        """``_lm_logits(params, embeds, mask, at)`` computed from position ``P`` on, after
        the first ``P`` positions' keys and values per layer, ``prefix_k`` / ``prefix_v
        [layers, B or 1, Hkv, P, Dh]`` (one row: the same prefix for every row); ``at [B,
        K]`` are row positions >= ``P`` (padding entries may be anything: they are clipped,
        and their weight is 0)."""
        b, n = mask.shape
        p = prefix_k.shape[3]
        cache = llama.init_cache(self.llm_cfg, b, n, prefix_k.dtype)  # the prefix in [0, P)
        cache = {
            "k": cache["k"].at[:, :, :, :p].set(prefix_k),
            "v": cache["v"].at[:, :, :, :p].set(prefix_v),
            "mask": cache["mask"].at[:, :p].set(True),
            "pos": cache["pos"] + p,
            "index": cache["index"] + p,
        }
        rel = jnp.clip(at - p, 0, n - p - 1)
        return self.vlm.apply(
            {"params": params["vlm"]},
            embeds[:, p:],
            mask[:, p:].astype(bool),
            rel,
            method=lambda m, x, v, a: m.llm.cached_step(x, v, cache, logits_at=a)[0],
        )

    def shared_prefix_kv(self, params: Any, embeds: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The LLM's keys and values ``([layers, 1, Hkv, P, Dh], same)`` of one row's first
        ``P`` positions, ``embeds [1, P, D]`` (no padding): with ``rae.order`` "before" or "base_first" the
        text before the video span and RAE's learned base prompts, the same in every row
        (:func:`vau_jax.methods.tvau.frozen.shared_length`), so a step computes them once
        for its batch, differentiably (the base prompts are trained)."""
        p = embeds.shape[1]

        def fn(m: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            cache = llama.init_cache(self.llm_cfg, 1, p)
            _, cache = m.llm.cached_step(x, jnp.ones((1, p), bool), cache, fresh=True)
            return cache["k"], cache["v"]

        return self.vlm.apply({"params": params["vlm"]}, embeds, method=fn)

    # -- losses ----------------------------------------------------------------------------

    def _ahd_loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        taps = [batch[f"tap_{k}"] for k in range(len(self.taps))]
        out = self.heat(params["ahd"], taps)
        loss = ahd_loss(
            out["logits"], batch["target"], pos_weight=float(self.config.ahd.pos_weight)
        )
        hit = (out["heatmap"] >= 0.5) == (batch["target"] >= 0.5)
        return loss, {"patch_accuracy": jnp.mean(hit.astype(jnp.float32))}

    def _rae_loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        low = float(self.config.rae.get("heat_scale_min", 1.0))
        if low < 1.0 and "heat" in batch:  # ours: each row's heatmaps scaled by U(low, 1)
            scale = jax.random.uniform(jax.random.fold_in(rng, 1), (batch["heat"].shape[0],))
            scale = low + (1.0 - low) * scale
            batch = {**batch, "heat": batch["heat"] * scale[:, None, None, None]}
        faint = float(self.config.rae.get("faint_heat_max", 0.0))
        if faint > 0.0 and "heat" in batch:  # ours: faint anomaly-shaped heat on normal rows
            heat = crossfit.faint_heat(batch["heat"], faint, jax.random.fold_in(rng, 2))
            batch = {**batch, "heat": heat}
        embeds = self.prefix_embeds(params, batch)
        mask = batch["attention_mask"]
        drop = float(self.config.rae.get("visual_dropout", 0.0))
        if drop > 0.0:  # ours: some rows hide the LVLM's own visual tokens (RAE's stay)
            hide = jax.random.bernoulli(rng, drop, (mask.shape[0],))
            first = self.visual_offset()
            mask = hide_visual_tokens(mask, batch["video_mask"], 2 * self.frames, hide, first)
        if "target_pos" in batch:  # RAE's training rows (questions.with_target_positions)
            pos = batch["target_pos"]
            if "prefix_k" in batch:  # ... with the frozen prefix's keys / values (frozen.py)
                pk, pv = (jnp.swapaxes(batch[k], 0, 1) for k in ("prefix_k", "prefix_v"))
                logits = self._lm_logits_after(params, embeds, mask, pk, pv, pos)
            elif "shared_ids" in batch:  # ... whose first P positions every row shares
                p = batch["shared_ids"].shape[1] + int(self.rcfg.num_base)
                pk, pv = self.shared_prefix_kv(params, embeds[:1, :p])
                logits = self._lm_logits_after(params, embeds, mask, pk, pv, pos)
            else:
                logits = self._lm_logits(params, embeds, mask, pos)
            return lm_loss_at(logits, batch["input_ids"], pos, batch["target_weight"])
        logits = self._lm_logits(params, embeds, mask)
        return lm_loss(logits, batch["input_ids"], batch["loss_mask"])

    # -- stages ----------------------------------------------------------------------------

    def stages(self) -> list[Stage]:
        from vau_jax.data.pipeline import PipelineConfig, make_iterator
        from vau_jax.methods.tvau import questions as Q

        c = self.config
        seed = int(c.seed)

        def opt(stage: Any, frozen: list[str]) -> dict[str, Any]:
            return {**dict(stage.optimizer), "freeze": frozen}

        def ahd_data():
            rows = D.ahd_rows(self, "train")
            pcfg = PipelineConfig(int(c.ahd.batch_size), seed=seed, num_epochs=None)
            return make_iterator(rows, pcfg)

        def rae_data(kind: str):
            def make():
                from vau_jax.methods.tvau.frozen import attach_frozen

                if self._stage_params is None:  # before any work (crossfit trains AHDs)
                    raise RuntimeError(
                        "RAE's training data is made from the stage's starting parameters "
                        "(Stage.before_data, which the Trainer calls before make_data)"
                    )
                rows = Q.rae_rows(self, "train", kind)
                pcfg = PipelineConfig(int(c.rae.batch_size), seed=seed, num_epochs=None)
                heat = self.out_of_fold_heat() if self.use_ahd else None
                rows, heat = attach_frozen(self, self._stage_params, rows, "train", heat)
                attach = D.AttachTaps(self, "train", heat, keys=("frame_valid",))
                return make_iterator(rows, pcfg, transforms=[attach])

            return make

        # Ablations (config.use_ahd / use_rae): a part that is off is not trained; the first
        # stage that runs puts the LVLM in place.
        stages = []
        if self.use_ahd:
            frozen = [r"^rae/", r"^vlm/"]
            stages.append(
                Stage("ahd", int(c.ahd_stage.steps), opt(c.ahd_stage, frozen), self._ahd_loss,
                      ahd_data, log_every=int(c.log_every),
                      steps_per_call=int(c.ahd_stage.get("steps_per_call", 0)))
            )  # fmt: skip
        if self.use_rae:
            for kind in ("narration", "anomaly"):  # the curriculum, in order
                cfg = c[f"rae_{kind}"]
                stages.append(
                    Stage(f"rae_{kind}", int(cfg.steps), opt(cfg, [r"^ahd/", r"^vlm/"]),
                          self._rae_loss, rae_data(kind), log_every=int(c.log_every),
                          grad_accum_steps=int(cfg.get("grad_accum_steps", 1)),
                          before_data=self._keep_stage_params)
                )  # fmt: skip
        if not stages:
            raise ValueError(
                "use_ahd=False and use_rae=False: nothing to train (the frozen LVLM alone is "
                "evaluated by scripts/tvau_ablations.py)"
            )
        stages[0] = dataclasses.replace(stages[0], on_start=self.load_lvlm)
        return stages

    def _keep_stage_params(self, params: Any) -> None:
        """``Stage.before_data`` of the RAE stages: their starting parameters, from which
        ``rae_data`` computes the frozen LVLM's and AHD's outputs once."""
        self._stage_params = params

    def out_of_fold_heat(self) -> dict[int, np.ndarray] | None:
        """The training videos' cross-fitted heatmaps (``config.rae.heatmap_folds >= 2``;
        :mod:`vau_jax.methods.tvau.crossfit`), made once per process; ``None``: RAE reads
        the trained AHD's."""
        if int(self.config.rae.get("heatmap_folds", 0)) < 2:
            return None
        if self._oof_heat is None:
            from vau_jax.methods.tvau.crossfit import out_of_fold_heatmaps

            self._oof_heat = out_of_fold_heatmaps(self, int(self.config.seed))
        return self._oof_heat

    # -- evaluation, prediction, report ----------------------------------------------------

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        from vau_jax.methods.tvau.evaluation import evaluate

        return evaluate(self, params, workdir)

    def predict(
        self, params: Any, frames: np.ndarray, fps: float, state: Any = None
    ) -> tuple[dict[str, Any], Any]:
        from vau_jax.methods.tvau.predict import predict

        return predict(self, params, frames, fps, state)

    def report(self, params: Any, metrics: dict[str, float], workdir: str) -> str | None:
        from vau_jax.methods.tvau.report import write_report

        return write_report(self, params, metrics, workdir)
