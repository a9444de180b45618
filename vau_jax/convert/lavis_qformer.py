"""LAVIS ``Qformer.py`` BERT key layout <-> Flax :class:`~vau_jax.models.qformer.QFormer`.

LLaMA-VID (``model.vlm_att_encoder.bert.*``) and Video-LLaMA (``video_Qformer.bert.*``) keep
their Q-Formers as LAVIS ``BertLMHeadModel`` modules (``cls = None``), whose state dicts use
BERT's names where HF's ``Blip2QFormerModel`` has its own. The table (``{i}`` a layer, ``X``
``attention`` or ``crossattention``; a Flax ``kernel`` is the transpose of a torch
``Linear.weight``)::

    bert.embeddings.word_embeddings.weight      embeddings/word_embeddings/embedding
    bert.embeddings.position_embeddings.weight  embeddings/position_embeddings/embedding
    bert.embeddings.LayerNorm.{weight,bias}     layernorm/{scale,bias}
    bert.encoder.layer.{i}.X.self.{query,key,value}.{weight,bias}
                                                encoder/layer_{i}/X/attention/{query,key,value}/*
    bert.encoder.layer.{i}.X.output.dense.*     encoder/layer_{i}/X/output/dense/*
    bert.encoder.layer.{i}.X.output.LayerNorm.* encoder/layer_{i}/X/output/LayerNorm/*
    bert.encoder.layer.{i}.intermediate[_query].dense.*    encoder/layer_{i}/intermediate[_query]/dense/*
    bert.encoder.layer.{i}.output[_query].{dense,LayerNorm}.*  encoder/layer_{i}/output[_query]/...

The learned queries live outside the BERT module in both (``model.vlm_att_query``,
``video_query_tokens``): the caller names that key. ``bert.embeddings.position_ids`` (a
buffer) is skipped. Video-LLaMA sets the text embeddings and the text feed-forward blocks
(``intermediate`` / ``output``) to ``None``: its checkpoints have none, and neither does a
``text_input=False`` :class:`QFormerConfig`.

Verified against the published code (read through the code index, not run: neither
project installs here): LLaMA-VID ``llamavid/model/llamavid_arch.py`` (``init_bert``:
``BertLMHeadModelQF.from_pretrained("bert-base-uncased")`` with ``cross_attention_freq=2``,
``resize_token_embeddings(len(tokenizer))`` after adding ``[DEC]``, ``cls = None``; the
``bert.embeddings.position_ids`` special case) and Video-LLaMA
``video_llama/models/video_llama.py`` (``init_video_Qformer``: 2 layers,
``cross_attention_freq=1``, embeddings and text FFN set to ``None``). The sub-module names
(``attention.self.query``, ``crossattention.output.LayerNorm``, ``intermediate_query``,
``output_query``) are those of LAVIS's ``Qformer.py``, which both copy; that file itself was
not in the index, so they are BERT's names as HF ``BertModel`` (the base LAVIS extends) and
the HF BLIP-2 conversion script's rename table use them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from vau_jax.convert.common import CheckpointMismatchError, abstract_params, flatten
from vau_jax.models.qformer import QFormerConfig, dummy_inputs, module_from_config

_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}
#: Buffers of a LAVIS BERT state dict that are not parameters.
BUFFERS = ("bert.embeddings.position_ids",)


def lavis_name(flax_key: str) -> tuple[str, bool]:
    """Flax path inside a :class:`QFormer` (not ``query_tokens``) -> ``(LAVIS key after the
    module prefix, transpose?)``."""
    parts = flax_key.split("/")
    leaf = parts[-1]
    if parts[0] == "layernorm":
        path = ["bert", "embeddings", "LayerNorm"]
    elif parts[0] == "embeddings":
        path = ["bert", *parts[:-1]]
    elif parts[0] == "encoder":
        m = re.fullmatch(r"layer_(\d+)", parts[1])
        if m is None:
            raise KeyError(f"no LAVIS name for {flax_key!r}")
        rest = parts[2:-1]
        if rest[0] in ("attention", "crossattention") and rest[1] == "attention":
            rest = [rest[0], "self", *rest[2:]]  # BERT's BertSelfAttention is `.self`
        path = ["bert", "encoder", "layer", m.group(1), *rest]
    else:
        raise KeyError(f"no LAVIS name for {flax_key!r}")
    return ".".join(path) + "." + _LEAF[leaf], leaf == "kernel"


def _template(cfg: QFormerConfig) -> dict[str, Any]:
    args, kwargs = dummy_inputs(cfg)
    return flatten(abstract_params(module_from_config(cfg), *args, **kwargs))


def qformer_from_lavis(
    state_dict: Mapping[str, np.ndarray],
    cfg: QFormerConfig,
    *,
    prefix: str,
    query_key: str,
    source: str = "checkpoint",
) -> tuple[dict[str, np.ndarray], set[str]]:
    """The Q-Former's flat Flax values out of a LAVIS state dict.

    Args:
      state_dict: numpy tensors; the Q-Former's are ``prefix + "bert.…"``.
      cfg: the Q-Former config the values must fit.
      prefix: e.g. ``"model.vlm_att_encoder."`` (LLaMA-VID), ``"video_Qformer."``.
      query_key: the learned queries ``[1, Nq, D]`` (e.g. ``"model.vlm_att_query"``).
      source: named in errors.
    Returns:
      ``({flax_path: array}, used keys)``; the caller assembles and checks leftovers.
    Raises:
      CheckpointMismatchError: naming every missing key and every shape mismatch (torch
        layout) at once.
    """
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    problems: list[str] = []
    for fkey, leaf in _template(cfg).items():
        if fkey == "query_tokens":
            key, transpose = query_key, False
        else:
            name, transpose = lavis_name(fkey)
            key = prefix + name
        want = tuple(leaf.shape)[::-1] if transpose else tuple(leaf.shape)
        if key not in state_dict:
            problems.append(f"missing key {key!r} (expected shape {want})")
            continue
        arr = np.asarray(state_dict[key])
        if tuple(arr.shape) != want:
            problems.append(
                f"shape mismatch for {key!r}: model expects {want}, checkpoint has {arr.shape}"
            )
            continue
        used.add(key)
        out[fkey] = arr.T if transpose else arr
    used.update(prefix + b for b in BUFFERS if prefix + b in state_dict)
    if problems:
        raise CheckpointMismatchError(
            f"{source}: the Q-Former does not fit:\n  " + "\n  ".join(problems[:20])
        )
    return out, used


def qformer_to_lavis(
    flat: Mapping[str, Any], *, prefix: str, query_key: str
) -> dict[str, np.ndarray]:
    """Inverse of :func:`qformer_from_lavis`: flat Flax Q-Former values -> LAVIS keys."""
    out: dict[str, np.ndarray] = {}
    for fkey, value in flat.items():
        arr = np.asarray(value)
        if fkey == "query_tokens":
            out[query_key] = arr
            continue
        name, transpose = lavis_name(fkey)
        out[prefix + name] = np.ascontiguousarray(arr.T) if transpose else arr
    return out


def config_from_lavis(
    state_dict: Mapping[str, np.ndarray],
    *,
    prefix: str,
    query_key: str,
    num_attention_heads: int | None = None,
    **fields: Any,
) -> QFormerConfig:
    """A :class:`QFormerConfig` read off the tensor shapes (LAVIS checkpoints carry no
    Q-Former config): width, layers, cross-attention frequency, FFN width, vision width,
    queries, and the text embeddings' vocabulary / positions when present. Heads default to
    BERT's ``hidden / 64``; ``fields`` override anything (e.g. ``layer_norm_eps``)."""
    layer = re.compile(re.escape(prefix) + r"bert\.encoder\.layer\.(\d+)\.(\w+)\.")
    layers: dict[int, set[str]] = {}
    for key in state_dict:
        m = layer.match(key)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not layers:
        raise CheckpointMismatchError(f"no {prefix}bert.encoder.layer.* tensors in the checkpoint")
    n = max(layers) + 1
    cross = sorted(i for i, subs in layers.items() if "crossattention" in subs)
    if not cross or cross[0] != 0:
        raise CheckpointMismatchError(f"{prefix}: layer 0 has no cross-attention")
    freq = cross[1] - cross[0] if len(cross) > 1 else n
    if cross != list(range(0, n, freq)):
        raise CheckpointMismatchError(f"{prefix}: cross-attention layers {cross} are not periodic")
    ln = np.asarray(state_dict[prefix + "bert.embeddings.LayerNorm.weight"])
    hidden = int(ln.shape[0])
    inter = state_dict[prefix + "bert.encoder.layer.0.intermediate_query.dense.weight"]
    kv = state_dict[prefix + "bert.encoder.layer.0.crossattention.self.key.weight"]
    word = state_dict.get(prefix + "bert.embeddings.word_embeddings.weight")
    pos = state_dict.get(prefix + "bert.embeddings.position_embeddings.weight")
    text = word is not None
    kw: dict[str, Any] = dict(
        hidden_size=hidden,
        num_hidden_layers=n,
        num_attention_heads=num_attention_heads or max(1, hidden // 64),
        intermediate_size=int(np.shape(inter)[0]),
        cross_attention_frequency=freq,
        encoder_hidden_size=int(np.shape(kv)[1]),
        num_query_tokens=int(np.shape(state_dict[query_key])[1]),
        text_input=text,
        hf_model_type="instructblip_qformer" if text else "blip_2_qformer",
    )
    if text:
        kw.update(vocab_size=int(np.shape(word)[0]), max_position_embeddings=int(np.shape(pos)[0]))
    kw.update(fields)
    return QFormerConfig(**kw)
