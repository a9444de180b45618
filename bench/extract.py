"""Feature-extraction speed: the library's path over a folder of videos vs the equivalent
PyAV + HF PyTorch loop, same weights, same frames, one run.

    python bench/extract.py [--videos=4] [--seconds=12] [--fps=2] [--batch=32] [--repeats=3] \
        [--compute_dtype=float32|bfloat16]

The folder: ``--videos`` segments of ``--seconds`` cut from the real surveillance clip
``vtest.avi`` (768x576, 10 fps; ``$VAU_JAX_VTEST`` or ``../shared/data/vtest.avi``),
re-encoded as MPEG-4 so that each is a separate file with its own content.

Ours: what ``python -m vau_jax.extract --fps=F --outputs=cls --dtype=float32`` runs after
parsing its flags: every video decoded with PyAV (sample-and-hold at ``--fps``, shorter side
to 224 with swscale bicubic, centre crop), frames of consecutive videos batched through a
frozen CLIP ViT-B/16 in one compiled shape while the next batch decodes, written to a fresh
feature store (ArrayRecord shards, index). Theirs: the loop a user writes with PyAV and
``transformers``: decode, the same sample-and-hold and resize, normalise, ``CLIPVisionModel``
on batches of ``--batch`` frames under ``torch.inference_mode``, the class tokens saved per
video with ``np.savez``. Both sides get the same random weights (HF init converted with our
converter) and each repeat starts from an empty output folder, compiled model kept (a
user's second folder).

Printed: seconds per pass over the folder for each side (best of ``--repeats``, timed
alternately), PyTorch / ours (>= 1: ours is as fast or faster), end-to-end frames/s, the
encoder alone on one batch as a fraction of the float32 matmul peak measured in the same
run, and the largest difference between the two sides' features (same frames in, so it is
the models' float difference). ``--compute_dtype=bfloat16`` runs our encoder in bf16
(``extract --compute_dtype``); PyTorch stays float32, and the peak stays float32's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import av
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from models import VIT_B, machine_header, paired, xla_flops  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def vtest_path() -> str:
    """The real clip, or exit with one line when it is missing."""
    path = os.environ.get("VAU_JAX_VTEST") or os.path.join(
        ROOT, "..", "shared", "data", "vtest.avi"
    )
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: the real clip is missing (set VAU_JAX_VTEST)")
    return path


def cut_segments(src: str, out_dir: str, count: int, seconds: float) -> list[str]:
    """``count`` consecutive ``seconds``-long MPEG-4 files cut from ``src`` (wrapping around)."""
    with av.open(src) as inp:
        stream = inp.streams.video[0]
        rate = int(round(float(stream.average_rate or 10)))
        frames = [f.to_ndarray(format="rgb24") for f in inp.decode(stream)]
    per = int(round(seconds * rate))
    paths = []
    for i in range(count):
        path = os.path.join(out_dir, f"segment{i:02d}.mp4")
        with av.open(path, "w") as out:
            vs = out.add_stream("mpeg4", rate=rate)
            vs.height, vs.width = frames[0].shape[:2]
            vs.pix_fmt = "yuv420p"
            for k in range(per):
                img = frames[(i * per + k) % len(frames)]
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        paths.append(path)
    return paths


def torch_frames(path: str, fps: float, size: int) -> np.ndarray:
    """uint8 ``[T, size, size, 3]``: PyAV decode, sample-and-hold at ``fps``, shorter side to
    ``size`` (swscale bicubic), centre crop: the same rule as ``vau_jax.data.video``."""
    out: list[np.ndarray] = []
    with av.open(path) as inp:
        stream = inp.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        scale = max(size / w, size / h)
        sw, sh = max(size, round(w * scale)), max(size, round(h * scale))
        x0, y0 = (sw - size) // 2, (sh - size) // 2
        held, t0, n = None, None, 0
        for frame in inp.decode(stream):
            t = float(frame.time)
            t0 = t if t0 is None else t0
            t -= t0
            while held is not None and n / fps < t - 1e-6:
                out.append(held)
                n += 1
            img = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="BICUBIC")
            held = img.to_ndarray()[y0 : y0 + size, x0 : x0 + size]
            last = t
        while held is not None and n / fps <= last + 1e-6:
            out.append(held)
            n += 1
    return np.stack(out)


def run_theirs(model: Any, videos: list[str], out_dir: str, fps: float, batch: int) -> int:
    """The PyAV + HF loop over the folder; returns the number of frames encoded."""
    import torch

    total = 0
    with torch.inference_mode():
        for path in videos:
            frames = torch_frames(path, fps, 224)
            x = (frames.astype(np.float32) / 255.0 - MEAN) / STD
            x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
            cls = [
                model(pixel_values=x[a : a + batch]).last_hidden_state[:, 0].numpy()
                for a in range(0, len(x), batch)
            ]
            name = os.path.splitext(os.path.basename(path))[0]
            np.savez(os.path.join(out_dir, f"{name}.npz"), cls=np.concatenate(cls))
            total += len(frames)
    return total


def run_ours(encoder: Any, videos: list[str], out_dir: str, fps: float) -> Any:
    """The extract CLI's path over the folder: FileVideo sources -> a fresh feature store."""
    from vau_jax.data.datasets import FileHashes, FileVideo
    from vau_jax.data.features import FeatureStore
    from vau_jax.extract import frame_spec

    hashes = FileHashes(os.path.join(out_dir, "file_hashes.json"))
    sources = [
        FileVideo(id=os.path.splitext(os.path.basename(p))[0], split="test", path=p, hashes=hashes)
        for p in videos
    ]
    store = FeatureStore(out_dir, encoder, frame_spec(encoder, fps), dtype="float32", name="bench")
    return store.ensure(sources, desc="bench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute_dtype", choices=("float32", "bfloat16"), default="float32")
    args = ap.parse_args()

    import jax
    import torch
    import transformers

    from vau_jax.convert import load_hf_state_dict
    from vau_jax.encoders import FrozenEncoder

    peak = machine_header(args.threads, args.repeats)
    work = tempfile.mkdtemp(prefix="bench_extract_")
    try:
        videos = cut_segments(vtest_path(), work, args.videos, args.seconds)
        torch.manual_seed(0)
        # the ViT-B/16 of bench/models.py's CLIP row
        cfg = transformers.CLIPVisionConfig(
            **VIT_B, image_size=224, patch_size=16, hidden_act="quick_gelu"
        )
        hf = transformers.CLIPVisionModel(cfg).eval()
        sd = {k: v.numpy() for k, v in hf.state_dict().items()}
        module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
        enc = FrozenEncoder(
            module,
            jax.device_put(params),
            "bench-clip-b16",
            ("cls",),
            batch_size=args.batch,
            compute_dtype=args.compute_dtype,
        )

        def fresh(tag: str) -> str:
            d = os.path.join(work, f"{tag}-{time.perf_counter_ns()}")
            os.makedirs(d)
            return d

        counts: dict[str, Any] = {}

        def ours() -> None:
            counts["ours"] = run_ours(enc, videos, fresh("ours"), args.fps)

        def theirs() -> None:
            counts["theirs"] = run_theirs(hf, videos, fresh("theirs"), args.fps, args.batch)

        t_ours, t_theirs = paired(ours, theirs, args.repeats)
        fs, frames = counts["ours"], counts["theirs"]
        ours_frames = sum(len(fs[i]["timestamps"]) for i in range(len(fs)))
        if ours_frames != frames:
            raise SystemExit(f"error: frame counts differ: ours {ours_frames}, PyTorch {frames}")
        # the two sides' features of the first video (same frames in)
        first = torch_frames(videos[0], args.fps, 224)
        x = torch.from_numpy(
            ((first / 255.0 - MEAN) / STD).astype(np.float32).transpose(0, 3, 1, 2)
        )
        with torch.inference_mode():
            ref = np.concatenate(
                [
                    hf(pixel_values=x[a : a + args.batch]).last_hidden_state[:, 0].numpy()
                    for a in range(0, len(x), args.batch)
                ]
            )
        diff = float(np.abs(fs[0]["cls"] - ref).max())
        # the encoder alone: one full batch, best of repeats
        batch = np.repeat(first[:1], args.batch, 0)
        # FLOPs of the same call without the micro-batch loop (XLA's cost analysis counts a
        # loop body once, not once per trip)
        whole = dataclasses.replace(enc, micro_batch=args.batch)
        flops = xla_flops(whole._build(), enc.params, batch)
        t_enc = min(
            _timed(lambda: jax.block_until_ready(enc(batch))) for _ in range(args.repeats + 1)
        )
        enc_gflops = flops / t_enc / 1e9
        print(
            f"{args.videos} videos x {args.seconds:g} s of vtest.avi (768x576) at {args.fps:g} fps "
            f"-> {frames} frames, CLIP ViT-B/16 class tokens, batch {args.batch}, ours in "
            f"{args.compute_dtype}, PyTorch in float32"
        )
        print(f"{'':28s} {'ours s':>8s} {'PyTorch s':>10s} {'PT/ours':>8s} {'frames/s':>9s}")
        print(
            f"{'folder -> features':28s} {t_ours:8.2f} {t_theirs:10.2f} "
            f"{t_theirs / t_ours:8.2f} {frames / t_ours:9.1f}"
        )
        print(
            f"encoder alone: {t_enc * 1e3:.0f} ms per batch of {args.batch}, {enc_gflops:.1f} "
            f"GFLOP/s = {enc_gflops / peak:.1%} of the peak; end to end "
            f"{flops / args.batch * frames / t_ours / 1e9:.1f} GFLOP/s = "
            f"{flops / args.batch * frames / t_ours / 1e9 / peak:.1%}; features max abs diff "
            f"{diff:.2e}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
