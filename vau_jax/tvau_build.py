"""Build T-VAU's fine-grained anomaly-understanding annotations from a dataset tree.

    python -m vau_jax.tvau_build --dataset=ubnormal|shanghaitech --dataset_dir=DIR --out=DIR \
        [--annotator=oracle|noisy] [--split=train|validation|test|all] [--seed=0] \
        [--noise=jitter=1.0,swap=0.1,contradict=0.5] [--frame_stride=1] \
        [--write_refined=true] [--blur_sigma=2.0] [--fps=FPS]

Writes ``DIR/tvau_annotations.json``, ``DIR/questions.jsonl``, ``DIR/stats.json`` and (with
``--write_refined``) ``DIR/refined/<video>/<frame>.png``; the stages, the annotators and the
schemas are :mod:`vau_jax.data.tvau_dataset`. ``oracle`` needs a SynthVAD tree
(``python -m vau_jax.data.synthvad --layout=ubnormal ...``); ``--noise`` only affects
``noisy``; ``--fps`` is the frame rate of frame-folder videos whose layout gives none.
Prints the statistics as one JSON line. A user error (a bad flag, a missing or malformed
dataset file, an undecodable video) prints one line ``error: PATH[:LINE]: reason`` on stderr
and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from absl import flags

from vau_jax.cli import report
from vau_jax.data import tvau_dataset

FLAGS = flags.FlagValues()
flags.DEFINE_enum(
    "dataset", None, list(tvau_dataset.DATASETS), "Dataset layout.", flag_values=FLAGS
)
flags.DEFINE_string("dataset_dir", None, "Dataset root in its published layout.", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Output directory.", flag_values=FLAGS)
flags.DEFINE_string(
    "annotator", "oracle", "Stage-1 annotator (a tvau_dataset.ANNOTATORS key).", flag_values=FLAGS
)
flags.DEFINE_enum(
    "split", "all", list(tvau_dataset.SPLITS), "Split(s) to build.", flag_values=FLAGS
)
flags.DEFINE_integer("seed", 0, "Seed of the annotator and question wording.", flag_values=FLAGS)
flags.DEFINE_string("noise", "", "noisy: 'jitter=PX,swap=P,contradict=P'.", flag_values=FLAGS)
flags.DEFINE_integer(
    "frame_stride", 1, "Annotate every N-th frame.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_boolean("write_refined", True, "Write the blurred refined frames.", flag_values=FLAGS)
flags.DEFINE_float("blur_sigma", 2.0, "Background blur std, pixels.", flag_values=FLAGS)
flags.DEFINE_float("fps", None, "Frame rate of frame folders without one.", flag_values=FLAGS)


class _UsageError(ValueError):
    pass


def run() -> dict:
    """Build what the parsed flags ask for; returns the statistics."""
    for name in ("dataset", "dataset_dir", "out"):
        if not FLAGS[name].value:
            raise _UsageError(f"--{name} is required")
    return tvau_dataset.build(
        FLAGS.dataset,
        FLAGS.dataset_dir,
        FLAGS.out,
        annotator=FLAGS.annotator,
        split=FLAGS.split,
        seed=FLAGS.seed,
        noise=FLAGS.noise,
        frame_stride=FLAGS.frame_stride,
        write_refined=FLAGS.write_refined,
        blur_sigma=FLAGS.blur_sigma,
        fps=FLAGS.fps,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on a user error)."""
    argv = list(sys.argv if argv is None else argv)
    FLAGS.unparse_flags()  # defaults again: main() may be called more than once in a process
    try:
        rest = FLAGS(argv)
        if len(rest) > 1:
            raise _UsageError(f"unexpected arguments: {rest[1:]}")
        stats = run()
    except (flags.Error, ValueError, OSError) as err:  # FormatError, VideoDecodeError: ValueError
        return report(err)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
