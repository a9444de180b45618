"""VA-GPT's paper preset: checkpoint roles and the full-size trees under ``jax.eval_shape``.

Roles (``config.paper_checkpoints.<role>`` = a folder written by ``python -m vau_jax.convert``):
``vision`` (the frozen image encoder whose class and patch tokens the feature store
caches), ``patch_encoder`` (DINOv2-L/14 for SETS), ``qformer`` (the text-conditioned
InstructBLIP Q-Former, LLaMA-VID's context-token module) and ``llm`` (Vicuna-7B).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.methods.paper import BIN_NOTE, Source
from vau_jax.models import registry
from vau_jax.models.heads.tetg import TETG, TETGConfig
from vau_jax.models.vlm import VideoLLM, VLMConfig

#: checkpoint role -> source of its public weights.
SOURCES: dict[str, Source] = {
    "vision": Source("openai/clip-vit-large-patch14", "CLIP ViT-L/14 (frozen)"),
    "patch_encoder": Source("facebook/dinov2-large", "DINOv2 ViT-L/14 (SETS, frozen)"),
    "qformer": Source(
        "Salesforce/instructblip-vicuna-7b",
        "text-conditioned Q-Former (qformer.*, query_tokens of InstructBLIP)",
        loader="vau_jax.convert.hf_qformer:load_full_model",
        note="its cross-attention key/value kernels read 1408-wide EVA tokens; VA-GPT feeds "
        "1024-wide CLIP-L tokens, so those kernels do not fit and are trained from scratch "
        "in stage 1",
    ),
    "llm": Source("lmsys/vicuna-7b-v1.5", "Vicuna-7B", note=BIN_NOTE),
}


def vagpt_vlm_config(config: Any) -> VLMConfig:
    """The paper's video LLM: Vicuna-7B behind a text-conditioned BLIP-2-size Q-Former that
    reads ``vision_encoder``-wide tokens (CLIP-L/14: 1024), with ``projector_hidden`` MLPs."""
    width = registry.get_config(config.vision_encoder).hidden_size
    qformer = dataclasses.replace(
        registry.get_config(config.qformer),
        text_input=True,  # the context token needs the instruction (LLaMA-VID)
        encoder_hidden_size=width,
    )  # vocabulary: the Q-Former's own BERT vocabulary (30,522)
    return VLMConfig(
        llm=registry.get_config(config.llm_preset),
        qformer=qformer,
        vision_width=width,
        projector_hidden=int(config.projector_hidden),
    )


def vagpt_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size VA-GPT parameter trees under ``jax.eval_shape`` (no memory).

    Leaves stay boxed (``nn.LogicallyPartitioned``), so
    :func:`vau_jax.sharding.param_shardings` derives a ``NamedSharding`` for each. Keys (the
    checkpoint roles of ``config.paper_checkpoints`` map onto them):

    * ``vision``: the CLIP ViT-L/14 vision tower (``config.vision_encoder``; 303,179,776);
    * ``patch_encoder``: DINOv2 ViT-L/14 (``config.patch_encoder``; SETS distances);
    * ``vlm``: :class:`~vau_jax.models.vlm.VideoLLM` (Q-Former + projectors + Vicuna-7B);
    * ``tetg``: the TETG MLP on the CLIP **class token** before the visual projection
      (1024-wide for CLIP-L: the token the tiny preset uses too, taken from
      ``last_hidden_state[:, 0]``, so ``vision`` needs no ``visual_projection``).
    """
    vcfg = vagpt_vlm_config(config)
    t, k, length = 1, 4, 8  # dummy shapes: any values give the same parameter shapes
    ids = jnp.zeros((1, length), jnp.int32)
    video = jnp.zeros((1, length), bool).at[:, 1 : 1 + 2 * t].set(True)
    visual = jnp.zeros((1, t, k, vcfg.vision_width), jnp.float32)
    query = jnp.zeros((1, 4), jnp.int32)
    vlm = jax.eval_shape(
        lambda: VideoLLM(vcfg).init(
            jax.random.key(0), ids, jnp.ones_like(video), video, visual, query
        )
    )
    tetg_module = TETG(TETGConfig(hidden=tuple(config.tetg.hidden)))
    cls = jnp.zeros((1, vcfg.vision_width), jnp.float32)
    tetg = jax.eval_shape(lambda: tetg_module.init(jax.random.key(0), cls))
    return {
        "vision": registry.abstract_params(config.vision_encoder),
        "patch_encoder": registry.abstract_params(config.patch_encoder),
        "vlm": vlm["params"],
        "tetg": tetg["params"],
    }
