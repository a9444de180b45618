"""The base video LLM: a LLaMA-VID-style model pretrained on captions only (tiny presets).

VA-GPT is built on LLaMA-VID, a video LLM that already describes videos before VA-GPT's
stages teach it about anomalies; T-VAU keeps such an LVLM frozen. No such checkpoint exists
for the tiny presets, so this run builds one, in two cached steps:

1. the tiny LLaMA learns language from text alone (:mod:`vau_jax.methods.pretrain.text_llm`);
2. :class:`VideoPretrain` trains the video LLM (:class:`vau_jax.models.vlm.VideoLLM`: the
   text-conditioned Q-Former, the context / content projectors and that LLM) to caption
   videos of SynthVAD's **pretrain** split — "Describe this video." and "What happens from
   s to e?" answered with the videos' descriptions and caption segments, and (``base_llm.
   object_qa``) generic questions about the objects (which, is there a X, where, how it
   moves: :mod:`vau_jax.data.object_qa`): general video-QA skills, no anomaly question, no
   multiple choice.

The result (the whole ``VideoLLM`` params tree) is saved with orbax under
``<data_dir>/base_video_llm_<hash>/params`` and loaded by :func:`ensure_base_llm`. The same
module holds what every user of such a video LLM shares: the frozen encoders and frame specs
of its feature stores (:func:`make_encoders`, :func:`frame_specs`), per-split features
(:class:`SplitFeatures`), the Q-Former/LLM assembly (:func:`build_vlm`) and row building
(:func:`conversation_row`, :func:`chat_row`, :class:`AttachVisual`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn

from vau_jax.data.chat import tokenize_chat
from vau_jax.data.frames import FrameSpec
from vau_jax.methods.base import MethodBase, standardise
from vau_jax.models import registry
from vau_jax.models.vlm import VideoLLM, VLMConfig, lm_loss
from vau_jax.train.trainer import Stage


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
    """Adds the example's video features ``visual [S, N, Dc]`` and ``dino [S, N, Dd]``
    (float32) read by its ``video`` index from the split's feature stores (ArrayRecord)."""

    def __init__(self, feats: SplitFeatures):
        self.feats = feats

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        v = int(element["video"])
        return {
            **element,
            "visual": standardise(self.feats.visual[v]["patches"]),
            "dino": np.asarray(self.feats.dino[v]["patches"], np.float32),
        }


def attach_batch(batch: dict[str, np.ndarray], feats: SplitFeatures) -> dict[str, np.ndarray]:
    """A row batch with each row's ``visual`` / ``dino`` features added (``video`` indexes
    ``feats``)."""
    vids = [int(v) for v in batch["video"]]
    return {
        **batch,
        "visual": np.stack([standardise(feats.visual[v]["patches"]) for v in vids]),
        "dino": np.stack([np.asarray(feats.dino[v]["patches"], np.float32) for v in vids]),
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


def replay_rows(method: Any, num_rows: int, fraction: float) -> list[dict[str, np.ndarray]]:
    """``round(fraction * num_rows)`` text-only replay rows
    (:func:`vau_jax.methods.pretrain.text_llm.replay_conversations` of the config's
    ``base_llm.text_pretrain``), tokenized like ``method``'s video rows; their video index
    is 0 and they hold no video token. Conversations longer than ``max_length`` are skipped."""
    from vau_jax.data.chat import TooLongError
    from vau_jax.methods.pretrain.text_llm import replay_conversations

    c = method.config
    convs = replay_conversations(c.base_llm.text_pretrain, round(fraction * num_rows), int(c.seed))
    out = []
    for k, conv in enumerate(convs):
        try:
            out.append(
                conversation_row(
                    method.tok,
                    c,
                    conv,
                    0,
                    method.num_video_tokens,
                    f"text replay {k}",
                    getattr(method, "query_tok", None),
                )
            )
        except TooLongError:
            continue
    if convs:
        logging.info("text replay: %d text-only rows beside %d video rows", len(out), num_rows)
    return out


def tiny_llm(config: Any) -> tuple[Any, Any]:
    """``(tokenizer, LlamaConfig)`` of the tiny presets' LLM (the SynthVAD tokenizer)."""
    from vau_jax.methods.pretrain.clip import synthvad_tokenizer

    tok = synthvad_tokenizer(config.clip_pretrain)
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
    ``projector_hidden`` projectors and the LLM ``llm_cfg``."""
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
    return VideoLLM(
        VLMConfig(llm_cfg, qformer_cfg, int(vision_width), int(config.projector_hidden))
    )


def dummy_inputs(config: Any, num_patches: int, vision_width: int) -> tuple:
    """Inputs that initialise a :class:`VideoLLM` of this config (any values)."""
    nv = 2 * int(config.frames_per_video)
    ids = jnp.zeros((1, nv + 4), jnp.int32)
    video = jnp.arange(ids.shape[1])[None] < nv
    visual = jnp.zeros((1, int(config.frames_per_video), num_patches, vision_width))
    q = jnp.zeros((1, int(config.max_query_length)), jnp.int32)
    return ids, jnp.ones(ids.shape, bool), video, visual, q


# ------------------------------------------------------------------------ base pretraining

BASE_KEYS = (
    "clip_pretrain",
    "synthvad",
    "fps",
    "frame_size",
    "frames_per_video",
    "patch_encoder",
    "patch_encoder_grid",
    "patch_encoder_seed",
    "qformer",
    "projector_hidden",
    "max_query_length",
    "max_length",
    "chat_format",
    "system_prompt",
    "llm",
    "llm_preset",
    "base_llm",
    "data_dir",
    "feature_dtype",
)


def base_key_config(config: Any) -> Any:
    """The part of a VA-GPT config the base video LLM depends on (its cache key)."""
    import ml_collections

    return ml_collections.ConfigDict({k: config[k] for k in BASE_KEYS if k in config})


def base_dir(config: Any) -> str:
    """``<data_dir>/base_video_llm_<hash>``: where the base video LLM of ``config`` lives."""
    from vau_jax.methods.runner import pretrained_dir

    return pretrained_dir(base_key_config(config), "base_video_llm")


class VideoPretrain(MethodBase):
    """Caption pretraining of the video LLM on SynthVAD's pretrain split (module docstring).

    ``config`` is the VA-GPT config (encoders, Q-Former, LLM); ``config.base_llm`` holds this
    run's knobs: ``num_videos``, ``num_eval_videos``, ``steps``, ``batch_size``,
    ``optimizer``, ``text_pretrain`` (the text-only LLM pretraining config).
    """

    name = "video_pretrain"

    def __init__(self, config: Any, workdir: str = ""):
        super().__init__(config, workdir)
        self.feats: dict[str, SplitFeatures] = {}

    def prepare(self, inference: bool = False) -> None:
        from vau_jax.convert.checkpoint import load_converted
        from vau_jax.methods.pretrain.text_llm import ensure_text_llm

        c = self.config
        self.tok, self.llm_cfg = tiny_llm(c)
        _, self.text_llm = load_converted(ensure_text_llm(c.base_llm.text_pretrain))
        self.encoders = make_encoders(c, inference)
        self.specs = frame_specs(c)
        vis = self.encoders["visual"]
        self.vision_width = vis.width
        grid = vis.config.image_size // vis.config.patch_size
        self.num_patches = grid * grid
        self.model = build_vlm(c, self.llm_cfg, self.vision_width, self.tok.vocab_size)
        self.num_video_tokens = 2 * int(c.frames_per_video)
        if not inference:
            self._data()
        self.prepared = "inference" if inference else "train"

    def _data(self) -> None:
        from vau_jax.data.datasets import synthvad_dataset
        from vau_jax.data.features import FeatureStore
        from vau_jax.data.synthvad import SynthConfig

        c, b = self.config, self.config.base_llm
        n, n_eval = int(b.num_videos), int(b.num_eval_videos)
        videos = synthvad_dataset(
            c.data_dir, SynthConfig(**dict(c.synthvad)), 0, 0, num_pretrain=n + n_eval
        ).split("pretrain")
        root = os.path.join(c.data_dir, "features")
        sets = {}
        for name in ("visual", "dino"):
            store = FeatureStore(
                root,
                self.encoders[name],
                self.specs[name],
                dtype=str(c.feature_dtype),
                name=f"synthvad-video_llm-{name}",
            )
            sets[name] = store.ensure(videos, desc=f"base video LLM {name}")
        self.videos = {"train": videos[:n], "eval": videos[n:]}
        self.feats_all = SplitFeatures(cls=sets["visual"], **sets)

    def rows(self, split: str) -> list[dict[str, np.ndarray]]:
        """Caption conversations of the pretrain videos (generic: no anomaly question)."""
        from vau_jax.data import templates as T
        from vau_jax.data.caption_qa import SPAN_QUESTIONS
        from vau_jax.data.instruct import format_time
        from vau_jax.data.synthvad import from_record
        from vau_jax.data.synthvad.captions import uca_segments

        offset = 0 if split == "train" else len(self.videos["train"])
        out = []
        for i, v in enumerate(self.videos[split]):
            video = from_record(v.record())
            rng = np.random.default_rng([int(self.config.seed), offset + i])
            q = T.DESCRIBE_QUESTIONS[int(rng.integers(len(T.DESCRIBE_QUESTIONS)))]
            convs = [
                [
                    {"from": "human", "value": f"{T.VIDEO_MARKER}\n{q}"},
                    {"from": "gpt", "value": video.event_description},
                ]
            ]
            for s, e, sentence in uca_segments(video):
                span = SPAN_QUESTIONS[int(rng.integers(len(SPAN_QUESTIONS)))]
                span = span.format(start=format_time(s), end=format_time(e))
                convs.append(
                    [
                        {"from": "human", "value": f"{T.VIDEO_MARKER}\n{span}"},
                        {"from": "gpt", "value": sentence},
                    ]
                )
            if self.config.base_llm.get("object_qa", False):
                from vau_jax.data.object_qa import conversations as object_qa

                convs += object_qa(video, int(rng.integers(1 << 30)))
            for k, conv in enumerate(convs):
                out.append(
                    conversation_row(
                        self.tok,
                        self.config,
                        conv,
                        offset + i,
                        self.num_video_tokens,
                        f"{v.id} caption {k}",
                    )
                )
        if split == "train":
            out += replay_rows(self, len(out), float(self.config.base_llm.get("text_replay", 0.0)))
        return out

    def abstract_params(self) -> Any:
        args = dummy_inputs(self.config, self.num_patches, self.vision_width)
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), *args))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        args = dummy_inputs(self.config, self.num_patches, self.vision_width)
        return nn.unbox(self.model.init(rng, *args)["params"])

    def _loss(self, params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        logits = self.model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["video_mask"],
            batch["visual"],
            batch["query_ids"],
            batch["query_mask"],
        )["logits"]
        return lm_loss(logits, batch["input_ids"], batch["loss_mask"])

    def stages(self) -> list[Stage]:
        from vau_jax.data.pipeline import PipelineConfig, make_iterator
        from vau_jax.methods.base import put_parts

        b = self.config.base_llm
        pcfg = PipelineConfig(
            int(b.batch_size), seed=int(self.config.seed), num_epochs=None, read_threads=1
        )

        def data():
            return make_iterator(
                self.rows("train"), pcfg, transforms=[AttachVisual(self.feats_all)]
            )

        opt = dict(b.optimizer)
        return [
            Stage(
                "captions",
                int(b.steps),
                opt,
                self._loss,
                data,
                log_every=50,
                on_start=lambda p: put_parts(p, {"llm": self.text_llm}),
            )
        ]

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        """Caption loss and token accuracy on held-out pretrain videos."""
        from vau_jax.eval.scoring import stack_rows

        del workdir
        rows = self.rows("eval")
        loss_fn = jax.jit(self._loss)
        losses, accs, weights = [], [], []
        for s in range(0, len(rows), 16):
            chunk = rows[s : s + 16]
            b = attach_batch(
                stack_rows(chunk + [chunk[-1]] * (16 - len(chunk)), min_length=0), self.feats_all
            )
            loss, aux = loss_fn(params, {k: jnp.asarray(v) for k, v in b.items()}, None)
            losses.append(float(loss))
            accs.append(float(aux["token_accuracy"]))
            weights.append(len(chunk))
        w = np.asarray(weights, np.float64)
        return {
            "caption_loss": float(np.average(losses, weights=w)),
            "caption_token_accuracy": float(np.average(accs, weights=w)),
        }


def ensure_base_llm(config: Any) -> Any:
    """The base video LLM's params (host arrays) for a VA-GPT ``config``: text pretraining
    and caption pretraining run once when missing (resumable in ``<dir>.run``), then cached
    in ``<dir>/params``."""
    import orbax.checkpoint as ocp

    from vau_jax.methods.runner import run_method

    path = base_dir(config)
    params_dir = os.path.abspath(os.path.join(path, "params"))
    # One released checkpoint whatever the VA-GPT seed: the base model's own seed is
    # ``base_llm.seed`` (part of its cache key), not the seed of the run that asks for it.
    config = config.copy_and_resolve_references()
    config.seed = int(config.base_llm.get("seed", 0))
    method = VideoPretrain(config, path + ".run")
    if not os.path.isdir(params_dir):
        logging.info("no base video LLM at %s: pretraining it on captions", path)
        method.prepare()
        params, _ = run_method(method, config, path + ".run", "train_and_eval")
        if jax.process_index() == 0:
            tmp = params_dir + ".tmp"
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp)
            ckptr = ocp.StandardCheckpointer()
            ckptr.save(tmp, jax.device_get(params))
            ckptr.wait_until_finished()
            ckptr.close()
            os.replace(tmp, params_dir)
    else:
        method.prepare(inference=True)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nn.unbox(method.abstract_params())
    )
    return jax.device_get(ocp.StandardCheckpointer().restore(params_dir, target))
