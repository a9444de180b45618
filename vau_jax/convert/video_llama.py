"""Video-LLaMA checkpoints (LAVIS ``.pth``) <-> :class:`~vau_jax.models.qformer.VideoQFormer`.

Video-LLaMA (``DAMO-NLP-SG/Video-LLaMA-Series``, e.g. ``finetune-vicuna7b-v2.pth``) saves
LAVIS runner checkpoints: ``{"model": state_dict, ...}`` holding only the trainable tensors
and the buffers (its ``_save_checkpoint`` drops frozen parameters), read through
:mod:`vau_jax.convert.torch_checkpoint` (``torch.load(weights_only=True)``). The video
Q-Former's tensors (VAD-LLaMA's VE video branch)::

    video_frame_position_embedding.weight   [32, 768]   frame_position_embedding
    video_query_tokens                      [1, 32, 768] qformer/query_tokens
    video_Qformer.bert.*                    (LAVIS BERT) qformer/*  (vau_jax.convert.lavis_qformer)

Everything else (``llama_proj``, the audio branch, ``*.position_ids`` buffers, the frozen
image Q-Former when present) is not read: VAD-LLaMA trains its own adaptor, and the image
Q-Former + EVA come from BLIP-2 (the ``image_qformer`` / ``vision`` roles). The sizes are
read off the tensors (no config travels with the file): 2 layers, cross-attention in every
layer over the image Q-Former's 768-wide queries, 32 video queries, no text embeddings and no
text feed-forward blocks (``init_video_Qformer`` sets them to ``None``).

Verified against ``video_llama/models/video_llama.py`` of ``DAMO-NLP-SG/Video-LLaMA`` (read
through the code index): ``init_video_Qformer``, ``video_frame_position_embedding =
nn.Embedding(max_frame_pos=32, 768)``, ``encode_videoQformer_visual`` (frame positions added
to each frame's 32 image-query states, frames concatenated, the video Q-Former's queries
attend to all of them). No published ``.pth`` could be downloaded here: the layout is tested
by round trip and against a PyTorch re-implementation of that forward written in the test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from vau_jax.convert import lavis_qformer
from vau_jax.convert.common import (
    CheckpointMismatchError,
    Params,
    abstract_params,
    assemble,
    flatten,
)
from vau_jax.models.qformer import VideoQFormer, VideoQFormerConfig, dummy_inputs

QFORMER_PREFIX = "video_Qformer."
QUERY_KEY = "video_query_tokens"
POSITION_KEY = "video_frame_position_embedding.weight"


def config_from_video_llama(state_dict: Mapping[str, np.ndarray]) -> VideoQFormerConfig:
    """The video Q-Former's config, read off the tensor shapes."""
    if POSITION_KEY not in state_dict:
        raise CheckpointMismatchError(
            f"no {POSITION_KEY!r}: not a Video-LLaMA checkpoint with a video Q-Former"
        )
    q = lavis_qformer.config_from_lavis(state_dict, prefix=QFORMER_PREFIX, query_key=QUERY_KEY)
    pos = np.shape(state_dict[POSITION_KEY])
    if pos[1] != q.encoder_hidden_size:
        raise CheckpointMismatchError(
            f"{POSITION_KEY} is {pos[1]} wide but the video Q-Former reads "
            f"{q.encoder_hidden_size}-wide tokens"
        )
    return VideoQFormerConfig(qformer=q, max_frames=int(pos[0]))


def params_from_video_llama(
    state_dict: Mapping[str, np.ndarray], cfg: VideoQFormerConfig, *, source: str = "checkpoint"
) -> Params:
    """Video-LLaMA state dict (numpy) -> nested :class:`VideoQFormer` params (keys and shapes
    checked; the tensors of other modules are ignored)."""
    values, _ = lavis_qformer.qformer_from_lavis(
        state_dict, cfg.qformer, prefix=QFORMER_PREFIX, query_key=QUERY_KEY, source=source
    )
    extra = sorted(
        k
        for k in state_dict
        if k.startswith(QFORMER_PREFIX + "bert.")
        and k[len(QFORMER_PREFIX) :] not in lavis_qformer.BUFFERS
        and k
        not in {
            QFORMER_PREFIX + lavis_qformer.lavis_name(f)[0] for f in values if f != "query_tokens"
        }
    )
    if extra:
        raise CheckpointMismatchError(
            f"{source}: video Q-Former tensors the model has no place for: {extra[:8]}"
        )
    pos = np.asarray(state_dict[POSITION_KEY])
    if pos.shape != (cfg.max_frames, cfg.qformer.encoder_hidden_size):
        raise CheckpointMismatchError(f"{source}: {POSITION_KEY} has shape {pos.shape}")
    flat = {f"qformer/{k}": v for k, v in values.items()}
    flat["frame_position_embedding"] = pos
    args, kwargs = dummy_inputs(cfg)
    return assemble(abstract_params(VideoQFormer(cfg), *args, **kwargs), flat, source=source)


def params_to_video_llama(params: Params, cfg: VideoQFormerConfig) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_video_llama`."""
    flat = {k: np.asarray(v) for k, v in flatten(dict(params)).items()}
    q = {k[len("qformer/") :]: v for k, v in flat.items() if k.startswith("qformer/")}
    out = lavis_qformer.qformer_to_lavis(q, prefix=QFORMER_PREFIX, query_key=QUERY_KEY)
    out[POSITION_KEY] = flat["frame_position_embedding"]
    return out


def _checkpoint_file(path: str) -> str:
    if os.path.isfile(path):
        return path
    names = sorted(n for n in os.listdir(path) if n.endswith((".pth", ".bin", ".pt")))
    if len(names) != 1:
        raise FileNotFoundError(
            f"{path}: expected exactly one Video-LLaMA .pth file, found {names or 'none'}"
        )
    return os.path.join(path, names[0])


def load_video_qformer(path: str) -> tuple[VideoQFormer, Params]:
    """``(VideoQFormer, params)`` of a Video-LLaMA ``.pth`` (or a folder holding one)."""
    from vau_jax.convert.torch_checkpoint import read_state_dict

    fpath = _checkpoint_file(path)
    keep = (QFORMER_PREFIX, QUERY_KEY, POSITION_KEY)
    state_dict = read_state_dict(fpath, lambda k: k.startswith(keep))
    cfg = config_from_video_llama(state_dict)
    return VideoQFormer(cfg), params_from_video_llama(state_dict, cfg, source=fpath)
