"""VAD-LLaMA's paper preset: its checkpoint roles, the converted frozen VE, and the full-size
parameter trees under ``jax.eval_shape``.

Roles (``config.paper_checkpoints.<role>`` = a folder written by ``python -m vau_jax.convert``):
``vision`` (EVA-ViT-g/14 of BLIP-2), ``image_qformer`` (BLIP-2's Q-Former; with ``vision`` it
is the frozen VE whose 32 queries per frame the feature store caches), ``video_qformer``
(Video-LLaMA's video Q-Former, the VADor's starting point) and ``llm`` (Vicuna-7B, phase 3).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.methods.paper import BIN_NOTE, Source
from vau_jax.models import registry
from vau_jax.models.heads.ltc import LTCConfig
from vau_jax.models.heads.vador import VADor, VADorConfig

#: checkpoint role -> source of its public weights.
SOURCES: dict[str, Source] = {
    "vision": Source(
        "Salesforce/blip2-opt-2.7b",
        "EVA-ViT-g/14 image encoder (vision_model.* of BLIP-2)",
        prepare='python -c "from transformers import Blip2Model; '
        "Blip2Model.from_pretrained('{hf}').vision_model.save_pretrained('{bare}')\"",
    ),
    "image_qformer": Source(
        "Salesforce/blip2-opt-2.7b",
        "image Q-Former (qformer.*, query_tokens of BLIP-2)",
        loader="vau_jax.convert.hf_qformer:load_full_model",
    ),
    "video_qformer": Source(
        "DAMO-NLP-SG/Video-LLaMA",
        "video Q-Former",
        note="the video Q-Former must first be exported to an HF Blip2QFormerModel folder",
    ),
    "llm": Source("lmsys/vicuna-7b-v1.5", "Vicuna-7B (phase 3)", note=BIN_NOTE),
}

#: VADor params loaded from the ``video_qformer`` checkpoint (target regex -> source path).
VIDEO_QFORMER_RULES = [(r"^video_qformer/(.*)$", r"\1")]


def paper_encoder(config: Any) -> Any:
    """The frozen VE of the paper preset: converted EVA-ViT-g + image Q-Former."""
    from vau_jax import encoders

    ck = config.paper_checkpoints
    return encoders.qformer_from_checkpoints(
        str(ck.vision), str(ck.image_qformer), batch_size=int(config.get("encoder_batch", 32))
    )


def paper_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size parameter trees of the paper preset under ``jax.eval_shape`` (no memory):
    the EVA-ViT-g image encoder, the image Q-Former and the VADor (video Q-Former on
    Q-Former-wide query tokens, AP, LTC). Leaves keep their logical axis names."""
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
