"""Feature extraction: decoded frames → a registry vision encoder → per-video feature files.

    python -m vau_jax.extract --video=PATH_OR_DIR --encoder=NAME [--checkpoint=DIR] --out=DIR \
        [--fps=1.0] [--batch_size=32] [--patch_tokens] [--dtype=float16|float32] [--seed=0] \
        [--max_seconds=S]

``--video`` is one file or a directory searched recursively for video files; the video id is
the file name without its extension (ids must be unique). Without ``--checkpoint`` the
encoder ``--encoder`` (a name of :mod:`vau_jax.models.registry`, e.g. ``tiny-clip-vit``,
``clip-vit-l/14``, ``dinov2-l/14``) gets random weights from ``--seed``; with it, the converted
checkpoint (``vau_jax.convert.checkpoint.load_converted``) supplies module and weights.

Preprocessing follows the encoder's HF image processor: frames sampled at ``--fps``
(sample-and-hold, ``--fps=0`` keeps every frame), shorter side resized (bicubic) and the
centre cropped — CLIP / EVA: shorter side → ``image_size``, crop ``image_size``; DINOv2:
shorter side → ``256/224·crop``, crop ``min(image_size, 224)`` — then ``/255`` and normalised
with the CLIP mean/std (CLIP, EVA) or the ImageNet mean/std (DINOv2).

Output layout, per video (each file written to a temporary name, then renamed)::

    OUT/<video_id>.npz    cls         [T, D]      pooler_output (CLIP: post-LN class token)
                          embeds      [T, P]      image_embeds (CLIP towers with projection)
                          patches     [T, N, D]   last_hidden_state without class/register
                                                  tokens (only with --patch_tokens)
                          timestamps  [T]         seconds (float64)
                          indices     [T]         source frame index (int64)
    OUT/<video_id>.json   {"video", "encoder", "checkpoint", "fps", "n_frames", "dtype",
                           "image_size", "normalisation", "source": {probe info}, "shapes"}

``--max_seconds=S`` extracts only the first ``S`` seconds (previews; recorded in the
``.json``). The ``.json`` is written last: a video counts as done when both files exist, and a rerun
skips it. A video that fails to decode is reported (file and reason) and skipped; the exit
code is 1 when any video failed, else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from vau_jax.data.video import VideoDecodeError, iter_frames, probe

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How frames become encoder input: resize shorter side, centre crop, normalise."""

    resize: int  # shorter side after resizing, pixels
    crop: int  # square centre crop, pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str  # "clip" or "imagenet"


def preprocess_for(cfg: Any) -> Preprocess:
    """The HF-processor-equivalent preprocessing of a ViT config (see module docstring)."""
    if cfg.variant == "dinov2":
        crop = min(int(cfg.image_size), 224)
        return Preprocess(round(crop * 256 / 224), crop, IMAGENET_MEAN, IMAGENET_STD, "imagenet")
    size = int(cfg.image_size)
    return Preprocess(size, size, CLIP_MEAN, CLIP_STD, "clip")


def normalise(frames: np.ndarray, prep: Preprocess) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` → float32 normalised pixels ``[B, H, W, 3]``."""
    x = frames.astype(np.float32) / 255.0
    return (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)


def _centre_crop(frames: np.ndarray, crop: int) -> np.ndarray:  # [B, H, W, 3]
    h, w = frames.shape[1:3]
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    return frames[:, y0 : y0 + crop, x0 : x0 + crop]


def find_videos(path: str) -> dict[str, str]:
    """``video_id -> file`` for a file or a directory (recursive); ids must be unique."""
    if os.path.isfile(path):
        return {os.path.splitext(os.path.basename(path))[0]: path}
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            full = os.path.join(dirpath, name)
            if stem in found:
                raise ValueError(f"video id {stem!r} is not unique: {found[stem]} and {full}")
            found[stem] = full
    return found


def load_encoder(
    encoder: str | None, checkpoint: str | None, seed: int = 0
) -> tuple[Any, Any, str]:
    """``(module, params, description)`` from a converted checkpoint or a random init."""
    import jax
    from flax import linen as nn

    if checkpoint:
        from vau_jax.convert.checkpoint import load_converted

        module, params = load_converted(checkpoint)
        return module, params, f"checkpoint:{checkpoint}"
    if not encoder:
        raise ValueError("--encoder is required without --checkpoint")
    from vau_jax.models import registry

    module = registry.build(encoder)
    cfg = module.config
    dummy = np.zeros([1, cfg.image_size, cfg.image_size, cfg.num_channels], np.float32)
    params = jax.jit(module.init)(jax.random.key(seed), dummy)["params"]
    return module, nn.unbox(params), f"random:{encoder}:seed={seed}"


def make_encode_fn(module: Any, patch_tokens: bool) -> Callable[[Any, np.ndarray], dict]:
    """A jitted ``(params, pixels [B, S, S, 3]) -> {"cls", ["embeds"], ["patches"]}``."""
    import jax

    cfg = module.config
    n_prefix = 1 + int(getattr(cfg, "num_register_tokens", 0))

    def encode(params: Any, pixels: Any) -> dict:
        out = module.apply({"params": params}, pixels)
        feats = {"cls": out["pooler_output"]}  # [B, D]
        if "image_embeds" in out:
            feats["embeds"] = out["image_embeds"]  # [B, P]
        if patch_tokens:
            feats["patches"] = out["last_hidden_state"][:, n_prefix:]  # [B, N, D]
        return feats

    return jax.jit(encode)


_LAST_ENCODER: dict[tuple, tuple[Any, Any, str, Callable]] = {}


def _encoder_cached(
    encoder: str | None, checkpoint: str | None, seed: int, patch_tokens: bool
) -> tuple[Any, Any, str, Callable]:
    """:func:`load_encoder` + :func:`make_encode_fn`, reusing the last one (and its jit cache)."""
    key = (encoder, os.path.abspath(checkpoint) if checkpoint else None, seed, patch_tokens)
    if key not in _LAST_ENCODER:
        _LAST_ENCODER.clear()  # keep at most one model's weights alive
        module, params, desc = load_encoder(encoder, checkpoint, seed)
        _LAST_ENCODER[key] = (module, params, desc, make_encode_fn(module, patch_tokens))
    return _LAST_ENCODER[key]


def _atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _Progress:
    """tqdm bar on a TTY; plain periodic lines (frames/s) otherwise."""

    def __init__(self, label: str, total: int | None, stream=None, every_s: float = 10.0):
        stream = sys.stderr if stream is None else stream
        self.label, self.total, self.stream, self.every_s = label, total, stream, every_s
        self.n, self.t0, self.last = 0, time.perf_counter(), time.perf_counter()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="frame", file=stream, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            print(
                f"{self.label}: {self.n}/{self.total or '?'} frames, {self.rate():.1f} frames/s",
                file=self.stream,
                flush=True,
            )

    def rate(self) -> float:
        return self.n / max(time.perf_counter() - self.t0, 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def extract_video(
    video: str,
    video_id: str,
    out_dir: str,
    *,
    module: Any,
    params: Any,
    encode_fn: Callable,
    batch_size: int,
    fps: float | None,
    dtype: str,
    encoder_name: str,
    progress_label: str,
    max_seconds: float | None = None,
    stream=None,
) -> dict:
    """Extracts one video into ``out_dir/<video_id>.npz`` + ``.json``; returns the metadata.

    Raises:
      VideoDecodeError: the video cannot be decoded (nothing is written).
    """
    info = probe(video)
    prep = preprocess_for(module.config)
    out_fps = fps or info.fps
    expected = int(np.floor((info.n_frames - 1) / info.fps * out_fps + 1e-6)) + 1
    max_frames = None
    if max_seconds is not None:
        max_frames = max(1, int(np.floor(max_seconds * out_fps + 1e-6)))
        expected = min(expected, max_frames)
    parts: dict[str, list[np.ndarray]] = {}
    times: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    progress = _Progress(progress_label, expected, stream=stream)

    def collect(feats: dict, n: int) -> None:  # blocks on the device result
        for key, value in feats.items():
            parts.setdefault(key, []).append(np.asarray(value)[:n].astype(dtype))
        progress.update(n)

    pending = None  # the previous batch: its device work overlaps decoding the next one
    try:
        for chunk in iter_frames(
            video,
            fps=fps or None,
            size=prep.resize,
            resize="crop",
            chunk_size=batch_size,
            max_frames=max_frames,
        ):
            frames = _centre_crop(chunk.frames, prep.crop)  # [b, S, S, 3]
            n = len(frames)
            pixels = normalise(frames, prep)
            if n < batch_size:  # static batch shape: pad the last batch
                pad = np.zeros((batch_size - n, *pixels.shape[1:]), np.float32)
                pixels = np.concatenate([pixels, pad])
            feats = encode_fn(params, pixels)  # dispatched asynchronously
            if pending is not None:
                collect(*pending)
            pending = (feats, n)
            times.append(chunk.timestamps)
            idx.append(chunk.indices)
        if pending is not None:
            collect(*pending)
    finally:
        progress.close()
    if not times:
        raise VideoDecodeError(f"{video}: no frames decoded")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["timestamps"] = np.concatenate(times)
    arrays["indices"] = np.concatenate(idx)
    meta = {
        "video": os.path.abspath(video),
        "video_id": video_id,
        "encoder": encoder_name,
        "fps": out_fps,
        "max_seconds": max_seconds,
        "n_frames": int(len(arrays["timestamps"])),
        "dtype": dtype,
        "image_size": prep.crop,
        "normalisation": prep.name,
        "frames_per_second_extracted": round(progress.rate(), 2),
        "source": {k: v for k, v in dataclasses.asdict(info).items() if k != "path"},
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
    }
    npz_path = os.path.join(out_dir, f"{video_id}.npz")
    _atomic_write(npz_path, lambda f: np.savez(f, **arrays))
    _atomic_write(
        os.path.join(out_dir, f"{video_id}.json"),
        lambda f: json.dump(meta, f, indent=2, sort_keys=True),
        mode="w",
    )
    return meta


def is_done(out_dir: str, video_id: str) -> bool:
    """True when both output files of ``video_id`` exist."""
    return all(os.path.isfile(os.path.join(out_dir, f"{video_id}{e}")) for e in (".npz", ".json"))


def run(
    video: str,
    out: str,
    *,
    encoder: str | None = None,
    checkpoint: str | None = None,
    fps: float | None = 1.0,
    batch_size: int = 32,
    patch_tokens: bool = False,
    dtype: str = "float16",
    seed: int = 0,
    max_seconds: float | None = None,
    stream=None,
) -> dict[str, list[str]]:
    """Extracts every video under ``video`` into ``out``.

    Returns:
      ``{"done": [...], "skipped": [...], "failed": ["<file>: <reason>", ...]}``.
    """
    stream = sys.stderr if stream is None else stream
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    videos = find_videos(video)
    os.makedirs(out, exist_ok=True)
    todo = {vid: path for vid, path in videos.items() if not is_done(out, vid)}
    result: dict[str, list[str]] = {
        "done": [],
        "skipped": sorted(set(videos) - set(todo)),
        "failed": [],
    }
    for vid in result["skipped"]:
        print(f"skip {vid}: already extracted", file=stream, flush=True)
    for vid, path in sorted(todo.items()):  # unreadable files fail before the model loads
        try:
            probe(path)
        except VideoDecodeError as err:
            result["failed"].append(str(err))
            print(f"FAILED {vid}: {err}", file=stream, flush=True)
            del todo[vid]
    if not todo:
        return result
    module, params, desc, encode_fn = _encoder_cached(encoder, checkpoint, seed, patch_tokens)
    for i, (vid, path) in enumerate(sorted(todo.items()), start=1):
        label = f"[{i}/{len(todo)}] {vid}"
        try:
            meta = extract_video(
                path,
                vid,
                out,
                module=module,
                params=params,
                encode_fn=encode_fn,
                batch_size=batch_size,
                fps=fps,
                dtype=dtype,
                encoder_name=desc,
                progress_label=label,
                max_seconds=max_seconds,
                stream=stream,
            )
        except VideoDecodeError as err:
            result["failed"].append(str(err))
            print(f"FAILED {label}: {err}", file=stream, flush=True)
            continue
        result["done"].append(vid)
        print(
            f"done {label}: {meta['n_frames']} frames, "
            f"{meta['frames_per_second_extracted']} frames/s",
            file=stream,
            flush=True,
        )
    return result


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m vau_jax.extract", description=__doc__.split("\n")[0]
    )
    p.add_argument("--video", required=True, help="a video file or a directory of videos")
    p.add_argument("--encoder", default=None, help="registry name, e.g. tiny-clip-vit")
    p.add_argument("--checkpoint", default=None, help="converted checkpoint directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second; 0 = every frame")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--patch_tokens", action="store_true", help="also store patch tokens")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--seed", type=int, default=0, help="random-init seed (no checkpoint)")
    p.add_argument("--max_seconds", type=float, default=None, help="only the first seconds")
    args = p.parse_args(argv)
    if not args.encoder and not args.checkpoint:
        p.error("one of --encoder or --checkpoint is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1 if any video failed)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    result = run(
        args.video,
        args.out,
        encoder=args.encoder,
        checkpoint=args.checkpoint,
        fps=args.fps if args.fps > 0 else None,
        batch_size=args.batch_size,
        patch_tokens=args.patch_tokens,
        dtype=args.dtype,
        seed=args.seed,
        max_seconds=args.max_seconds,
    )
    print(
        json.dumps({k: len(v) for k, v in result.items()} | {"failures": result["failed"]}),
        flush=True,
    )
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
