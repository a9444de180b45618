"""LLaMA-VID checkpoints (``LlavaLlamaAttForCausalLM``) <-> :class:`~vau_jax.models.vlm.VideoLLM`.

A LLaMA-VID release (e.g. ``YanweiLi/llama-vid-7b-full-224-video-fps-1``) is one LLaVA-style
folder: ``config.json`` (``model_type: llava``: the LLaMA fields plus ``mm_hidden_size``,
``mm_projector_type``, ``bert_type``, ``num_query``, ``compress_type``) and
``pytorch_model-*.bin`` shards with ``pytorch_model.bin.index.json`` (read through
:mod:`vau_jax.convert.torch_checkpoint`, ``torch.load(weights_only=True)``; ``*.safetensors``
when a folder has them). One state dict holds Vicuna, the text-conditioned Q-Former and the
projectors; the table (``X.w`` = ``X.weight``, transposed into a Flax ``kernel``)::

    model.vlm_att_query                        [1, 32, 768]  qformer/query_tokens
    model.vlm_att_encoder.bert.*               (LAVIS BERT)  qformer/*  (vau_jax.convert.lavis_qformer)
    model.vlm_att_ln.{weight,bias}             [1408]        qformer_ln/{scale,bias}
    model.vlm_att_projector.{w,bias}           [1408, 768]   query_proj/{kernel,bias}
    model.vlm_att_key_projector.{w,bias}       [1408, 1408]  key_proj/{kernel,bias}
    model.vlm_att_val_projector.{w,bias}       [4096, 1408]  context_proj/linear/{kernel,bias}
    model.mm_projector.{0,2}.{w,bias}          mlp2x_gelu    content_proj/{fc1,fc2}/{kernel,bias}
    model.mm_projector.{w,bias}                linear        content_proj/linear/{kernel,bias}
    model.embed_tokens / model.layers.* / model.norm / lm_head    llm/* (vau_jax.convert.hf_llama)

Skipped: ``model.vision_tower.*`` (the EVA-ViT-g tower, when a release carries it: the
``vision`` role converts the same frozen LAVIS ``eva_vit_g`` weights from the HF BLIP-2 /
InstructBLIP vision model, whose ``post_layernorm`` LLaMA-VID does not apply), the
``bert.embeddings.position_ids`` buffer and ``rotary_emb.inv_freq``. Anything else the table
does not name is an error. LLaMA-VID's Q-Former sizes are read off the tensors (it builds
BERT-base from ``bert-base-uncased``: 12 layers, cross-attention every 2nd, vocabulary 30,523
after ``[DEC]``; ``bert_type`` ``qformer_pretrain`` reads 1408-wide tokens).

What was verified and what not. Key names, module structure and the forward pass are taken
from ``llamavid/model/llamavid_arch.py`` and ``language_model/llava_llama_vid.py`` of
``dvlab-research/LLaMA-VID`` (read through the code index): ``initialize_attention_modules``
(the ``vlm_att_*`` modules, ``get_w(weights, 'vlm_att_encoder')``, the literal key
``'model.vlm_att_query'``, ``pytorch_model.bin.index.json``), ``vlm_attention`` /
``token_generation`` (the math ``VideoLLM.visual_embeds`` reproduces) and the
``LlavaAttLlamaModel`` nesting under ``model.``. ``model.mm_projector.{0,2}`` is LLaVA's
``mlp2x_gelu`` ``nn.Sequential`` (``multimodal_projector/builder.py`` was not in the index).
No published checkpoint could be downloaded here: the layout is tested by round trip
(convert -> export -> the same state dict, bit-exact) and against a PyTorch re-implementation
of ``vlm_attention`` + ``token_generation`` written in the test from that code, not against
a real release.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging

from vau_jax.convert import hf_llama, lavis_qformer
from vau_jax.convert.common import (
    CheckpointMismatchError,
    Params,
    abstract_params,
    assemble,
    check_no_leftovers,
    flatten,
    read_hf_config,
)
from vau_jax.models.vlm import VideoLLM, VLMConfig, dummy_inputs

QFORMER_PREFIX = "model.vlm_att_encoder."
QUERY_KEY = "model.vlm_att_query"
MODEL_TYPES = ("llava",)

#: ours (Flax module) <- LLaMA-VID module (``model.<name>.{weight,bias}``), single Linears.
_LINEARS = {
    "query_proj": "model.vlm_att_projector",
    "key_proj": "model.vlm_att_key_projector",
    "context_proj/linear": "model.vlm_att_val_projector",
}
_LINEAR_LEAVES = (("kernel", "weight"), ("bias", "bias"))
_MULTIMODAL = ("model.vlm_att_", "model.mm_projector", "model.vision_tower.")


def _skipped(key: str) -> bool:
    return key.startswith("model.vision_tower.") or key.endswith("rotary_emb.inv_freq")


def _content_layout(state_dict: Mapping[str, np.ndarray]) -> dict[str, str]:
    """ours -> LLaMA-VID module of the content projector (LLaVA's ``mm_projector``)."""
    if "model.mm_projector.weight" in state_dict:
        return {"content_proj/linear": "model.mm_projector"}
    idx = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("model.mm_projector.")})
    if idx != [0, 2]:
        raise CheckpointMismatchError(
            f"model.mm_projector has Linear layers {idx}; supported: 'linear' and 'mlp2x_gelu' "
            "([0, 2])"
        )
    return {"content_proj/fc1": "model.mm_projector.0", "content_proj/fc2": "model.mm_projector.2"}


def config_from_llamavid(
    state_dict: Mapping[str, np.ndarray], hf_config: Mapping[str, Any]
) -> VLMConfig:
    """The :class:`VLMConfig` of a LLaMA-VID checkpoint: the LLaMA from ``config.json``, the
    Q-Former and projector sizes from the tensors.

    Raises ``ValueError`` for LLaMA-VID variants the model does not implement: a
    ``raw`` BERT instead of the Q-Former, a ``vlm_att_bert_proj`` (vision width != 1408), or
    content tokens other than the mean (``compress_type`` ``grid:N``).
    """
    bert_type = str(hf_config.get("bert_type", "qformer_pretrain"))
    compress = hf_config.get("compress_type", "mean")
    if "qformer" not in bert_type:
        raise ValueError(f"bert_type {bert_type!r}: only the Q-Former variants are supported")
    if compress is not None and "mean" not in str(compress):
        raise ValueError(f"compress_type {compress!r}: only 'mean' content tokens are supported")
    if any(k.startswith("model.vlm_att_bert_proj.") for k in state_dict):
        raise ValueError("vlm_att_bert_proj (vision width != 1408) is not supported")
    llm = hf_llama.config_from_hf(hf_config)
    qformer = lavis_qformer.config_from_lavis(
        state_dict, prefix=QFORMER_PREFIX, query_key=QUERY_KEY
    )
    content = _content_layout(state_dict)
    hidden = 0
    if "content_proj/fc1" in content:
        hidden = int(np.shape(state_dict["model.mm_projector.0.weight"])[0])
    return VLMConfig(
        llm=llm,
        qformer=qformer,
        vision_width=int(qformer.encoder_hidden_size),
        projector_hidden=hidden,
        context_hidden=0,
        key_proj=True,
        qformer_ln="model.vlm_att_ln.weight" in state_dict,
    )


def params_from_llamavid(
    state_dict: Mapping[str, np.ndarray], cfg: VLMConfig, *, source: str = "checkpoint"
) -> Params:
    """LLaMA-VID state dict (numpy) -> nested :class:`VideoLLM` params, every key and shape
    checked (errors name the key and both shapes; leftover tensors are an error)."""
    flat: dict[str, np.ndarray] = {}
    used: set[str] = set()
    q, q_used = lavis_qformer.qformer_from_lavis(
        state_dict, cfg.qformer, prefix=QFORMER_PREFIX, query_key=QUERY_KEY, source=source
    )
    flat.update({f"qformer/{k}": v for k, v in q.items()})
    used |= q_used
    linears = {**_LINEARS, **_content_layout(state_dict)}
    module = VideoLLM(cfg)
    args, kwargs = dummy_inputs(cfg)
    template = abstract_params(module, *args, **kwargs)
    shapes = {k: tuple(v.shape) for k, v in flatten(template).items()}
    pairs = [(f"{o}/{a}", f"{t}.{b}") for o, t in linears.items() for a, b in _LINEAR_LEAVES]
    if cfg.qformer_ln:
        pairs += [("qformer_ln/scale", "model.vlm_att_ln.weight")]
        pairs += [("qformer_ln/bias", "model.vlm_att_ln.bias")]
    problems = []
    for ours, theirs in pairs:
        if theirs not in state_dict:
            problems.append(f"missing key {theirs!r}")
            continue
        arr = np.asarray(state_dict[theirs])
        arr = arr.T if ours.endswith("/kernel") else arr
        if ours not in shapes or arr.shape != shapes[ours]:
            want = shapes.get(ours, ())[::-1] if ours.endswith("/kernel") else shapes.get(ours)
            problems.append(
                f"shape mismatch for {theirs!r}: model expects {want}, checkpoint has "
                f"{np.shape(state_dict[theirs])}"
            )
            continue
        flat[ours] = arr
        used.add(theirs)
    if problems:
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit the model:\n  " + "\n  ".join(problems)
        )
    llm_sd = {
        k: v
        for k, v in state_dict.items()
        if not k.startswith(_MULTIMODAL)
        and not _skipped(k)
        and k.startswith(("model.", "lm_head."))
    }
    llm = hf_llama.params_from_hf(llm_sd, cfg.llm, source=source)
    flat.update({f"llm/{k}": v for k, v in flatten(llm).items()})
    used |= set(llm_sd)
    check_no_leftovers(
        state_dict,
        used,
        source=source,
        ignore=lambda k: _skipped(k) or k.endswith(lavis_qformer.BUFFERS),
    )
    skipped = sorted(k for k in state_dict if k.startswith("model.vision_tower."))
    if skipped:
        logging.info("%s: %d vision-tower tensors skipped (the vision role)", source, len(skipped))
    return assemble(template, flat, source=source)


def params_to_llamavid(params: Params, cfg: VLMConfig) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_llamavid`: ``VideoLLM`` params -> LLaMA-VID keys."""
    flat = {k: np.asarray(v) for k, v in flatten(dict(params)).items()}
    q = {k[len("qformer/") :]: v for k, v in flat.items() if k.startswith("qformer/")}
    out = lavis_qformer.qformer_to_lavis(q, prefix=QFORMER_PREFIX, query_key=QUERY_KEY)
    if cfg.qformer_ln:
        out["model.vlm_att_ln.weight"] = flat["qformer_ln/scale"]
        out["model.vlm_att_ln.bias"] = flat["qformer_ln/bias"]
    content = (
        {"content_proj/fc1": "model.mm_projector.0", "content_proj/fc2": "model.mm_projector.2"}
        if cfg.projector_hidden
        else {"content_proj/linear": "model.mm_projector"}
    )
    for ours, theirs in {**_LINEARS, **content}.items():
        out[f"{theirs}.weight"] = np.ascontiguousarray(flat[f"{ours}/kernel"].T)
        out[f"{theirs}.bias"] = flat[f"{ours}/bias"]
    llm = {k[len("llm/") :]: v for k, v in flat.items() if k.startswith("llm/")}
    from vau_jax.convert.common import unflatten

    out.update(hf_llama.params_to_hf(unflatten(llm), cfg.llm))
    return out


def config_to_llamavid(cfg: VLMConfig) -> dict[str, Any]:
    """A LLaMA-VID ``config.json`` dict for ``cfg`` (the LLaMA fields + the multimodal ones)."""
    if not (cfg.key_proj and cfg.context_hidden == 0):
        raise ValueError("not a LLaMA-VID layout (key_proj and a Linear context projector)")
    out = hf_llama.config_to_hf(cfg.llm)
    out.update(
        model_type="llava",
        architectures=["LlavaLlamaAttForCausalLM"],
        mm_hidden_size=cfg.vision_width,
        mm_projector_type="mlp2x_gelu" if cfg.projector_hidden else "linear",
        bert_type="qformer_pretrain" if cfg.qformer_ln else "qformer",
        num_query=cfg.qformer.num_query_tokens,
        compress_type="mean",
        mm_vision_select_feature="patch",
    )
    return out


def load_llamavid(path: str) -> tuple[VideoLLM, Params]:
    """``(VideoLLM, params)`` of a LLaMA-VID release folder (``config.json`` + ``.bin`` shards
    or ``*.safetensors``); the vision tower's tensors are not read."""
    from vau_jax.convert.torch_checkpoint import read_any

    hf_config = read_hf_config(path)
    if hf_config.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"{path}/config.json: model_type {hf_config.get('model_type')!r} is not LLaMA-VID's "
            f"{MODEL_TYPES}"
        )
    state_dict = read_any(path, lambda k: not k.startswith("model.vision_tower."))
    cfg = config_from_llamavid(state_dict, hf_config)
    params = params_from_llamavid(state_dict, cfg, source=os.path.abspath(path))
    return VideoLLM(cfg), params
