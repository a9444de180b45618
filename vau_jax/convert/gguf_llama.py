"""llama-architecture GGUF files (llama.cpp) -> ``(LlamaForCausalLM, params, tokenizer)``.

Every tensor is dequantised to float32 with ``gguf.quants.dequantize``. GGUF stores torch
layouts (``[out, in]``) under llama.cpp names; the table below maps them to HF names and the
HF converter (:mod:`vau_jax.convert.hf_llama`) does the rest. llama.cpp's converter permutes
the rows of ``attn_q``/``attn_k`` within each head so that RoPE rotates adjacent pairs
``(2i, 2i+1)``; HF weights rotate halves ``(i, i + Dh/2)``. :func:`unpermute_rows` restores the
HF order (row ``(h, i, t)`` of the file is row ``(h, t, i)`` of HF, ``t`` in {0, 1}).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vau_jax.convert import hf_llama
from vau_jax.convert.common import CheckpointMismatchError
from vau_jax.data.tokenizer import HFTokenizer, from_gguf_metadata, open_gguf
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM

# llama.cpp tensor name (after "blk.N.") -> HF name (after "model.layers.N.").
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undoes llama.cpp's Q/K row permutation: ``w [H*Dh, ...]`` (weight or bias)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def config_from_gguf(meta: dict[str, Any], *, source: str = "gguf") -> LlamaConfig:
    """``LlamaConfig`` from the ``llama.*`` metadata keys."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{source}: general.architecture is {arch!r}; only 'llama' is supported")

    def need(key: str) -> Any:
        if key not in meta:
            raise ValueError(f"{source}: metadata key {key!r} is missing")
        return meta[key]

    hidden = int(need("llama.embedding_length"))
    heads = int(need("llama.attention.head_count"))
    kv_heads = int(meta.get("llama.attention.head_count_kv", heads))
    head_dim = int(
        meta.get(
            "llama.attention.key_length", meta.get("llama.rope.dimension_count", hidden // heads)
        )
    )
    if meta.get("llama.rope.scaling.type") not in (None, "none"):
        raise ValueError(
            f"{source}: RoPE scaling {meta['llama.rope.scaling.type']!r} is not supported"
        )
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = int(meta.get("llama.vocab_size", len(tokens) if tokens is not None else 0))

    def opt(key: str) -> int | None:
        return None if meta.get(key) is None else int(meta[key])

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(need("llama.feed_forward_length")),
        num_hidden_layers=int(need("llama.block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(meta.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
        max_position_embeddings=int(meta.get("llama.context_length", 4096)),
        tie_word_embeddings=False,  # decided from the tensors in load_gguf
        bos_token_id=opt("tokenizer.ggml.bos_token_id"),
        eos_token_id=opt("tokenizer.ggml.eos_token_id"),
        pad_token_id=opt("tokenizer.ggml.padding_token_id"),
    )


def hf_state_dict_from_gguf(
    tensors: dict[str, np.ndarray], cfg: LlamaConfig, *, source: str = "gguf"
) -> dict[str, np.ndarray]:
    """Renames dequantised GGUF tensors to HF names and un-permutes Q/K rows."""
    out: dict[str, np.ndarray] = {}
    for name, w in tensors.items():
        base, _, leaf = name.rpartition(".")  # leaf: weight / bias
        if base.startswith("blk."):
            _, idx, short = base.split(".", 2)
            if short not in _LAYER_NAMES:
                raise CheckpointMismatchError(f"{source}: unknown tensor {name!r}")
            if short == "attn_q":
                w = unpermute_rows(w, cfg.num_attention_heads)
            elif short == "attn_k":
                w = unpermute_rows(w, cfg.num_key_value_heads)
            out[f"model.layers.{idx}.{_LAYER_NAMES[short]}.{leaf}"] = w
        elif base in _GLOBAL_NAMES:
            out[f"{_GLOBAL_NAMES[base]}.{leaf}"] = w
        else:
            raise CheckpointMismatchError(
                f"{source}: unsupported tensor {name!r} (e.g. rope_freqs of scaled-RoPE models)"
            )
    return out


def read_gguf(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(metadata, {tensor name: float32 array in torch layout})`` of a GGUF file.

    The file is memory-mapped and read by a bounded ``gguf.GGUFReader``
    (:func:`vau_jax.data.tokenizer.open_gguf`): a count, length or dims field that claims more
    than the file holds fails at once, never loops or allocates. Dequantised tensors are as
    large as the file's blocks imply.

    Raises:
      CheckpointMismatchError: ``"{path}: not a readable GGUF file: ..."`` or naming the
        tensor that cannot be dequantised.
    """
    import gguf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such GGUF file")
    meta, reader = open_gguf(path)
    tensors = {}
    for t in reader.tensors:
        try:
            w = gguf.quants.dequantize(t.data, t.tensor_type)
            expected = tuple(int(d) for d in reversed(t.shape))  # GGUF: dims innermost first
            tensors[t.name] = np.asarray(w, np.float32).reshape(expected)
        except NotImplementedError:
            raise CheckpointMismatchError(
                f"{path}: tensor {t.name!r} has type {t.tensor_type.name}, which the gguf "
                "package cannot dequantise"
            ) from None
        except Exception as e:  # blocks that do not fill the claimed dims, ...
            raise CheckpointMismatchError(
                f"{path}: tensor {t.name!r} ({t.tensor_type.name}, dims {list(t.shape)}) "
                f"cannot be read: {type(e).__name__}: {e}"
            ) from None
    return meta, tensors


def load_gguf(
    path: str, *, scan_layers: bool = False
) -> tuple[LlamaForCausalLM, dict[str, Any], HFTokenizer]:
    """Loads a llama GGUF file -> ``(module, params, tokenizer)`` (params float32 numpy).

    Raises:
      CheckpointMismatchError: naming the file, when it cannot be read (:func:`read_gguf`),
        its metadata does not describe a llama model that its tensors fit, or its embedded
        tokenizer cannot be built.
    """
    import dataclasses

    meta, tensors = read_gguf(path)
    try:
        cfg = config_from_gguf(meta, source=path)
        tied = "output.weight" not in tensors
        cfg = dataclasses.replace(
            cfg,
            tie_word_embeddings=tied,
            vocab_size=int(tensors["token_embd.weight"].shape[0])
            if "token_embd.weight" in tensors
            else cfg.vocab_size,
            attention_bias="blk.0.attn_q.bias" in tensors,
            scan_layers=scan_layers,
        )
        _check_sizes(cfg, tensors, path)
        state_dict = hf_state_dict_from_gguf(tensors, cfg, source=path)
        params = hf_llama.params_from_hf(state_dict, cfg, source=path)
        tokenizer = from_gguf_metadata(meta, source=path)
        module = hf_llama.module_from_config(cfg)
    except CheckpointMismatchError:
        raise
    except Exception as e:  # metadata values of the wrong type / range, a broken tokenizer
        reason = str(e).removeprefix(f"{path}: ")
        raise CheckpointMismatchError(
            f"{path}: metadata does not describe a usable llama model: {type(e).__name__}: {reason}"
        ) from None
    return module, params, tokenizer


def _check_sizes(cfg: LlamaConfig, tensors: dict[str, np.ndarray], path: str) -> None:
    """Refuse metadata sizes larger than the file's tensors before a model is built from them
    (a layer count of 10^12 would otherwise build 10^12 layer modules)."""
    total = sum(int(t.size) for t in tensors.values())
    for name in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads"):
        value = getattr(cfg, name)
        if not 0 < value <= max(total, 1):
            raise CheckpointMismatchError(
                f"{path}: metadata {name}={value} does not fit the file's {total} tensor elements"
            )
