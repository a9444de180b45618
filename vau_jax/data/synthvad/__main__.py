"""Write SynthVAD as a real dataset's published tree (or as the flat all-formats tree).

    python -m vau_jax.data.synthvad --out=/tmp/ucf --layout=ucf_crime \
        --num_train=16 --num_test=8 [--codec=ffv1] [--size=64]

``--layout`` is one of ucf_crime, tad, xd_violence, ubnormal, shanghaitech, folder (trees:
:mod:`vau_jax.data.synthvad.layouts`; read back with
``vau_jax.data.formats.layouts.read_layout``); ``--codec=ffv1`` writes lossless ``.mkv``.
Without ``--layout`` the older flat tree of one split is written
(:func:`vau_jax.data.synthvad.writers.write_split`)::

    python -m vau_jax.data.synthvad --out=/tmp/synthvad --split=test --num_videos=16 \
        --write_videos --size=64

Prints one JSON summary line. A bad flag or value prints one line ``error: ...`` on stderr
and exits with code 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import flags

from vau_jax.cli import report
from vau_jax.data.synthvad.layouts import LAYOUTS, write_layout
from vau_jax.data.synthvad.types import NORMAL, SynthConfig
from vau_jax.data.synthvad.writers import CODECS, META_FILE, write_split

FLAGS = flags.FlagValues()
flags.DEFINE_string("out", None, "Output directory.", flag_values=FLAGS)
flags.DEFINE_enum("layout", None, list(LAYOUTS), "Dataset tree to write.", flag_values=FLAGS)
flags.DEFINE_integer(
    "num_train", 8, "Train videos (with --layout).", lower_bound=0, flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_test", 8, "Test videos (with --layout).", lower_bound=0, flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_validation",
    0,
    "Validation videos (with --layout=ubnormal: its validation lists).",
    lower_bound=0,
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "codec", "h264", list(CODECS), "h264 (.mp4) or ffv1 (lossless .mkv).", flag_values=FLAGS
)
flags.DEFINE_enum(
    "split", "test", ["train", "validation", "test"], "Flat tree: which split.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "num_videos", 16, "Flat tree: number of videos.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_boolean(
    "write_videos", False, "Flat tree: also encode videos/<id>.mp4.", flag_values=FLAGS
)
flags.DEFINE_integer("size", 64, "Frame height and width (even, >= 32).", flag_values=FLAGS)
flags.DEFINE_float("fps", 8.0, "Frames per second.", flag_values=FLAGS)
flags.DEFINE_float("anomaly_prob", 0.5, "Fraction of videos with an anomaly.", flag_values=FLAGS)
flags.DEFINE_float("min_seconds", 6.0, "Shortest video, seconds.", flag_values=FLAGS)
flags.DEFINE_float("max_seconds", 16.0, "Longest video, seconds.", flag_values=FLAGS)
flags.register_validator("fps", lambda v: v > 0, "must be positive", flag_values=FLAGS)
_LAYOUT_ONLY = ("num_train", "num_test", "num_validation", "codec")
_FLAT_ONLY = ("split", "num_videos", "write_videos")


class _UsageError(ValueError):
    pass


def _config() -> SynthConfig:
    return SynthConfig(
        height=FLAGS.size,
        width=FLAGS.size,
        fps=FLAGS.fps,
        anomaly_prob=FLAGS.anomaly_prob,
        min_seconds=FLAGS.min_seconds,
        max_seconds=FLAGS.max_seconds,
    )


def run() -> dict:
    """Write what the parsed flags ask for; returns the summary."""
    if not FLAGS.out:
        raise _UsageError("--out is required")
    out = os.path.abspath(FLAGS.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise _UsageError(f"{FLAGS.out}: exists and is not a directory")
    config = _config()
    layout = FLAGS.layout
    wrong = [n for n in (_FLAT_ONLY if layout else _LAYOUT_ONLY) if FLAGS[n].present]
    if wrong:
        need = "without --layout (flat tree)" if layout else "with --layout"
        raise _UsageError(f"--{wrong[0]} is only used {need}")
    if layout:
        meta = write_layout(
            out,
            layout,
            {"train": FLAGS.num_train, "test": FLAGS.num_test}
            | ({"validation": FLAGS.num_validation} if FLAGS.num_validation else {}),
            config,
            codec=FLAGS.codec,
            progress=True,
        )
        mine = meta["videos"]
    else:
        meta = write_split(
            out,
            FLAGS.split,
            FLAGS.num_videos,
            config,
            write_videos=FLAGS.write_videos,
            progress=True,
        )
        ids = set(meta["splits"][FLAGS.split])
        mine = [v for v in meta["videos"] if v["id"] in ids]
    return {
        "out": out,
        "layout": layout or "flat",
        "split": {s: len(ids) for s, ids in meta["splits"].items()} if layout else FLAGS.split,
        "videos": len(mine),
        "anomalous": sum(v["anomaly_type"] != NORMAL for v in mine),
        "frames": sum(v["n_frames"] for v in mine),
        "meta": os.path.join(out, META_FILE),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on a usage error)."""
    argv = list(sys.argv if argv is None else argv)
    FLAGS.unparse_flags()  # defaults again: main() may be called more than once in a process
    try:
        rest = FLAGS(argv)
        if len(rest) > 1:
            raise _UsageError(f"unexpected arguments: {rest[1:]}")
        summary = run()
    except (flags.Error, ValueError, OSError) as err:  # a bad flag, value, config or output
        return report(err)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
