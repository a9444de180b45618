"""SynthVAD benchmark: render speed (videos/s, frames/s) and on-disk sizes of a written split.

    python bench/synthvad.py [--num_videos=16] [--sizes=64,224] [--out=/tmp/synthvad_bench]

Prints one JSON line per measurement, after one naming the CPU (``lscpu``). Sizes: the tfds ArrayRecord split (frames and masks
zlib-compressed raw uint8) and the mp4 + annotation tree of ``python -m vau_jax.data.synthvad``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

from absl import app, flags

from vau_jax.data.synthvad import SynthConfig, prepare, render_split_video
from vau_jax.data.synthvad.writers import write_split

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import cpu_model  # noqa: E402

_NUM = flags.DEFINE_integer("num_videos", 16, "Videos per measurement.")
_SIZES = flags.DEFINE_list("sizes", ["64", "224"], "Frame sizes to measure.")
_OUT = flags.DEFINE_string("out", None, "Scratch directory (default: a temp dir, removed).")


def _du(path: str, suffix: str = "") -> int:
    """Bytes of the files under ``path`` whose names end with ``suffix``."""
    return sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, fs in os.walk(path)
        for f in fs
        if f.endswith(suffix) or (suffix == ".array_record" and ".array_record" in f)
    )


def main(argv: list[str]) -> None:
    del argv
    print(json.dumps({"cpu": cpu_model()}), flush=True)
    scratch = _OUT.value or tempfile.mkdtemp(prefix="synthvad_bench_")
    try:
        for size in (int(s) for s in _SIZES.value):
            cfg = SynthConfig(height=size, width=size)
            render_split_video("train", 0, cfg)  # warm-up
            t0, frames = time.perf_counter(), 0
            for i in range(_NUM.value):
                frames += render_split_video("train", i, cfg).num_frames
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "bench": "render",
                        "size": size,
                        "videos": _NUM.value,
                        "videos_per_s": round(_NUM.value / dt, 3),
                        "frames_per_s": round(frames / dt, 1),
                        "frames": frames,
                    }
                )
            )

            tfds_dir = os.path.join(scratch, f"tfds_{size}")
            t0 = time.perf_counter()
            builder = prepare(tfds_dir, "test", _NUM.value, cfg)
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "bench": "tfds_prepare",
                        "size": size,
                        "videos": _NUM.value,
                        "seconds": round(dt, 2),
                        "array_record_bytes": _du(builder.data_dir, ".array_record"),
                    }
                )
            )

            out = os.path.join(scratch, f"files_{size}")
            t0 = time.perf_counter()
            write_split(out, "test", _NUM.value, cfg, write_videos=True)
            dt = time.perf_counter() - t0
            print(
                json.dumps(
                    {
                        "bench": "write_files",
                        "size": size,
                        "videos": _NUM.value,
                        "seconds": round(dt, 2),
                        "mp4_bytes": _du(out, ".mp4"),
                        "png_mask_bytes": _du(out, "_gt.png"),
                        "total_bytes": _du(out),
                    }
                )
            )
    finally:
        if _OUT.value is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
