"""VA-GPT (SETS + TETG on a LLaMA-VID-style video LLM).

    python -m vau_jax.main --config=configs/vagpt.py          # tiny preset, SynthVAD
    python -m vau_jax.main --config=configs/vagpt.py:paper    # CLIP-L/14 + DINOv2-L + Vicuna-7B

The method itself lands with issue [5/5]; until then ``main`` says so.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from common import base_config, parse_preset  # noqa: E402


def get_config(arg: str | None = None):
    preset = parse_preset(arg)
    c = base_config()
    c.method = "vagpt"
    c.preset = preset
    c.vision_encoder = "tiny-clip-vit" if preset == "tiny" else "clip-vit-l/14"
    c.patch_encoder = "tiny-dinov2" if preset == "tiny" else "dinov2-l/14"
    c.qformer = "tiny-qformer" if preset == "tiny" else "blip2-qformer"
    c.llm = "tiny-llama" if preset == "tiny" else "vicuna-7b"
    c.sets_keep_ratio = 0.5
    c.tetg_threshold = 0.5
    return c
