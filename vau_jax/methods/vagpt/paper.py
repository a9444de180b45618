"""VA-GPT's paper preset: LLaMA-VID's checkpoint roles, the converted video LLM and
tokenizers the method starts from, and the full-size trees under ``jax.eval_shape``.

VA-GPT is built on LLaMA-VID (DESIGN §5), so its roles are LLaMA-VID's
(``config.paper_checkpoints.<role>`` = a folder written by the printed conversion command):

* ``vision``: EVA-ViT-g/14, the frozen LAVIS ``eva_vit_g`` tower LLaMA-VID loads
  (``--vision_tower ./model_zoo/LAVIS/eva_vit_g.pth``), converted from the HF BLIP-2 vision
  model (the same frozen weights, HF's conversion of LAVIS). Its class token (after
  ``post_layernorm``) is TETG's input; the visual tokens are the **raw** patch tokens of the
  last block, as LLaMA-VID's ``EVAVisionTowerLavis`` returns them (no final norm):
  :func:`paper_encoders`;
* ``patch_encoder``: DINOv2 ViT-L/14 for SETS (VA-GPT §3, "DINOv2 is used as a feature
  extractor");
* ``vlm``: a LLaMA-VID release (``vau_jax.convert.llamavid``): Vicuna-7B, the text-
  conditioned InstructBLIP Q-Former (``vlm_att_encoder`` + ``vlm_att_query``), its input
  LayerNorm (``vlm_att_ln``) and the context / content projectors, with the Q-Former's BERT
  instruction tokenizer kept in ``qformer_tokenizer/``.

Sizes come from the converted checkpoints, never from the registry names of the config
(those only describe the full-size trees of :func:`vagpt_abstract_params`):
:func:`load_paper_llm` (``VAGPT._setup_llm``), :func:`paper_vlm_config` (``VAGPT.prepare``)
and :func:`paper_parts` (``VAGPT.load_pretrained``, stage 1's start: every part of the video
LLM, checked leaf by leaf; nothing is re-initialised).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.methods.paper import Source
from vau_jax.models import registry
from vau_jax.models.heads.tetg import TETG, TETGConfig
from vau_jax.models.llama import LlamaConfig
from vau_jax.models.precision import vlm_policy
from vau_jax.models.vlm import VideoLLM, VLMConfig

#: checkpoint role -> source of its public weights.
SOURCES: dict[str, Source] = {
    "vision": Source(
        "Salesforce/blip2-opt-2.7b",
        "EVA-ViT-g/14 (vision_model.* of BLIP-2: LAVIS's frozen eva_vit_g, LLaMA-VID's tower)",
        loader="vau_jax.convert.hf_blip2_vision:load_full_model",
    ),
    "patch_encoder": Source("facebook/dinov2-large", "DINOv2 ViT-L/14 (SETS, frozen)"),
    "vlm": Source(
        "YanweiLi/llama-vid-7b-full-224-video-fps-1",
        "LLaMA-VID: Vicuna-7B + text-conditioned Q-Former + context/content projectors",
        loader="vau_jax.convert.llamavid:load_llamavid",
        include=("*.json", "*.bin", "*.safetensors", "tokenizer.model"),
        prepare="huggingface-cli download google-bert/bert-base-uncased tokenizer.json "
        "tokenizer_config.json vocab.txt --local-dir {hf}/qformer_tokenizer",
        note="the release is .bin shards, read with torch.load(weights_only=True) "
        "(pip install -e '.[convert]'); its Q-Former reads instructions with "
        "bert-base-uncased's tokenizer (LLaMA-VID init_bert; its added [DEC] is unused by the "
        "encoder), which the conversion keeps as qformer_tokenizer/",
    ),
}


def vagpt_vlm_config(config: Any) -> VLMConfig:
    """The paper's video LLM in LLaMA-VID's layout: Vicuna-7B behind its text-conditioned
    Q-Former (``config.qformer``) reading ``vision_encoder``-wide tokens (EVA: 1408) through
    ``vlm_att_ln``, a key projector, a Linear context projector and an ``mlp2x_gelu``
    content projector of width ``projector_hidden``, under the config's precision policy
    (:mod:`vau_jax.models.precision`)."""
    width = registry.get_config(config.vision_encoder).hidden_size
    qformer = dataclasses.replace(
        registry.get_config(config.qformer), text_input=True, encoder_hidden_size=width
    )
    vcfg = VLMConfig(
        llm=registry.get_config(config.llm_preset),
        qformer=qformer,
        vision_width=width,
        projector_hidden=int(config.projector_hidden),
        context_hidden=0,
        key_proj=True,
        qformer_ln=True,
    )
    return vlm_policy(config, vcfg)


def lvlm_abstract_params(config: Any) -> Any:
    """The boxed :class:`~vau_jax.models.vlm.VideoLLM` tree of :func:`vagpt_vlm_config`
    under ``jax.eval_shape`` (LLaMA-VID's layout; also T-VAU's frozen LVLM)."""
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
    return vlm["params"]


def vagpt_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size VA-GPT parameter trees under ``jax.eval_shape`` (no memory).

    Leaves stay boxed (``nn.LogicallyPartitioned``), so
    :func:`vau_jax.sharding.param_shardings` derives a ``NamedSharding`` for each. Keys (the
    checkpoint roles of ``config.paper_checkpoints`` map onto them):

    * ``vision``: the EVA-ViT-g/14 tower (``config.vision_encoder``; 985,897,344);
    * ``patch_encoder``: DINOv2 ViT-L/14 (``config.patch_encoder``; SETS distances);
    * ``vlm``: :class:`~vau_jax.models.vlm.VideoLLM` in LLaMA-VID's layout (Q-Former +
      ``qformer_ln`` + projectors + Vicuna-7B);
    * ``tetg``: the TETG MLP on the tower's **class token** (1408-wide for EVA, taken from
      ``last_hidden_state[:, 0]`` as in the tiny preset).
    """
    vcfg = vagpt_vlm_config(config)
    tetg_module = TETG(TETGConfig(hidden=tuple(config.tetg.hidden)))
    cls = jnp.zeros((1, vcfg.vision_width), jnp.float32)
    tetg = jax.eval_shape(lambda: tetg_module.init(jax.random.key(0), cls))
    return {
        "vision": registry.abstract_params(config.vision_encoder),
        "patch_encoder": registry.abstract_params(config.patch_encoder),
        "vlm": lvlm_abstract_params(config),
        "tetg": tetg["params"],
    }


# ------------------------------------------------------------- the converted checkpoints


def converted_role(config: Any, role: str, kind: type) -> tuple[str, Any]:
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
    else ``<paper_checkpoints.vlm>/qformer_tokenizer`` (kept by the conversion), else the
    converted folder itself."""
    explicit = str(config.get("qformer_tokenizer", "") or "")
    if explicit:
        return explicit
    folder = str(config.paper_checkpoints.vlm)
    sub = os.path.join(folder, "qformer_tokenizer")
    return sub if os.path.isdir(sub) else folder


def load_paper_llm(config: Any) -> tuple[LlamaConfig, Any, Any]:
    """``(llm_config, tokenizer, query_tokenizer)`` of the paper preset.

    ``llm_config``: the converted LLaMA-VID's LLM (``paper_checkpoints.vlm``; its sizes,
    vocabulary and special ids). ``tokenizer``: the ``tokenizer.json`` / ``tokenizer.model``
    saved beside it. ``query_tokenizer``: the Q-Former's instruction tokenizer
    (:func:`query_tokenizer_dir`), whose padding id defaults to the Q-Former's
    ``pad_token_id``. Each tokenizer must fit its model's vocabulary.

    Raises:
      FileNotFoundError / ValueError: naming the folder that lacks a tokenizer, holds the
        wrong model family, or pairs a tokenizer with a larger vocabulary than the model's.
    """
    from vau_jax.convert.checkpoint import load_converted_tokenizer
    from vau_jax.data.tokenizer import load_tokenizer

    path, vcfg = converted_role(config, "vlm", VLMConfig)
    tok = load_converted_tokenizer(path)
    if tok is None:
        raise FileNotFoundError(
            f"{path}: no tokenizer.json or tokenizer.model beside the converted LLaMA-VID; "
            "convert the release folder together with its tokenizer files (the conversion "
            "copies them) or copy them into this folder"
        )
    _check_vocab(tok, vcfg.llm.vocab_size, "LLM", path)
    q_dir = query_tokenizer_dir(config)
    try:
        query_tok = load_tokenizer(q_dir)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{q_dir}: no tokenizer.json for the Q-Former's instruction text (bert-base-uncased's, "
            "kept as qformer_tokenizer/); point --config.qformer_tokenizer at a folder or "
            "tokenizer.json of the Q-Former's vocabulary"
        ) from None
    _check_vocab(query_tok, vcfg.qformer.vocab_size, "Q-Former", q_dir)
    if query_tok.pad_id is None:
        query_tok.pad_id = int(vcfg.qformer.pad_token_id)
    return vcfg.llm, tok, query_tok


def paper_vlm_config(config: Any, vision_width: int) -> VLMConfig:
    """The converted video LLM's config (``paper_checkpoints.vlm``) without dropout (the
    training step is deterministic), checked against the ``vision`` tower's width.

    Raises ``ValueError`` when the tower's tokens are not as wide as those the checkpoint's
    Q-Former and projectors read (nothing is re-initialised to make them fit), or the
    Q-Former has fewer text positions than ``config.max_query_length``.
    """
    path, cfg = converted_role(config, "vlm", VLMConfig)
    if int(vision_width) != cfg.vision_width:
        raise ValueError(
            f"{path}: the video LLM reads {cfg.vision_width}-wide visual tokens but the vision "
            f"tower gives {vision_width}-wide ones (LLaMA-VID's is EVA-ViT-g, 1408)"
        )
    if cfg.qformer.max_position_embeddings < int(config.max_query_length):
        raise ValueError(
            f"{path}: {cfg.qformer.max_position_embeddings} text positions < "
            f"config.max_query_length={config.max_query_length}"
        )
    qformer = dataclasses.replace(cfg.qformer, hidden_dropout_prob=0.0)
    return vlm_policy(config, dataclasses.replace(cfg, qformer=qformer))


def paper_parts(config: Any, params: Any) -> dict[str, Any]:
    """Every top-level part of the video LLM (``qformer``, ``qformer_ln``, ``query_proj``,
    ``key_proj``, ``context_proj``, ``content_proj``, ``llm``) from the converted LLaMA-VID,
    laid over ``params`` by :func:`vau_jax.convert.fit.fit_params` (any shape difference
    raises naming the leaf; nothing is re-initialised)."""
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.convert.fit import fit_params
    from vau_jax.models.llama_layout import match_layer_layout

    path = str(config.paper_checkpoints.vlm)
    _, converted = load_converted(path)
    if "llm" in params:  # the converted blocks in the model's layout (scan_layers or not)
        converted = {**converted, "llm": match_layer_layout(converted["llm"], params["llm"])}
    return {
        part: fit_params(converted[part], params[part], source=f"{path} [{part}]")
        for part in params
    }


class _RenamedOutputs:
    """A frozen encoder whose outputs are cached under other names (``names``: the
    encoder's -> the store's); everything else is the wrapped encoder's."""

    def __init__(self, inner: Any, names: dict[str, str]):
        self.inner, self.names = inner, dict(names)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def key(self) -> str:
        return json.dumps({"encoder": json.loads(self.inner.key), "renamed": self.names})

    def __call__(self, frames: Any) -> dict[str, Any]:
        return {self.names.get(k, k): v for k, v in self.inner(frames).items()}


def eva_patches(path: str, batch_size: int = 32) -> Any:
    """The converted EVA tower at ``path`` as a frozen encoder of its **raw** patch tokens
    after the last block, before ``post_layernorm`` (``hidden_states[-1]``), cached as
    ``patches``: what LLaMA-VID's ``EVAVisionTowerLavis`` feeds ``vlm_attention``."""
    from vau_jax import encoders
    from vau_jax.convert.checkpoint import read_converted_config

    last = f"hidden_{int(read_converted_config(path).num_hidden_layers)}"
    raw = encoders.from_checkpoint(path, outputs=(last,), batch_size=batch_size)
    return _RenamedOutputs(raw, {last: "patches"})


def paper_encoders(config: Any) -> dict[str, Any]:
    """The frozen encoders of the three feature stores in the paper preset:

    * ``cls``: the EVA tower's class token of ``last_hidden_state`` (TETG's input);
    * ``visual``: the EVA tower's **raw** patch tokens after its last block, before
      ``post_layernorm`` (``hidden_states[-1]``, cached as ``patches``): what LLaMA-VID's
      ``EVAVisionTowerLavis`` feeds ``vlm_attention`` (its ``vlm_att_ln`` normalises them for
      the Q-Former; the key / content projectors read them raw);
    * ``dino``: DINOv2's patch tokens (SETS).
    """
    from vau_jax import encoders

    ck = config.paper_checkpoints
    vision = str(ck.vision)
    return {
        "cls": encoders.from_checkpoint(vision, outputs=("cls",), batch_size=32),
        "visual": eva_patches(vision),
        "dino": encoders.from_checkpoint(
            str(ck.patch_encoder), outputs=("patches",), batch_size=32
        ),
    }
