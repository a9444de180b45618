"""VA-GPT's paper preset: checkpoint roles, the converted LLM / Q-Former / tokenizers the
method starts from, and the full-size trees under ``jax.eval_shape``.

Roles (``config.paper_checkpoints.<role>`` = a folder written by ``python -m vau_jax.convert``):
``vision`` (the frozen image encoder whose class and patch tokens the feature store
caches), ``patch_encoder`` (DINOv2-L/14 for SETS), ``qformer`` (the text-conditioned
InstructBLIP Q-Former, LLaMA-VID's context-token module) and ``llm`` (Vicuna-7B).

Sizes come from the converted checkpoints, never from the registry names of the config
(those only describe the full-size trees of :func:`vagpt_abstract_params`):

* :func:`load_paper_llm` (``VAGPT._setup_llm`` when ``config.llm == "paper"``): the LLM's
  config, its tokenizer (copied beside the weights by the conversion) and the Q-Former's
  instruction tokenizer (:func:`query_tokenizer_dir`);
* :func:`paper_qformer_config` (``VAGPT.prepare``): the converted Q-Former's config reading
  the ``vision`` tower's tokens;
* :func:`paper_parts` (``VAGPT.load_pretrained``, stage 1's start): the converted Q-Former
  and LLM weights as host subtrees of the video LLM's params.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.methods.paper import BIN_NOTE, Source
from vau_jax.models import registry
from vau_jax.models.heads.tetg import TETG, TETGConfig
from vau_jax.models.llama import LlamaConfig
from vau_jax.models.qformer import QFormerConfig
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
        "in stage 1; the conversion keeps qformer_tokenizer/ (its BERT instruction tokenizer)",
    ),
    "llm": Source(
        "lmsys/vicuna-7b-v1.5",
        "Vicuna-7B",
        note=BIN_NOTE + '; add "tokenizer.model" to --include (the conversion keeps it)',
    ),
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


# ------------------------------------------------------------- the converted checkpoints


def _converted(config: Any, role: str, kind: type) -> tuple[str, Any]:
    """``(folder, model config)`` of ``config.paper_checkpoints.<role>``, checked to be a
    ``kind`` checkpoint (``ValueError`` naming the folder otherwise)."""
    from vau_jax.convert.checkpoint import read_converted_config

    path = str(config.paper_checkpoints.get(role, "") or "")
    if not path:
        raise FileNotFoundError(f"config.paper_checkpoints.{role} is not set")
    cfg = read_converted_config(path)
    if not isinstance(cfg, kind):
        raise ValueError(
            f"{path}: paper_checkpoints.{role} holds a {type(cfg).__name__} checkpoint, "
            f"expected a {kind.__name__}"
        )
    return path, cfg


def _check_vocab(tok: Any, vocab_size: int, what: str, path: str) -> None:
    if int(tok.vocab_size) > int(vocab_size):
        raise ValueError(
            f"{path}: the {what} tokenizer has {tok.vocab_size} ids but the model's vocabulary "
            f"has {vocab_size}: they are not a pair"
        )


def query_tokenizer_dir(config: Any) -> str:
    """Where the Q-Former's instruction tokenizer is: ``config.qformer_tokenizer`` when set,
    else ``<paper_checkpoints.qformer>/qformer_tokenizer`` (InstructBLIP's processor folder,
    kept by the conversion), else the converted Q-Former folder itself."""
    explicit = str(config.get("qformer_tokenizer", "") or "")
    if explicit:
        return explicit
    folder = str(config.paper_checkpoints.qformer)
    sub = os.path.join(folder, "qformer_tokenizer")
    return sub if os.path.isdir(sub) else folder


def load_paper_llm(config: Any) -> tuple[LlamaConfig, Any, Any]:
    """``(llm_config, tokenizer, query_tokenizer)`` of the paper preset.

    ``llm_config``: the converted LLM's (``paper_checkpoints.llm``; its sizes, vocabulary and
    special ids). ``tokenizer``: the ``tokenizer.json`` / ``tokenizer.model`` saved beside it.
    ``query_tokenizer``: the Q-Former's instruction tokenizer (:func:`query_tokenizer_dir`),
    whose padding id defaults to the Q-Former's ``pad_token_id``. Each tokenizer must fit its
    model's vocabulary.

    Raises:
      FileNotFoundError / ValueError: naming the folder that lacks a tokenizer, holds the
        wrong model family, or pairs a tokenizer with a smaller vocabulary.
    """
    from vau_jax.convert.checkpoint import load_converted_tokenizer
    from vau_jax.data.tokenizer import load_tokenizer

    llm_path, llm_cfg = _converted(config, "llm", LlamaConfig)
    tok = load_converted_tokenizer(llm_path)
    if tok is None:
        raise FileNotFoundError(
            f"{llm_path}: no tokenizer.json or tokenizer.model beside the converted LLM; "
            "convert the HF folder together with its tokenizer files (the conversion copies "
            "them) or copy them into this folder"
        )
    _check_vocab(tok, llm_cfg.vocab_size, "LLM", llm_path)
    q_path, q_cfg = _converted(config, "qformer", QFormerConfig)
    q_dir = query_tokenizer_dir(config)
    try:
        query_tok = load_tokenizer(q_dir)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{q_dir}: no tokenizer.json for the Q-Former's instruction text (InstructBLIP "
            "keeps it in qformer_tokenizer/); point --config.qformer_tokenizer at a folder "
            "or tokenizer.json of the Q-Former's vocabulary"
        ) from None
    _check_vocab(query_tok, q_cfg.vocab_size, "Q-Former", q_dir)
    if query_tok.pad_id is None:
        query_tok.pad_id = int(q_cfg.pad_token_id)
    return llm_cfg, tok, query_tok


def paper_qformer_config(config: Any, vision_width: int) -> QFormerConfig:
    """The converted Q-Former's config (``paper_checkpoints.qformer``) reading
    ``vision_width``-wide tokens, without dropout (the training step is deterministic).

    Raises ``ValueError`` for a Q-Former without text input (the context token needs the
    instruction) or with fewer positions than ``config.max_query_length``.
    """
    path, cfg = _converted(config, "qformer", QFormerConfig)
    if not cfg.text_input:
        raise ValueError(
            f"{path}: this Q-Former has no text input; the context token needs a "
            "text-conditioned one (InstructBLIP's)"
        )
    if cfg.max_position_embeddings < int(config.max_query_length):
        raise ValueError(
            f"{path}: {cfg.max_position_embeddings} text positions < "
            f"config.max_query_length={config.max_query_length}"
        )
    return dataclasses.replace(cfg, encoder_hidden_size=int(vision_width), hidden_dropout_prob=0.0)


def paper_parts(config: Any, params: Any) -> dict[str, Any]:
    """``{"qformer": tree, "llm": tree}``: the converted Q-Former and LLM weights laid over
    the video LLM's ``params`` (:func:`vau_jax.convert.fit.fit_params`): the Q-Former's
    cross-attention key/value kernels keep their fresh values when the vision width differs
    from the checkpoint's (logged); any other difference raises naming the leaf."""
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.convert.fit import QFORMER_VISION_KV, fit_params

    parts = {}
    for role, reinit in (("qformer", QFORMER_VISION_KV), ("llm", ())):
        path = str(config.paper_checkpoints[role])
        _, converted = load_converted(path)
        parts[role] = fit_params(converted, params[role], source=path, reinit=reinit)
    return parts
