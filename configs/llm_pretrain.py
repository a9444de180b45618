"""Text-only pretraining of the tiny LLaMA that VAD-LLaMA phase 3 keeps frozen.

    python -m vau_jax.main --config=configs/llm_pretrain.py

VAD-LLaMA's tiny preset builds it automatically when phase 3 is enabled and it is missing
(``data_cache/llm_pretrain_<hash>``). Reported: ``reading_*`` metrics, how well the LLM
answers the VAD-LLaMA question about held-out random timelines whose clip slots hold words.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import ml_collections  # noqa: E402
from common import base_config, data_dir, parse_preset, text_lm_schedule  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, ("tiny",))
    c = base_config()
    c.method = "llm_pretrain"
    c.preset = preset
    c.data_dir = data_dir()
    c.model = "tiny-llama"
    c.vocab_size = 512
    # The SynthVAD tokenizer (vau_jax/data/corpus.py: TOKENIZERS): "synthvad", or
    # "synthvad_letters", where option letters are the same token in prompt and answer.
    c.tokenizer = "synthvad"
    c.chat_format = "vicuna_v1"
    # The Vicuna system prompt is 93 pieces of the 512-piece tokenizer: left out (tiny only).
    c.system = ""
    c.max_length = 160  # prompt + answer tokens (16 clips with their times: ~50)
    c.max_answer = 48  # generated tokens at evaluation
    c.clip_words = ("walk", "unusual")  # what a normal / anomalous clip slot holds
    c.synthvad = ml_collections.ConfigDict({"height": 64, "width": 64, "fps": 8.0})
    c.frames_per_clip = 8
    c.min_clips = 4
    c.max_clips = 16
    c.num_description_videos = 200  # train-split videos whose normal ones give descriptions
    c.description_fraction = 0.2
    c.num_train_examples = 6000  # random timelines
    c.num_eval_examples = 64
    text_lm_schedule(c, steps=1500)
    return c
