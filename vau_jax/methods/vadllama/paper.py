"""VAD-LLaMA's paper preset: its checkpoint roles, the converted frozen VE, and the full-size
parameter trees under ``jax.eval_shape``.

Roles (``config.paper_checkpoints.<role>`` = a folder written by ``python -m vau_jax.convert``):
``vision`` (EVA-ViT-g/14 of BLIP-2), ``image_qformer`` (BLIP-2's Q-Former; with ``vision`` it
is the frozen VE whose 32 queries per frame the feature store caches), ``video_qformer``
(Video-LLaMA's video Q-Former, the VADor's starting point) and ``llm`` (Vicuna-7B, phase 3).

Sizes come from the converted checkpoints: the VE's width and queries per frame from
``vision`` + ``image_qformer`` (:func:`paper_encoder`), the VADor's video Q-Former from
``video_qformer`` (:func:`video_qformer_config`, whose weights :func:`video_qformer_parts`
puts in at phase 1's start). The registry names of the config only describe the full-size
trees of :func:`paper_abstract_params`.
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
from vau_jax.models.qformer import QFormerConfig

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


def paper_encoder(config: Any) -> Any:
    """The frozen VE of the paper preset: converted EVA-ViT-g + image Q-Former."""
    from vau_jax import encoders

    ck = config.paper_checkpoints
    return encoders.qformer_from_checkpoints(
        str(ck.vision), str(ck.image_qformer), batch_size=int(config.get("encoder_batch", 32))
    )


def _video_qformer_path(config: Any) -> str:
    return str(config.get("paper_checkpoints", {}).get("video_qformer", "") or "")


def video_qformer_config(config: Any) -> QFormerConfig:
    """The video Q-Former's config: the converted ``paper_checkpoints.video_qformer``'s (the
    VADor replaces its input width and drops its text input), or the registry's
    ``config.video_qformer`` when that role is unset."""
    from vau_jax.convert.checkpoint import read_converted_config

    path = _video_qformer_path(config)
    if not path:
        return registry.get_config(config.video_qformer)
    cfg = read_converted_config(path)
    if not isinstance(cfg, QFormerConfig):
        raise ValueError(
            f"{path}: paper_checkpoints.video_qformer holds a {type(cfg).__name__} "
            "checkpoint, expected a Q-Former"
        )
    return cfg


def video_qformer_parts(config: Any, params: Any) -> dict[str, Any]:
    """``{"video_qformer": tree}``: the converted video Q-Former laid over the VADor's
    ``params["video_qformer"]`` (:func:`vau_jax.convert.fit.fit_params`; cross-attention
    key/value kernels keep their fresh values when the VE width differs, logged; text
    embeddings of the checkpoint are unused). ``{}`` when the role is unset."""
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.convert.fit import QFORMER_VISION_KV, fit_params

    path = _video_qformer_path(config)
    if not path:
        return {}
    _, converted = load_converted(path)
    tree = fit_params(converted, params["video_qformer"], source=path, reinit=QFORMER_VISION_KV)
    return {"video_qformer": tree}


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
