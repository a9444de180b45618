"""VAD-LLaMA's paper preset: its checkpoint roles, the converted frozen VE, the video
Q-Former it starts from, the phase-3 LLM, and the full-size parameter trees under
``jax.eval_shape``.

Roles (``config.paper_checkpoints.<role>`` = a folder written by the printed conversion
command); VAD-LLaMA's VE and LLaMA are Video-LLaMA's (§3.1, §4.2):

* ``vision`` + ``image_qformer``: BLIP-2's EVA-ViT-g/14 (with its ``ln_vision`` as
  ``post_layernorm``) and image Q-Former, the frozen image encoder whose 32 queries per
  frame the feature store caches. Video-LLaMA loads both from LAVIS's
  ``blip2_pretrained_flant5xxl.pth`` (``q_former_model``), i.e. HF ``Salesforce/blip2-flan-t5-xxl``;
* ``video_qformer``: Video-LLaMA's video Q-Former with its frame position embeddings
  (``vau_jax.convert.video_llama``: 2 layers, cross-attention in every layer), the rest of
  the VE. Phase 1 and 2 keep it frozen (§3.2 Phase 1: "directly passing the VE features
  through AP"; §4.3: "we froze the pre-trained VE");
* ``llm``: Vicuna-7B (§3.1), frozen in phase 3.

Sizes come from the converted checkpoints: the VE's width and queries per frame from
``vision`` + ``image_qformer`` (:func:`paper_encoder`), the VADor's video Q-Former from
``video_qformer`` (:func:`video_qformer_config`, whose weights and frame positions
:func:`video_qformer_parts` puts in at phase 1's start). The registry names of the config
only describe the full-size trees of :func:`paper_abstract_params`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.methods.paper import BIN_NOTE, Source
from vau_jax.models import registry
from vau_jax.models.heads.vador import VADor, VADorConfig
from vau_jax.models.qformer import QFormerConfig, VideoQFormerConfig

_BLIP2 = "Salesforce/blip2-flan-t5-xxl"  # Video-LLaMA's q_former_model: blip2_pretrained_flant5xxl
#: checkpoint role -> source of its public weights.
SOURCES: dict[str, Source] = {
    "vision": Source(
        _BLIP2,
        "EVA-ViT-g/14 image encoder (vision_model.* of BLIP-2, post_layernorm = ln_vision)",
        loader="vau_jax.convert.hf_blip2_vision:load_full_model",
    ),
    "image_qformer": Source(
        _BLIP2,
        "image Q-Former (qformer.*, query_tokens of BLIP-2)",
        loader="vau_jax.convert.hf_qformer:load_full_model",
    ),
    "video_qformer": Source(
        "DAMO-NLP-SG/Video-LLaMA-Series",
        "Video-LLaMA's video Q-Former + frame position embeddings",
        loader="vau_jax.convert.video_llama:load_video_qformer",
        include=("finetune-vicuna7b-v2.pth",),
        note="a LAVIS .pth, read with torch.load(weights_only=True) "
        "(pip install -e '.[convert]'); only video_Qformer.*, video_query_tokens and "
        "video_frame_position_embedding are read",
    ),
    "llm": Source("lmsys/vicuna-7b-v1.5", "Vicuna-7B (phase 3, frozen)", note=BIN_NOTE),
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
    """The video Q-Former's config: the converted ``paper_checkpoints.video_qformer``'s (a
    Video-LLaMA video Q-Former, or a bare Q-Former; the VADor drops its text input), or the
    registry's ``config.video_qformer`` when that role is unset."""
    from vau_jax.convert.checkpoint import read_converted_config

    path = _video_qformer_path(config)
    if not path:
        return registry.get_config(config.video_qformer)
    cfg = read_converted_config(path)
    if isinstance(cfg, VideoQFormerConfig):
        return cfg.qformer
    if not isinstance(cfg, QFormerConfig):
        raise ValueError(
            f"{path}: paper_checkpoints.video_qformer holds a {type(cfg).__name__} "
            "checkpoint, expected a (video) Q-Former"
        )
    return cfg


def video_qformer_parts(config: Any, params: Any) -> dict[str, Any]:
    """The converted video Q-Former laid over the VADor's ``params``
    (:func:`vau_jax.convert.fit.fit_params`): ``{"video_qformer": tree, "frame_position":
    [F, D]}`` from a Video-LLaMA checkpoint (its first ``F = frames_per_clip`` frame
    positions; every leaf must fit, nothing is re-initialised), or ``{"video_qformer": tree}``
    from a bare Q-Former (its cross-attention key/value kernels keep their fresh values when
    the VE width differs, logged). ``{}`` when the role is unset."""
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.convert.fit import QFORMER_VISION_KV, fit_params

    path = _video_qformer_path(config)
    if not path:
        return {}
    module, converted = load_converted(path)
    if not isinstance(module.config, VideoQFormerConfig):
        tree = fit_params(converted, params["video_qformer"], source=path, reinit=QFORMER_VISION_KV)
        return {"video_qformer": tree}
    want = tuple(params["frame_position"].shape)  # [F, D]
    pos = np.asarray(converted["frame_position_embedding"])
    if pos.shape[0] < want[0] or pos.shape[1] != want[1]:
        raise ValueError(
            f"{path}: frame positions {pos.shape} cannot serve {want[0]} frames of "
            f"{want[1]}-wide tokens (frames_per_clip <= {pos.shape[0]})"
        )
    tree = fit_params(converted["qformer"], params["video_qformer"], source=path)
    return {"video_qformer": tree, "frame_position": pos[: want[0]]}


def load_video_encoder(config: Any, params: Any) -> Any:
    """``params`` with :func:`video_qformer_parts` put in, on the params' own shardings
    (phase 1's start; ``VADLLaMA.load_pretrained``)."""
    from absl import logging

    from vau_jax.methods.base import put_parts

    parts = video_qformer_parts(config, params)
    pos = parts.pop("frame_position", None)
    out = put_parts(params, parts)
    if pos is not None:  # a leaf, not a subtree
        old = params["frame_position"]
        out = {**out, "frame_position": jax.device_put(np.asarray(pos, old.dtype), old.sharding)}
        logging.info("loaded pretrained frame positions %s", tuple(pos.shape))
    return out


def phase3_llm(config: Any) -> tuple[tuple[Any, Any], Any]:
    """``((module, params), tokenizer)`` of the converted ``paper_checkpoints.llm`` (phase 3's
    frozen LLaMA, with the tokenizer the conversion kept beside it)."""
    from vau_jax.convert.checkpoint import load_converted, load_converted_tokenizer

    path = str(config.paper_checkpoints.get("llm", "") or "")
    if not path:
        raise FileNotFoundError("config.paper_checkpoints.llm is not set (phase 3's LLM)")
    tok = load_converted_tokenizer(path)
    if tok is None:
        raise FileNotFoundError(f"{path}: no tokenizer.json / tokenizer.model beside the LLM")
    return load_converted(path), tok


def caption_conversations(videos: Any, question: str) -> list[tuple[int, list[dict[str, str]]]]:
    """Phase 3's caption data from the dataset's UCA captions (``config.phase3.captions ==
    "uca"``; the paper mixes WebVid captions, §3.2 Phase 3): ``(index, conversation)`` per
    *normal* train video with captions (video-level labels only decide which: no anomaly
    timing reaches the LLM), the answer its caption sentences in order."""
    out = []
    for i, v in enumerate(videos):
        caps = tuple(getattr(v, "captions", ()) or ())
        if v.is_anomalous or not caps:
            continue
        answer = " ".join(str(sentence).strip() for _, _, sentence in caps if str(sentence).strip())
        if answer:
            conv = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            out.append((i, conv))
    return out


def abstract_vador_config(config: Any) -> VADorConfig:
    """The paper preset's VADor from the registry names of the config (no checkpoint read):
    the video Q-Former on the image Q-Former's query tokens, AP and LTC."""
    from vau_jax.methods.vadllama.method import vador_config

    image = registry.get_config(config.image_qformer)
    return vador_config(
        config,
        registry.get_config(config.video_qformer),
        image.hidden_size,
        image.num_query_tokens,
        config.frames_per_clip,
    )


def paper_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size parameter trees of the paper preset under ``jax.eval_shape`` (no memory):
    the EVA-ViT-g image encoder, the image Q-Former and the VADor (video Q-Former on
    Q-Former-wide query tokens, AP, LTC). Leaves keep their logical axis names."""
    vcfg = abstract_vador_config(config)
    tok = jnp.zeros((1, 2, vcfg.frames_per_clip * vcfg.tokens_per_frame, vcfg.vision_width))
    vador = jax.eval_shape(lambda: VADor(vcfg).init(jax.random.key(0), tok, jnp.ones((1, 2), bool)))
    return {
        "vision": registry.abstract_params(config.vision_encoder),
        "image_qformer": registry.abstract_params(config.image_qformer),
        "vador": vador["params"],
    }
