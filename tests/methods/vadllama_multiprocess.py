"""VAD-LLaMA phases 1–2 from a dataset on disk, for the multi-process equality test.

The dataset is a user-footage ``folder`` layout (``videos/*.mp4`` + ``annotations.csv``,
video-level labels) plus the VE features that phases 1–2 really read: the feature store's
ArrayRecord shards of per-frame query tokens (``queries [T, M, D]``, as the paper preset's
image Q-Former writes them). A stand-in VE (:class:`RandomQueryVE`, a fixed random
projection of pooled pixels) fills the store once through :meth:`FeatureStore.ensure`, so no
SynthVAD render or CLIP pretraining is needed; the training runs get the same VE identity
with encoding switched off, so every training example must come from the store on disk.

Script entry point (one process of a run; ``VAU_JAX_*`` put it under ``jax.distributed``
with gloo collectives, :mod:`vau_jax.distributed`)::

    python tests/methods/vadllama_multiprocess.py ROOT WORKDIR [--steps=N]

trains VADor phase 1 then phase 2 with the real method (:class:`VADLLaMA` stages, grain
pipeline, multi-stage trainer through :func:`vau_jax.methods.runner.run_method`) and writes
``WORKDIR/final_params_<process>.npz`` (the full parameters, gathered) and
``WORKDIR/reads_<process>.json`` (the training-source indices this process read, per stage,
in read order).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # run as a script: make `vau_jax` and `tests` importable
    sys.path.insert(0, _ROOT)

from vau_jax.methods.vadllama import method as vadllama_method  # noqa: E402
from vau_jax.methods.vadllama.method import VADLLaMA  # noqa: E402

#: the stand-in VE's identity (part of the feature store's folder key)
ENCODER_KEY = "tests-random-query-ve-v1"
WIDTH, QUERIES = 16, 3  # tiny query tokens: 3 per frame, 16 wide
FPS, SIZE = 8.0, 32  # native = sampled frame rate, frame side
NUM_TRAIN, NUM_TEST = 16, 4
# Global batch (4 devices x 1) and steps per phase (the first at lr 0, warm-up). Few steps:
# against in-process collectives the rounding of the gradient all-reduce differs, and Adam
# grows that difference every step (measured max |param diff|: 7.6e-7 at 3, 1.5e-6 at 4).
BATCH, STEPS = 4, 3
SEED = 0


class RandomQueryVE:
    """A stand-in frozen VE for the feature store: ``QUERIES`` query tokens of width
    ``WIDTH`` per frame, ``tanh`` of a fixed random projection of the 4 x 4 mean-pooled
    pixels (deterministic). With ``encode=False`` it only lends its identity (the store
    folder key) and fails if asked to encode: features must already be on disk."""

    key = ENCODER_KEY
    width = WIDTH
    tokens_per_frame = QUERIES
    batch_size = 16

    def __init__(self, encode: bool = True):
        self.encode = encode
        self.proj = np.random.default_rng(1234).normal(size=(48, QUERIES * WIDTH)) / 4.0

    def __call__(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 ``[n, S, S, 3]`` -> ``{"queries": [n, QUERIES, WIDTH]}`` float32."""
        if not self.encode:
            raise AssertionError("the training run tried to encode video: features must be cached")
        x = np.asarray(frames, np.float32) / 255.0
        n, s = x.shape[0], x.shape[1]
        pooled = x.reshape(n, 4, s // 4, 4, s // 4, 3).mean((2, 4)).reshape(n, 48)
        out = np.tanh((pooled - 0.5) @ self.proj).astype(np.float32)
        return {"queries": out.reshape(n, QUERIES, WIDTH)}


def write_dataset(root: str, seed: int = SEED) -> None:
    """Writes the ``folder`` layout under ``root/dataset``: ``NUM_TRAIN`` train videos
    (every other one ``Fighting``, weak video-level labels) and ``NUM_TEST`` normal test
    videos, 4–12 frames of ``SIZE``² noise at ``FPS``; an anomalous video has a bright
    square in some of its frames."""
    from vau_jax.data.synthvad.writers import write_video

    rng = np.random.default_rng(seed)
    videos = os.path.join(root, "dataset", "videos")
    os.makedirs(videos, exist_ok=True)
    rows = ["video,split,label,start_s,end_s"]
    for split, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        for i in range(n):
            anomalous = split == "train" and i % 2 == 1
            t = int(rng.integers(4, 13))
            frames = rng.integers(0, 96, size=(t, SIZE, SIZE, 3)).astype(np.uint8)
            if anomalous:
                start = int(rng.integers(0, t - 1))
                frames[start:, 8:24, 8:24] = 255
            name = f"{split}_{i:02d}.mp4"
            write_video(os.path.join(videos, name), frames, FPS)
            rows.append(f"{name},{split},{'Fighting' if anomalous else 'normal'},,")
    with open(os.path.join(root, "dataset", "annotations.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


def make_config(root: str, steps: int = STEPS) -> Any:
    """The tiny VAD-LLaMA preset on the ``folder`` dataset of :func:`write_dataset`, shrunk:
    2-frame clips, at most 4 clips per video, batch ``BATCH`` over all devices (mesh
    ``data=-1``), ``steps`` steps per phase, a loss logged every step."""
    configs = os.path.join(_ROOT, "configs")
    if configs not in sys.path:
        sys.path.insert(0, configs)
    import vadllama as vadllama_config

    c = vadllama_config.get_config("tiny")
    c.data_dir = os.path.join(root, "data")
    c.dataset, c.dataset_dir = "folder", os.path.join(root, "dataset")
    c.fps, c.frame_size, c.feature_dtype = FPS, SIZE, "float32"
    c.clip_pretrain.input = "rgb"  # the frame spec of the stand-in VE (no CLIP is built)
    c.max_clips, c.frames_per_clip, c.motion_tokens = 4, 2, False
    c.batch_size, c.log_every, c.seed = BATCH, 1, SEED
    c.phase1.steps = c.phase2.steps = int(steps)
    c.phase1.optimizer.warmup_steps = c.phase2.optimizer.warmup_steps = 1
    c.mesh.data = -1
    c.async_checkpointing = False
    return c


class RecordedSource:
    """A random-access source that appends every index read to ``log`` (grain reads in
    its own threads; list appends are atomic)."""

    def __init__(self, source: Any, log: list[int]):
        self.source, self.log = source, log

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Any:
        self.log.append(int(i))
        return self.source[i]


class RecordingVADLLaMA(VADLLaMA):
    """:class:`VADLLaMA` whose training sources record what they read: ``reads[k]`` is the
    list of train-source indices read by the ``k``-th one built (stage ``k``)."""

    def __init__(self, config: Any, workdir: str):
        super().__init__(config, workdir)
        self.reads: list[list[int]] = []

    def source(self, split: str) -> Any:
        src = super().source(split)
        if split != "train":
            return src
        self.reads.append([])
        return RecordedSource(src, self.reads[-1])


def build_method(config: Any, workdir: str, encode: bool) -> RecordingVADLLaMA:
    """The prepared method with :class:`RandomQueryVE` as its VE (``encode=True`` fills the
    feature store; ``False`` requires every video to be cached already)."""
    method = RecordingVADLLaMA(config, workdir)
    saved = vadllama_method.make_encoder
    vadllama_method.make_encoder = lambda c, inference=False: RandomQueryVE(encode)
    try:
        method.prepare()
    finally:
        vadllama_method.make_encoder = saved
    return method


def flat_params(params: Any) -> dict[str, np.ndarray]:
    """``{"a/b/kernel": array}`` of a params tree, gathered to this host (every process
    must call it: multi-process arrays are all-gathered)."""
    import jax
    from jax.experimental import multihost_utils

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if jax.process_count() > 1:
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
        out[name] = np.asarray(jax.device_get(leaf))
    return out


def main(argv: list[str]) -> None:
    """Trains phases 1–2 in ``argv[2]`` from the data under ``argv[1]`` (module docstring)."""
    import jax

    from vau_jax import distributed
    from vau_jax.methods.runner import run_method

    root, workdir = argv[1], argv[2]
    opts = dict(a.lstrip("-").split("=", 1) for a in argv[3:])
    distributed.initialize()
    config = make_config(root, int(opts.get("steps", STEPS)))
    method = build_method(config, workdir, encode=False)
    params, _ = run_method(method, config, workdir, "train")
    pid = jax.process_index()
    np.savez(os.path.join(workdir, f"final_params_{pid}.npz"), **flat_params(params))
    info = {
        "process": pid,
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
        "reads": method.reads,
    }
    with open(os.path.join(workdir, f"reads_{pid}.json"), "w", encoding="utf-8") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main(sys.argv)
