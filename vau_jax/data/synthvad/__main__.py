"""Write a SynthVAD split as mp4 files plus UCF-Crime, XD-Violence and UBnormal annotations.

    python -m vau_jax.data.synthvad --out=/tmp/synthvad --split=test --num_videos=16 \
        --write_videos --size=64

See :mod:`vau_jax.data.synthvad.writers` for the layout and frame conventions.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

from vau_jax.data.synthvad.types import SynthConfig
from vau_jax.data.synthvad.writers import META_FILE, write_split

_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Which split.")
_NUM = flags.DEFINE_integer("num_videos", 16, "Number of videos.", lower_bound=1)
_VIDEOS = flags.DEFINE_boolean("write_videos", False, "Also encode videos/<id>.mp4.")
_SIZE = flags.DEFINE_integer("size", 64, "Frame height and width (even, >= 32).")
_FPS = flags.DEFINE_float("fps", 8.0, "Frames per second.")
_PROB = flags.DEFINE_float("anomaly_prob", 0.5, "Fraction of videos with an anomaly.")
_MIN_S = flags.DEFINE_float("min_seconds", 6.0, "Shortest video, seconds.")
_MAX_S = flags.DEFINE_float("max_seconds", 16.0, "Longest video, seconds.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = SynthConfig(
        height=_SIZE.value,
        width=_SIZE.value,
        fps=_FPS.value,
        anomaly_prob=_PROB.value,
        min_seconds=_MIN_S.value,
        max_seconds=_MAX_S.value,
    )
    meta = write_split(
        _OUT.value, _SPLIT.value, _NUM.value, config, write_videos=_VIDEOS.value, progress=True
    )
    ids = set(meta["splits"][_SPLIT.value])
    mine = [v for v in meta["videos"] if v["id"] in ids]
    summary = {
        "out": os.path.abspath(_OUT.value),
        "split": _SPLIT.value,
        "videos": len(mine),
        "anomalous": sum(v["anomaly_type"] != "normal" for v in mine),
        "frames": sum(v["n_frames"] for v in mine),
        "meta": os.path.join(os.path.abspath(_OUT.value), META_FILE),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
