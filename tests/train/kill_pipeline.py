"""A whole tiny job for the kill-anywhere test: render, cache features, train two stages.

    python tests/train/kill_pipeline.py DATA_DIR WORKDIR

1. renders 3 short SynthVAD train videos into ``DATA_DIR/tfds`` (the real tfds builder);
2. caches their features in the real feature store (``DATA_DIR/features``) with a fixed
   numpy encoder (8 numbers per frame: the mean grey level of a 2 x 4 grid);
3. trains the toy two-stage method on those features (one example per frame; checkpoints
   every 2 steps, async) in WORKDIR, and writes ``WORKDIR/final_params.npz``.

Every step reads what the step before wrote, so a half-written render or feature cache that
was read would change the final params. ``$VAU_JAX_KILL_AT`` (:mod:`vau_jax.faults`) kills it.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

NUM_VIDEOS = 3
STEPS = 6  # per stage; checkpoints at 2, 4, 6 of each stage


class GridEncoder:
    """uint8 ``[n, S, S, 3]`` -> ``{"x": [n, 8]}``: mean grey level of a 2 x 4 grid."""

    key = "grid-encoder-v1"
    batch_size = 8

    def __call__(self, frames):
        g = frames.astype(np.float32).mean(-1) / 255.0
        n, h, w = g.shape
        return {"x": g.reshape(n, 2, h // 2, 4, w // 4).mean((2, 4)).reshape(n, 8)}


def feature_examples(data_dir: str) -> list[dict[str, np.ndarray]]:
    from vau_jax.data.datasets import synthvad_dataset
    from vau_jax.data.features import FeatureStore
    from vau_jax.data.frames import FrameSpec
    from vau_jax.data.synthvad import SynthConfig

    synth = SynthConfig(height=32, width=32, fps=4.0, min_seconds=3.0, max_seconds=4.0)
    videos = synthvad_dataset(data_dir, synth, NUM_VIDEOS, 0).videos["train"]
    spec = FrameSpec(fps=4.0, size=32)
    store = FeatureStore(os.path.join(data_dir, "features"), GridEncoder(), spec, dtype="float32")
    features = store.ensure(videos, desc="kill-test features")
    out = []
    for i in range(len(features)):
        for x in features[i]["x"]:
            x = (x - 0.5) * 4.0
            out.append({"x": x.astype(np.float32), "y": np.float32(np.sin(x.sum()))})
    return out


def main(data_dir: str, workdir: str) -> None:
    import jax

    from tests.train import toy_method
    from tests.train.toy_method import ToyMethod, config
    from vau_jax.train.trainer import Trainer

    examples = feature_examples(data_dir)
    toy_method._source = lambda n=64: examples  # the toy stages read the cached features
    trainer = Trainer(ToyMethod(steps=STEPS, checkpoint_every=2), config(), workdir)
    params = trainer.train()
    trainer.close()
    flat = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    np.savez(os.path.join(workdir, "final_params.npz"), **flat)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
