"""Frozen vision encoders for the feature store (:mod:`vau_jax.data.features`).

A :class:`FrozenEncoder` turns uint8 frames into the outputs a method caches, with a
``key`` that identifies the weights, the preprocessing and the outputs (the store's folder
key). It wraps any vision module of the model zoo loaded three ways:

* :func:`from_checkpoint`: a folder written by ``python -m vau_jax.convert`` (or a
  pretrained tiny encoder, saved the same way); the key hashes its files;
* :func:`from_registry`: a registry name with seeded random weights (tests, SETS's tiny
  DINOv2 stand-in);
* :func:`from_module`: a module + params already in memory, with a caller-given key.

Outputs (``outputs``, names of the cached arrays, each per frame):

* ``cls``: the class token of ``last_hidden_state`` ``[D]`` (before any post-LN for CLIP);
* ``patches``: the patch tokens of ``last_hidden_state`` (class and register tokens
  dropped) ``[N, D]``, average-pooled to a ``patch_pool × patch_pool`` grid when
  ``patch_pool > 0``;
* ``pooled``: ``pooler_output`` ``[D]`` (CLIP: post-LN class token; DINOv2: class token);
* ``embeds``: the projected image embedding ``[P]`` (CLIP towers with a projection);
* ``hidden_<i>``: the patch tokens of ``hidden_states[i]`` (``0`` = embeddings, ``i`` =
  after block ``i``), pooled like ``patches`` (T-VAU's multi-layer taps).

Pixels are normalised as the encoder's HF processor does: CLIP / EVA with the CLIP mean and
std, DINOv2 with the ImageNet ones. Frames whose size differs from the config's image size
use position-embedding interpolation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_OUTPUTS = ("cls", "patches", "pooled", "embeds")


def vision_config(module: Any) -> Any:
    """The :class:`~vau_jax.models.vit.ViTConfig` of a vision tower or a CLIP dual encoder."""
    cfg = module.config
    return getattr(cfg, "vision_config", cfg)


#: Compute dtypes a frozen encoder runs in.
COMPUTE_DTYPES = ("float32", "bfloat16")


def in_compute_dtype(module: Any, dtype: str) -> Any:
    """A vision tower (or a CLIP dual encoder, both towers) computing in ``dtype``; the same
    parameters apply."""
    cfg = module.config
    if hasattr(cfg, "vision_config"):
        if cfg.vision_config.dtype == dtype and cfg.text_config.dtype == dtype:
            return module
        cfg = dataclasses.replace(
            cfg,
            vision_config=dataclasses.replace(cfg.vision_config, dtype=dtype),
            text_config=dataclasses.replace(cfg.text_config, dtype=dtype),
        )
    elif cfg.dtype == dtype:
        return module
    else:
        cfg = dataclasses.replace(cfg, dtype=dtype)
    return module.clone(config=cfg)


def normalisation(module: Any) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """``(name, mean, std)`` of the module's HF image processor."""
    if vision_config(module).variant == "dinov2":
        return "imagenet", IMAGENET_MEAN, IMAGENET_STD
    return "clip", CLIP_MEAN, CLIP_STD


def _check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    out = tuple(outputs)
    if not out:
        raise ValueError("an encoder needs at least one output")
    for name in out:
        if name not in _OUTPUTS and not (name.startswith("hidden_") and name[7:].isdigit()):
            raise ValueError(f"unknown encoder output {name!r}; use {_OUTPUTS} or hidden_<layer>")
    return out


# Tokens per micro-batch step (2-core AVX2 EPYC, per-frame time by micro-batch: ViT-B/16 at
# 224^2 over 32 frames 442 / 419 / 363 ms at 32 / 16 / 8 frames per step; the tiny CLIP tower
# over 128 frames 0.63 / 0.57 / 0.52 / 0.57 ms at 128 / 64 / 32 / 16): ~2,000 tokens.
MICRO_BATCH_TOKENS = 2304


def auto_micro_batch(batch_size: int, tokens_per_frame: int) -> int:
    """The largest divisor of ``batch_size`` whose frames hold at most
    :data:`MICRO_BATCH_TOKENS` tokens (at least 1)."""
    cap = max(1, MICRO_BATCH_TOKENS // max(1, tokens_per_frame))
    return max(d for d in range(1, batch_size + 1) if batch_size % d == 0 and d <= cap)


def jit_micro_batched(run: Any, batch_size: int, micro_batch: int, tokens_per_frame: int) -> Any:
    """``jax.jit`` of ``run(*params, frames) -> dict`` that loops over micro-batches of the
    ``frames [batch_size, ...]`` axis (``lax.map``) inside the one compiled call.

    ``micro_batch`` must divide ``batch_size``; 0 picks :func:`auto_micro_batch`; equal to
    ``batch_size`` means no loop.
    """
    import jax

    mb = micro_batch or auto_micro_batch(batch_size, tokens_per_frame)
    if batch_size % mb:
        raise ValueError(f"micro_batch {mb} does not divide batch_size {batch_size}")
    if mb == batch_size:
        return jax.jit(run)

    def looped(*args: Any) -> dict[str, Any]:
        *params, frames = args
        chunks = frames.reshape(-1, mb, *frames.shape[1:])
        out = jax.lax.map(lambda f: run(*params, f), chunks)
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in out.items()}

    return jax.jit(looped)


def padded_call(fn: Any, batch_size: int, frames: np.ndarray, *params: Any) -> dict[str, Any]:
    """``fn(*params, frames)`` on a batch padded to ``batch_size`` (one compiled shape), the
    padded rows cut from every output.

    A full batch returns device arrays still computing. A partial one is cut on the host
    (numpy): slicing a device array by a Python ``n`` compiles one slice per distinct ``n``,
    which over a folder of videos (one partial tail each) cost more than the encoder.
    """
    n = len(frames)
    if n > batch_size:
        raise ValueError(f"{n} frames > batch_size {batch_size}")
    if n < batch_size:
        pad = np.zeros((batch_size - n, *frames.shape[1:]), np.uint8)
        frames = np.concatenate([frames, pad])
    out = fn(*params, frames)
    return {k: np.asarray(v)[:n] for k, v in out.items()} if n < batch_size else out


@dataclasses.dataclass
class FrozenEncoder:
    """A frozen vision module as the feature store's :class:`~vau_jax.data.features.Encoder`.

    Attributes:
      module: a ``VisionTransformer`` or a ``CLIPModel`` (its vision tower is used).
      params: its parameters.
      source: identity of the weights (checkpoint path + content hash, or registry name +
        seed).
      outputs: names of the cached arrays (module docstring).
      patch_pool: pooled grid side for ``patches`` / ``hidden_*`` (0 = all tokens).
      batch_size: frames per jitted call (the last batch is padded).
      micro_batch: frames per step of a sequential loop inside the call (a divisor of
        ``batch_size``; 0 = the largest divisor whose frames hold at most
        :data:`MICRO_BATCH_TOKENS` tokens). Activations of a few frames stay in cache: on a
        2-core AVX2 EPYC a ViT-B/16 over 32 frames at once ran 442 ms/frame, in steps of 8
        363 ms/frame.
      compute_dtype: ``None`` (default: the module's own, as configured), ``"float32"`` or
        ``"bfloat16"``: the tower's compute dtype (its weights stay as loaded; outputs are
        float32 either way). bf16 features are another store than float32 ones
        (:attr:`key`). On a CPU with AMX a ViT-B/16 runs about 2.3x faster in bf16 (README,
        *Benchmarks*); without bf16 units it is slower.
    """

    module: Any
    params: Any
    source: str
    outputs: tuple[str, ...] = ("cls",)
    patch_pool: int = 0
    batch_size: int = 32
    micro_batch: int = 0
    compute_dtype: str | None = None

    def __post_init__(self) -> None:
        self.outputs = _check_outputs(self.outputs)
        if self.compute_dtype is not None and self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute dtype {self.compute_dtype!r}: choose from {', '.join(COMPUTE_DTYPES)}"
            )
        self._fn = None

    @property
    def config(self) -> Any:
        """The vision tower's config."""
        return vision_config(self.module)

    @property
    def width(self) -> int:
        """Token width ``D``."""
        return int(self.config.hidden_size)

    @property
    def tokens_per_frame(self) -> int:
        """Tokens per frame of ``cls`` + ``patches`` (what VAD-LLaMA's clips stack)."""
        cfg = self.config
        grid = (cfg.image_size // cfg.patch_size) ** 2
        n = int("cls" in self.outputs)
        if "patches" in self.outputs:
            n += self.patch_pool**2 if self.patch_pool > 0 else grid
        return n

    @property
    def key(self) -> str:
        """Weights + preprocessing + outputs (the feature store's folder key)."""
        name, _, _ = normalisation(self.module)
        body = {
            "source": self.source,
            "outputs": list(self.outputs),
            "patch_pool": self.patch_pool,
            "normalisation": name,
        }
        if self.compute_dtype not in (None, "float32"):  # float32 stores keep their names
            body["compute_dtype"] = self.compute_dtype
        return json.dumps(body, sort_keys=True)

    def _build(self) -> Any:
        import jax
        import jax.numpy as jnp

        from vau_jax.models.clip_text import CLIPModel

        module, cfg = self.module, self.config
        if self.compute_dtype is not None:
            module = in_compute_dtype(module, self.compute_dtype)
        _, mean, std = normalisation(module)
        prefix = 1 + int(getattr(cfg, "num_register_tokens", 0))
        hidden = sorted({int(n[7:]) for n in self.outputs if n.startswith("hidden_")})
        pool, outputs = int(self.patch_pool), self.outputs
        is_clip = isinstance(module, CLIPModel)

        def grid(tokens: jax.Array) -> jax.Array:  # [n, N, D] patch tokens -> pooled
            if pool <= 0:
                return tokens
            n, k, d = tokens.shape
            g = int(round(k**0.5))
            if g * g != k or g % pool:
                raise ValueError(f"patch grid of {k} tokens is not a square divisible by {pool}")
            return (
                tokens.reshape(n, pool, g // pool, pool, g // pool, d)
                .mean((2, 4))
                .reshape(n, pool * pool, d)
            )

        def run(params: Any, frames: jax.Array) -> dict[str, jax.Array]:
            x = frames.astype(jnp.float32) / 255.0
            x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
            kw = {
                "output_hidden_states": bool(hidden),
                "interpolate_pos_encoding": x.shape[1] != cfg.image_size
                or x.shape[2] != cfg.image_size,
            }
            if is_clip:
                out = module.apply({"params": params}, x, method=CLIPModel.get_image_features, **kw)
                out = {**out, "image_embeds": out["pooler_output"]}
            else:
                out = module.apply({"params": params}, x, **kw)
            h = out["last_hidden_state"]
            feats: dict[str, jax.Array] = {}
            for name in outputs:
                if name == "cls":
                    feats[name] = h[:, 0]
                elif name == "patches":
                    feats[name] = grid(h[:, prefix:])
                elif name == "pooled":
                    if is_clip:
                        raise ValueError("'pooled' of a CLIP dual encoder: use 'embeds' or 'cls'")
                    feats[name] = out["pooler_output"]
                elif name == "embeds":
                    if "image_embeds" not in out:
                        raise ValueError("this vision tower has no projection ('embeds')")
                    feats[name] = out["image_embeds"]
                else:
                    feats[name] = grid(out["hidden_states"][int(name[7:])][:, prefix:])
            return {k: v.astype(jnp.float32) for k, v in feats.items()}

        return jit_micro_batched(run, self.batch_size, self.micro_batch, self.tokens_in_model)

    @property
    def tokens_in_model(self) -> int:
        """Tokens per frame inside the tower (class + registers + patches)."""
        cfg = self.config
        return 1 + int(getattr(cfg, "num_register_tokens", 0)) + cfg.grid * cfg.grid

    def __call__(self, frames: np.ndarray) -> dict[str, Any]:
        """uint8 ``[n, S, S, 3]`` with ``n <= batch_size`` -> outputs ``[n, ...]``: device
        arrays computed asynchronously for a full batch, numpy for a partial one."""
        if self._fn is None:
            self._fn = self._build()
        return padded_call(self._fn, self.batch_size, frames, self.params)


def checkpoint_hash(path: str) -> str:
    """Content identity of a converted checkpoint folder: a hash of its small files' bytes
    (config, metadata) and every file's relative path and size."""
    h = hashlib.sha1()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(folder, name)
            size = os.path.getsize(full)
            h.update(f"{os.path.relpath(full, path)}:{size}\n".encode())
            if size <= 1 << 20:
                with open(full, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


def from_checkpoint(path: str, **kwargs: Any) -> FrozenEncoder:
    """The encoder of a converted checkpoint folder (``config.json`` + orbax params)."""
    import jax

    from vau_jax.convert.checkpoint import load_converted

    module, params = load_converted(path)
    source = f"checkpoint:{os.path.basename(os.path.abspath(path))}:{checkpoint_hash(path)}"
    return FrozenEncoder(module, jax.device_put(params), source, **kwargs)


def from_registry(name: str, seed: int = 0, **kwargs: Any) -> FrozenEncoder:
    """A registry vision tower with random weights from ``seed`` (``overrides`` replace
    config fields, e.g. ``image_size``/``patch_size``)."""
    import jax
    from flax import linen as nn

    from vau_jax.models import registry

    overrides = kwargs.pop("overrides", {}) or {}
    module = registry.build(name, **overrides)
    cfg = vision_config(module)
    dummy = np.zeros([1, cfg.image_size, cfg.image_size, cfg.num_channels], np.float32)
    params = nn.unbox(jax.jit(module.init)(jax.random.key(seed), dummy)["params"])
    digest = hashlib.sha1(repr(cfg).encode()).hexdigest()[:10]
    return FrozenEncoder(module, params, f"random:{name}:seed={seed}:{digest}", **kwargs)


def from_module(module: Any, params: Any, source: str, **kwargs: Any) -> FrozenEncoder:
    """An in-memory module and params; ``source`` must identify the weights."""
    return FrozenEncoder(module, params, source, **kwargs)


@dataclasses.dataclass
class QFormerEncoder:
    """A frozen vision tower followed by a frozen image Q-Former (BLIP-2): per frame the
    Q-Former's query outputs, ``queries [Nq, Dq]`` (VAD-LLaMA's per-frame tokens).

    Attributes:
      vision: the :class:`FrozenEncoder` of the tower (its ``last_hidden_state`` feeds the
        Q-Former's cross-attention, as in BLIP-2).
      qformer: the Q-Former module; ``qformer_params`` its parameters.
      qformer_source: identity of the Q-Former weights.
      batch_size, micro_batch: as :class:`FrozenEncoder`'s (the tower's tokens set the
        automatic micro-batch).
    """

    vision: FrozenEncoder
    qformer: Any
    qformer_params: Any
    qformer_source: str
    batch_size: int = 32
    micro_batch: int = 0

    def __post_init__(self) -> None:
        self._fn = None

    @property
    def width(self) -> int:
        return int(self.qformer.config.hidden_size)

    @property
    def tokens_per_frame(self) -> int:
        return int(self.qformer.config.num_query_tokens)

    @property
    def key(self) -> str:
        return json.dumps(
            {
                "vision": json.loads(self.vision.key),
                "qformer": self.qformer_source,
                "outputs": ["queries"],
            },
            sort_keys=True,
        )

    def _build(self) -> Any:
        import jax
        import jax.numpy as jnp

        vmod, cfg, qf = self.vision.module, self.vision.config, self.qformer
        _, mean, std = normalisation(vmod)
        nq = int(qf.config.num_query_tokens)

        def run(vparams: Any, qparams: Any, frames: jax.Array) -> dict[str, jax.Array]:
            x = frames.astype(jnp.float32) / 255.0
            x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
            interp = x.shape[1] != cfg.image_size or x.shape[2] != cfg.image_size
            h = vmod.apply({"params": vparams}, x, interpolate_pos_encoding=interp)
            q = qf.apply({"params": qparams}, h["last_hidden_state"])["last_hidden_state"]
            return {"queries": q[:, :nq].astype(jnp.float32)}

        return jit_micro_batched(
            run, self.batch_size, self.micro_batch, self.vision.tokens_in_model
        )

    def __call__(self, frames: np.ndarray) -> dict[str, Any]:
        if self._fn is None:
            self._fn = self._build()
        return padded_call(
            self._fn, self.batch_size, frames, self.vision.params, self.qformer_params
        )


def qformer_from_checkpoints(vision_path: str, qformer_path: str, **kwargs: Any) -> QFormerEncoder:
    """A :class:`QFormerEncoder` from two converted checkpoint folders."""
    import jax

    from vau_jax.convert.checkpoint import load_converted

    batch = int(kwargs.pop("batch_size", 32))
    vision = from_checkpoint(vision_path, outputs=("cls",), batch_size=batch)
    module, params = load_converted(qformer_path)
    source = f"checkpoint:{os.path.basename(os.path.abspath(qformer_path))}:" + checkpoint_hash(
        qformer_path
    )
    return QFormerEncoder(vision, module, jax.device_put(params), source, batch_size=batch)
