"""Contrastive pretraining of the tiny CLIP on SynthVAD frame/caption pairs.

    python -m vau_jax.main --config=configs/clip_pretrain.py

Every method's tiny preset starts from this checkpoint and builds it automatically when it
is missing (``data_cache/clip_pretrain_<hash>``). Trained on the frames and per-frame captions
of ``num_train_videos`` videos of SynthVAD's own ``pretrain`` split (``split``; disjoint seeds).
Reported: zero-shot accuracy on SynthVAD
*test* frames over the 7 anomaly types + normal (chance 1/8) and on anomalous frames over the
7 types (chance 1/7).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import ml_collections  # noqa: E402
from common import base_config, data_dir, parse_preset  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, ("tiny",))
    c = base_config()
    c.method = "clip_pretrain"
    c.preset = preset
    c.data_dir = data_dir()
    c.model = "tiny-clip"
    # What the vision tower sees: "rgb" pixels or "background"-subtracted frames (causal
    # per-video background, see vau_jax.methods.synth_features.background_subtracted).
    c.input = "rgb"
    c.vocab_size = 512
    c.max_text_length = 16
    c.synthvad = ml_collections.ConfigDict({"height": 64, "width": 64, "fps": 8.0})
    # The split pretrained on. CLIP pretrains on the web, never on a benchmark's training
    # videos: SynthVAD's "pretrain" split has its own seeds, disjoint from the train videos the
    # weakly supervised methods learn from (their per-frame captions describe the anomaly frame
    # by frame, i.e. are frame labels) and from the test videos. "train"/"test" are refused.
    c.split = "pretrain"
    c.num_train_videos = 400  # videos of `split` pretrained on
    c.num_test_videos = 48
    c.frames_per_video = 8
    c.batch_size = 64
    steps = ml_collections.FieldReference(2000)  # --config.num_steps=N also moves total_steps
    c.num_steps = steps
    c.checkpoint_every = 1000
    c.log_every = 200
    # One contrastive step per call (configs/common.py's default): five per call ran at 6.5
    # steps/s against 9.3 and gave a different tiny CLIP (README, *Training stack*).
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": 1e-3,
            "weight_decay": 0.05,
            "warmup_steps": 200,
            "total_steps": steps,
            "grad_clip_norm": 1.0,
            "no_decay": [r"(bias|scale|embedding|logit_scale|position)"],
        }
    )
    return c
