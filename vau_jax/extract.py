"""Feature extraction: decoded frames -> a frozen vision encoder -> a feature store.

    python -m vau_jax.extract --video=PATH_OR_DIR --out=DIR (--encoder=NAME | --checkpoint=DIR) \
        [--fps=1.0] [--outputs=cls,patches] [--patch_pool=0] [--dtype=float16|float32] \
        [--batch_size=32] [--seed=0] [--max_seconds=S] [--size=S] \
        [--compute_dtype=float32|bfloat16]

``--video`` is one file or a directory searched recursively for video files; the video id
is the file name without its extension (ids must be unique). The encoder is a converted
checkpoint (``--checkpoint``, from ``python -m vau_jax.convert``) or a registry vision tower
(``--encoder``, e.g. ``tiny-clip-vit``, ``clip-vit-l/14``, ``dinov2-l/14``) with random
weights from ``--seed``; a CLIP dual-encoder name (``tiny-clip``, ``clip-l/14``) is refused
with the name of its vision tower (``tiny-clip-vit``, ``clip-vit-l/14``).

Preprocessing follows the encoder's HF image processor: frames sampled at ``--fps``
(sample-and-hold; ``--fps=0`` keeps every frame); CLIP / EVA: shorter side -> ``image_size``,
centre crop ``image_size``; DINOv2: shorter side -> ``256/224·crop``, crop
``min(image_size, 224)``; ``--size`` overrides the crop side. Pixels are normalised with the
CLIP (CLIP, EVA) or ImageNet (DINOv2) mean and std.

``--compute_dtype`` is the encoder's arithmetic (``--dtype`` is how features are stored):
``bfloat16`` runs a ViT-B/16 about 2.3x faster on a CPU with AMX (README, *Benchmarks*), and
is slower on a CPU without bf16 units; its features differ from float32's by bf16 rounding
and go to their own store.

The output is the library's feature store (:mod:`vau_jax.data.features`), the same cache
every method reads: ``DIR/extract-<key>/`` with ``spec.json``, ``index.json`` and ArrayRecord
shards, one record per video (``cls [T, D]``, ``patches [T, N, D]``, ... in ``--dtype``, plus
``timestamps [T]`` seconds and ``indices [T]`` source frames). Read it back with
``vau_jax.data.features.open_store(folder)``. Reruns skip finished videos; a video that
fails to decode is reported (``error: FILE: reason``) and skipped, the others are kept; the
exit code is then 2 (0 when every video was extracted). Any other user error (a bad flag, no
video found, an unknown encoder, an unusable checkpoint or output folder) is one line
``error: ...`` and exit code 2 before anything is written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from vau_jax.cli import ArgumentParser, report
from vau_jax.data.video import VideoDecodeError, probe
from vau_jax.encoders import COMPUTE_DTYPES

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")


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
                raise ValueError(f"{full}: video id {stem!r} is not unique (also {found[stem]})")
            found[stem] = full
    if not found:
        raise FileNotFoundError(f"{path}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return found


def frame_spec(
    encoder: Any, fps: float | None, size: int | None = None, max_seconds: float | None = None
) -> Any:
    """The HF-processor-equivalent :class:`~vau_jax.data.frames.FrameSpec` of an encoder."""
    from vau_jax.data.frames import FrameSpec

    cfg = encoder.config
    if cfg.variant == "dinov2":
        crop = int(size or min(int(cfg.image_size), 224))
        return FrameSpec(
            fps=fps, size=crop, resize=round(crop * 256 / 224), max_seconds=max_seconds
        )
    crop = int(size or cfg.image_size)
    return FrameSpec(fps=fps, size=crop, max_seconds=max_seconds)


def registry_tower(name: str) -> str:
    """``name`` if the registry names a vision tower by it; otherwise a ``ValueError`` that
    says what to pass instead (a CLIP dual encoder: its vision tower's name)."""
    from vau_jax.models import registry
    from vau_jax.models.vit import ViTConfig

    names = registry.list_models()
    towers = [n for n in names if isinstance(registry.get_config(n), ViTConfig)]
    if name in towers:
        return name
    if name not in names:
        near = difflib.get_close_matches(name, towers, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise ValueError(f"--encoder={name}: unknown encoder; {hint}vision towers: {towers}")
    cfg = registry.get_config(name)
    vision = getattr(cfg, "vision_config", None)
    if vision is not None:
        same = [n for n in towers if registry.get_config(n) == vision]
        use = f"--encoder={same[0]}" if same else "--checkpoint=DIR of a converted vision tower"
        raise ValueError(
            f"--encoder={name} is a dual encoder (image and text towers); extract encodes "
            f"frames with its vision tower: use {use}"
        )
    raise ValueError(
        f"--encoder={name} is not a vision encoder ({type(cfg).__name__}); vision towers: {towers}"
    )


def make_encoder(
    encoder: str | None,
    checkpoint: str | None,
    outputs: Sequence[str],
    patch_pool: int = 0,
    batch_size: int = 32,
    seed: int = 0,
    compute_dtype: str = "float32",
) -> Any:
    """The frozen encoder of a converted checkpoint or a seeded registry tower."""
    from vau_jax import encoders

    kw = {
        "outputs": tuple(outputs),
        "patch_pool": int(patch_pool),
        "batch_size": int(batch_size),
        "compute_dtype": str(compute_dtype),
    }
    if checkpoint:
        return encoders.from_checkpoint(checkpoint, **kw)
    if not encoder:
        raise ValueError("--encoder or --checkpoint is required")
    return encoders.from_registry(registry_tower(encoder), seed=seed, **kw)


def run(
    video: str,
    out: str,
    *,
    encoder: str | None = None,
    checkpoint: str | None = None,
    fps: float | None = 1.0,
    outputs: Sequence[str] = ("cls",),
    patch_pool: int = 0,
    batch_size: int = 32,
    dtype: str = "float16",
    seed: int = 0,
    max_seconds: float | None = None,
    size: int | None = None,
    stream: Any = None,
    compute_dtype: str = "float32",
) -> dict[str, Any]:
    """Extracts every video under ``video`` into the feature store under ``out``.

    Returns:
      ``{"store": folder, "done": [...], "skipped": [...], "failed": ["<file>: <reason>"]}``
      (``skipped``: already extracted by an earlier run).
    """
    from vau_jax.data.datasets import FileHashes, FileVideo
    from vau_jax.data.features import FeatureStore, _Index

    stream = sys.stderr if stream is None else stream
    if batch_size <= 0:
        raise ValueError(f"--batch_size must be positive, got {batch_size}")
    if compute_dtype not in COMPUTE_DTYPES:  # before any video is read
        raise ValueError(f"--compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    if encoder and not checkpoint:
        registry_tower(encoder)  # a wrong name fails before anything is read or written
    videos = find_videos(video)
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"{out}: exists and is not a folder (--out is a folder)")
    failed: list[str] = []
    sources = []
    hashes = FileHashes(os.path.join(out, "file_hashes.json"))
    for vid, path in sorted(videos.items()):  # unreadable files fail before the model loads
        try:
            probe(path)
        except VideoDecodeError as err:
            failed.append(str(err))
            print(f"error: {err}", file=stream, flush=True)
            continue
        sources.append(FileVideo(id=vid, split="test", path=path, hashes=hashes))
    enc = make_encoder(encoder, checkpoint, outputs, patch_pool, batch_size, seed, compute_dtype)
    os.makedirs(out, exist_ok=True)  # only once the encoder loaded
    store = FeatureStore(
        out, enc, frame_spec(enc, fps, size, max_seconds), dtype=dtype, name="extract"
    )
    index = _Index.read(os.path.join(store.folder, "index.json"))
    before = {s.id for s in sources if store.entry_key(s) in index.entries}
    fs = store.ensure(sources, desc="extract", skip_errors=(VideoDecodeError,))
    for msg in store.failed:
        failed.append(msg)
        print(f"error: {msg}", file=stream, flush=True)
    done = [i for i in fs.ids if i not in before]
    return {"store": store.folder, "done": done, "skipped": sorted(before), "failed": failed}


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m vau_jax.extract", description=__doc__.split("\n")[0])
    p.add_argument("--video", required=True, help="a video file or a directory of videos")
    p.add_argument("--encoder", default=None, help="registry name, e.g. tiny-clip-vit")
    p.add_argument("--checkpoint", default=None, help="converted checkpoint directory")
    p.add_argument("--out", required=True, help="output directory (the feature store's root)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second; 0 = every frame")
    p.add_argument(
        "--outputs", default="cls", help="comma list: cls,patches,pooled,embeds,hidden_<i>"
    )
    p.add_argument("--patch_pool", type=int, default=0, help="pool patch tokens to a k x k grid")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--seed", type=int, default=0, help="random-init seed (no checkpoint)")
    p.add_argument("--max_seconds", type=float, default=None, help="only the first seconds")
    p.add_argument("--size", type=int, default=None, help="crop side (default: the encoder's)")
    p.add_argument(
        "--compute_dtype",
        choices=COMPUTE_DTYPES,
        default="float32",
        help="the encoder's arithmetic (bfloat16: faster on CPUs with AMX)",
    )
    args = p.parse_args(argv)
    if not args.encoder and not args.checkpoint:
        p.error("one of --encoder or --checkpoint is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 when a video or an argument was bad)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        result = run(
            args.video,
            args.out,
            encoder=args.encoder,
            checkpoint=args.checkpoint,
            fps=args.fps if args.fps > 0 else None,
            outputs=[o.strip() for o in args.outputs.split(",") if o.strip()],
            patch_pool=args.patch_pool,
            batch_size=args.batch_size,
            dtype=args.dtype,
            seed=args.seed,
            max_seconds=args.max_seconds,
            size=args.size,
            compute_dtype=args.compute_dtype,
        )
    except (OSError, ValueError) as err:  # VideoDecodeError, CheckpointMismatchError: ValueError
        return report(err)
    summary = {k: len(v) for k, v in result.items() if isinstance(v, list)}
    print(
        json.dumps({**summary, "store": result["store"], "failures": result["failed"]}), flush=True
    )
    return 2 if result["failed"] else 0


if __name__ == "__main__":
    from vau_jax.host_memory import exec_with_hugepages

    exec_with_hugepages("vau_jax.extract")  # first: 2 MB pages for XLA's buffers
    sys.exit(main())
