"""VA-GPT data on SynthVAD: frozen-encoder features (cached) and the instruction examples.

Per video (cached once per split, encoder checkpoint and config as ``.npz`` in the data dir):

* ``cls`` ``[Tmax, Dc]``: the tiny CLIP's class token (of the frames as the tower was trained
  to see them: pixels or background-subtracted, ``FrozenClip.prepare_frames``) of every frame (standardised) — TETG's
  input ``z``;
* ``visual`` ``[S, N, Dc]``: the CLIP patch tokens (standardised) of ``S`` frames sampled
  uniformly over the video — what SETS selects from and the LLaMA-VID tokens pool;
* ``dino`` ``[S, N, Dd]``: the frozen DINOv2 patch embeddings of the same frames (SETS's
  inter-frame L1 distance);
* ground truth: ``labels [Tmax]``, ``n_frames``, ``fps``, ``anomaly_type``, ``video_id``,
  ``intervals [4, 2]`` seconds (``-1`` padded), ``sample_index [S]``.

Examples are 4-option multiple-choice questions (:func:`vau_jax.data.instruct.multiple_choice`)
whose human turn is ``<video>`` + (TETG's sentence) + the lettered options; the answer is the
correct option line ("B. A person running from 2.0s to 4.5s").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.data import synthvad
from vau_jax.data.chat import tokenize_chat
from vau_jax.data.instruct import MCQuestion, VideoFacts, human_turn, multiple_choice
from vau_jax.models import registry
from vau_jax.models.vit import VisionTransformer

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _standardise(x: jax.Array) -> jax.Array:
    x = x - x.mean(-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + 1e-6)


@dataclasses.dataclass
class PatchEncoder:
    """The frozen DINOv2 patch encoder of SETS (tiny: seeded random weights, see README)."""

    model: VisionTransformer
    params: Any
    key: str

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, 3]`` -> patch embeddings ``[N, g*g, D]`` float16 (no CLS)."""
        return np.asarray(_dino_apply(self.model, self.params, jnp.asarray(frames)), np.float16)


def _dino_apply(model: VisionTransformer, params: Any, frames: jax.Array) -> jax.Array:
    x = (frames.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    h = model.apply({"params": params}, x)["last_hidden_state"]
    return h[:, 1 + model.config.num_register_tokens :]


_dino_apply = jax.jit(_dino_apply, static_argnums=0)


def make_patch_encoder(config: Any) -> PatchEncoder:
    """The tiny preset's DINOv2: the registry preset on the CLIP frame size with patches that
    give ``config.patch_encoder_grid`` per side, initialised from ``patch_encoder_seed``."""
    c = config
    size = int(c.synthvad.height)
    cfg = dataclasses.replace(
        registry.get_config(c.patch_encoder),
        image_size=size,
        patch_size=size // int(c.patch_encoder_grid),
    )
    model = VisionTransformer(cfg)
    dummy = jnp.zeros((1, size, size, 3), jnp.float32)
    params = nn.unbox(model.init(jax.random.key(int(c.patch_encoder_seed)), dummy)["params"])
    key = f"{c.patch_encoder}/{size}/{cfg.patch_size}/seed{c.patch_encoder_seed}"
    return PatchEncoder(model, params, key)


def sample_frames(n_frames: int, count: int) -> np.ndarray:
    """``count`` frame indices spread uniformly over ``[0, n_frames)`` (int32, ascending)."""
    return np.round(np.linspace(0, n_frames - 1, count)).astype(np.int32)


def split_features(
    config: Any, clip: Any, dino: PatchEncoder, split: str, num_videos: int
) -> dict[str, np.ndarray]:
    """The cached per-video features of a SynthVAD split (see the module docstring)."""
    synth = synthvad.SynthConfig(**dict(config.synthvad))
    s = int(config.frames_per_video)
    key = hashlib.sha1(
        json.dumps(
            [
                split,
                num_videos,
                dataclasses.asdict(synth),
                os.path.basename(clip.path),
                dino.key,
                s,
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    path = os.path.join(config.data_dir, f"vagpt_features_{split}_{key}.npz")
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    from vau_jax.methods.clip_pretrain import normalize_pixels

    @jax.jit
    def clip_tokens(params: Any, frames: jax.Array) -> jax.Array:
        h = clip.vision_apply(params, normalize_pixels(frames))["last_hidden_state"]
        return _standardise(h.astype(jnp.float32))  # [N, 1 + g*g, D]

    videos = [synthvad.render_split_video(split, i, synth) for i in range(num_videos)]
    tmax = max(v.num_frames for v in videos)
    out: dict[str, Any] = {
        "labels": np.zeros((num_videos, tmax), np.uint8),
        "intervals": np.full((num_videos, 4, 2), -1.0, np.float32),
        "sample_index": np.zeros((num_videos, s), np.int32),
    }
    cls = visual = patches = None
    prepare = getattr(clip, "prepare_frames", lambda frames: frames)  # what the tower saw
    for i, v in enumerate(videos):
        seen = prepare(v.frames)
        tok = np.concatenate(
            [
                np.asarray(clip_tokens(clip.params, jnp.asarray(seen[a : a + 128])))
                for a in range(0, v.num_frames, 128)
            ]
        )
        idx = sample_frames(v.num_frames, s)
        d = dino(v.frames[idx])
        if cls is None:
            cls = np.zeros((num_videos, tmax, tok.shape[-1]), np.float16)
            visual = np.zeros((num_videos, s, tok.shape[1] - 1, tok.shape[-1]), np.float16)
            patches = np.zeros((num_videos, *d.shape), np.float16)
        cls[i, : v.num_frames] = tok[:, 0]
        visual[i] = tok[idx, 1:]
        patches[i] = d
        out["labels"][i, : v.num_frames] = v.labels
        iv = np.asarray(v.intervals, np.float32).reshape(-1, 2)[:4]
        out["intervals"][i, : len(iv)] = iv
        out["sample_index"][i] = idx
    out.update(
        cls=cls,
        visual=visual,
        dino=patches,
        n_frames=np.array([v.num_frames for v in videos], np.int32),
        fps=np.array([v.fps for v in videos], np.float32),
        anomaly_type=np.array([v.anomaly_type for v in videos]),
        video_id=np.array([v.video_id for v in videos]),
    )
    os.makedirs(config.data_dir, exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def video_features(
    clip: Any,
    dino: PatchEncoder,
    frames: np.ndarray,
    fps: float,
    frames_per_video: int,
    chunk: int = 128,
) -> dict[str, np.ndarray]:
    """The features of one decoded video, computed like :func:`split_features` does per video.

    A one-video "split" without ground truth, so the method's split code applies unchanged
    (e.g. ``TETGRun.probs``): the CLIP class token of every frame (of what the tower was
    trained to see, ``clip.prepare_frames`` when it has one), CLIP patch tokens and DINOv2
    patch embeddings of ``frames_per_video`` uniformly sampled frames; float16 as cached.

    Args:
      clip: the frozen CLIP (``vision_apply``, ``params``, optional ``prepare_frames``).
      dino: the frozen patch encoder of SETS.
      frames: uint8 ``[T, H, W, 3]`` of the whole video from its start, at ``fps``, on the
        encoders' frame size.
      fps: frames per second of ``frames``.
      frames_per_video: ``S``, the number of sampled frames.
      chunk: frames per CLIP call (memory bound; the class tokens are kept, patch tokens only
        of the sampled frames).

    Returns:
      ``cls [1, T, Dc]``, ``visual [1, S, N, Dc]``, ``dino [1, S, N, Dd]`` (float16),
      ``sample_index [1, S]`` int32, ``n_frames [1]`` int32, ``fps [1]`` float32.
    """
    from vau_jax.methods.clip_pretrain import normalize_pixels

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be uint8 [T>0, H, W, 3], got {frames.dtype} {frames.shape}")

    @jax.jit
    def clip_tokens(params: Any, x: jax.Array) -> jax.Array:
        h = clip.vision_apply(params, normalize_pixels(x))["last_hidden_state"]
        return _standardise(h.astype(jnp.float32))  # [n, 1 + g*g, D]

    t = len(frames)
    idx = sample_frames(t, int(frames_per_video))
    seen = getattr(clip, "prepare_frames", lambda f: f)(frames)  # what the tower saw
    cls, sampled = [], {}
    for a in range(0, t, chunk):
        tok = np.asarray(clip_tokens(clip.params, jnp.asarray(seen[a : a + chunk])))
        cls.append(tok[:, 0].astype(np.float16))
        for j in np.flatnonzero((idx >= a) & (idx < a + chunk)):
            sampled[int(j)] = tok[idx[j] - a, 1:].astype(np.float16)
    visual = np.stack([sampled[j] for j in range(len(idx))])  # [S, N, Dc]
    return {
        "cls": np.concatenate(cls)[None],
        "visual": visual[None],
        "dino": dino(frames[idx]).astype(np.float16)[None],
        "sample_index": idx[None],
        "n_frames": np.array([t], np.int32),
        "fps": np.array([fps], np.float32),
    }


def facts(feats: dict[str, np.ndarray], i: int) -> VideoFacts:
    """The :class:`VideoFacts` of video ``i`` of a feature split (enough for MC questions)."""
    iv = feats["intervals"][i]
    iv = iv[iv[:, 0] >= 0]
    return VideoFacts(
        video_id=str(feats["video_id"][i]),
        duration=float(feats["n_frames"][i]) / float(feats["fps"][i]),
        anomaly_type=str(feats["anomaly_type"][i]),
        intervals=tuple((float(a), float(b)) for a, b in iv),
    )


def questions(feats: dict[str, np.ndarray], i: int, count: int) -> list[MCQuestion]:
    """``count`` MC questions of video ``i`` (different distractors and option orders),
    seeded by the video id and the question number."""
    f = facts(feats, i)
    base = zlib.crc32(f.video_id.encode())
    return [multiple_choice(f, synthvad.ANOMALY_TYPES, seed=base * 16 + q) for q in range(count)]


def human_text(question: MCQuestion, tetg_sentence: str | None) -> str:
    """The human turn: the video marker, TETG's sentence (when used) and the options."""
    return human_turn(question.prompt(), tetg_sentence)


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
) -> dict[str, np.ndarray]:
    """One tokenised VA-GPT row, shared by training, evaluation and the ``explain`` CLI.

    Args:
      human: the human turn (``<video>`` marker, TETG's sentence, the lettered prompt).
      query: the Q-Former's instruction text (the question).
      answer: the assistant's line; ``None`` -> a left-padded generation prompt.
      video: index of the video's features (``visual``/``dino``) in its split.
      max_length: padded length ``S`` (default ``config.max_length``); a longer row raises a
        ``ValueError`` naming ``source``.

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
    ex["query_ids"], ex["query_mask"] = encode_query(tok, query, int(config.max_query_length))
    ex["video"] = np.int32(video)
    return ex


def training_example(
    tok: Any,
    config: Any,
    question: MCQuestion,
    tetg_sentence: str | None,
    video: int,
    num_video_tokens: int,
) -> dict[str, np.ndarray]:
    """One tokenised training example (answer = the correct option line)."""
    return chat_row(
        tok,
        config,
        human_text(question, tetg_sentence),
        question.question,
        question.conversation()[1]["value"],
        video,
        num_video_tokens,
        source=f"{question.video_id} (MC training example)",
    )


def stack_rows(
    rows: list[dict[str, np.ndarray]], multiple: int = 16, min_length: int = 0
) -> dict[str, np.ndarray]:
    """Stacks rows of one padding side and cuts the all-padding columns.

    The kept length is the longest row rounded up to ``multiple`` (few distinct shapes under
    jit), at least ``min_length``. Exact: padded positions are masked out of attention, and
    positions count only real tokens, so cutting them changes no logit of a real token.
    """
    b = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    full = b["input_ids"].shape[1]
    n = int(b["attention_mask"].sum(1).max())
    length = min(full, max(int(min_length), -(-n // multiple) * multiple))
    # Left-padded rows all end on a real token; right-padded ones only when none is cut.
    left = bool(b["attention_mask"][:, -1].all())
    for k in ("input_ids", "attention_mask", "loss_mask", "video_mask"):
        b[k] = b[k][:, full - length :] if left else b[k][:, :length]
    return b


def split_options(rows: list[dict[str, np.ndarray]], source: str) -> dict[str, Any]:
    """Splits the full rows of one question's options (:func:`chat_row` with each answer line,
    right-padded) into their shared prefix and per-option continuations.

    Returns ``prefix_ids``, ``video_mask`` ``[P]`` (everything before the first answer token,
    identical in every row), ``query_ids``, ``query_mask``, ``video``, and per option
    ``cont_ids``, ``score`` (1-D, the rest of the row; ``score`` = its answer tokens).
    """
    starts = [int(np.argmax(r["loss_mask"])) for r in rows]
    p = starts[0]
    if not all(r["loss_mask"].any() for r in rows) or any(s != p for s in starts):
        raise ValueError(f"{source}: the option rows do not share one prompt")
    for r in rows[1:]:
        if not np.array_equal(r["input_ids"][:p], rows[0]["input_ids"][:p]):
            raise ValueError(f"{source}: the option rows do not share one prompt")
    ends = [int(r["attention_mask"].sum()) for r in rows]
    r0 = rows[0]
    return {
        "prefix_ids": r0["input_ids"][:p],
        "video_mask": r0["video_mask"][:p],
        "query_ids": r0["query_ids"],
        "query_mask": r0["query_mask"],
        "video": r0["video"],
        "cont_ids": [r["input_ids"][p:e] for r, e in zip(rows, ends)],
        "score": [r["loss_mask"][p:e] for r, e in zip(rows, ends)],
    }


def pack_options(
    splits: list[dict[str, Any]], prefix_len: int, cont_len: int, pad_id: int
) -> dict[str, np.ndarray]:
    """Batches :func:`split_options` outputs: prefixes left-padded to ``prefix_len``
    (``prefix_ids``, ``prefix_mask``, ``video_mask`` ``[B, P]``), continuations right-padded
    to ``cont_len`` (``cont_ids``, ``cont_mask``, ``score_mask`` ``[B, O, C]``), plus
    ``query_ids``, ``query_mask`` ``[B, Lq]`` and ``video [B]``."""
    b, o = len(splits), len(splits[0]["cont_ids"])
    out = {
        "prefix_ids": np.full((b, prefix_len), pad_id, np.int32),
        "prefix_mask": np.zeros((b, prefix_len), bool),
        "video_mask": np.zeros((b, prefix_len), bool),
        "cont_ids": np.full((b, o, cont_len), pad_id, np.int32),
        "cont_mask": np.zeros((b, o, cont_len), bool),
        "score_mask": np.zeros((b, o, cont_len), bool),
    }
    for i, sp in enumerate(splits):
        p = len(sp["prefix_ids"])
        out["prefix_ids"][i, prefix_len - p :] = sp["prefix_ids"]
        out["prefix_mask"][i, prefix_len - p :] = True
        out["video_mask"][i, prefix_len - p :] = sp["video_mask"]
        for j, (ids, score) in enumerate(zip(sp["cont_ids"], sp["score"])):
            out["cont_ids"][i, j, : len(ids)] = ids
            out["cont_mask"][i, j, : len(ids)] = True
            out["score_mask"][i, j, : len(ids)] = score
    for k in ("query_ids", "query_mask", "video"):
        out[k] = np.stack([sp[k] for sp in splits])
    return out


class AttachVisual(grain.transforms.Map):
    """Adds the example's video features ``visual [S, N, Dc]`` and ``dino [S, N, Dd]``
    (float32) looked up by its ``video`` index, so examples stay small in the source."""

    def __init__(self, visual: np.ndarray, dino: np.ndarray):
        self.visual, self.dino = visual, dino

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        v = int(element["video"])
        return {
            **element,
            "visual": self.visual[v].astype(np.float32),
            "dino": self.dino[v].astype(np.float32),
        }
