"""VA-GPT: SETS + TETG on a LLaMA-VID-style video LLM; the README's main job.

    python -m vau_jax.main --config=configs/vagpt.py                    # tiny preset, SynthVAD
    python -m vau_jax.main --config=configs/vagpt.py --config.llm=smollm2   # real SmolLM2-135M
    python -m vau_jax.main --config=configs/vagpt.py:paper              # CLIP-L + DINOv2-L + Vicuna

Tiny: the frozen contrastively pretrained tiny CLIP (built automatically when missing) gives
per-frame class + patch tokens; a frozen seeded tiny DINOv2 on the same 8×8 grid drives SETS;
TETG (3-layer MLP on class tokens, SGD lr 1e-3, batch 32) is trained alone first and then
frozen; the LLM (tiny LLaMA from scratch, vocabulary = the SynthVAD sentencepiece model) is
instruction-tuned on 4-option multiple-choice questions: stage 1 on full tokens, stage 2
(≤150 iterations) on SETS tokens. Evaluation: Total / Temporal Acc on SynthVAD *test*.
Paper: where VA-GPT is silent the LLaMA-VID fine-tuning settings are used (AdamW lr 2e-5, no
weight decay, 3% warm-up, cosine, global batch 128), one epoch over the 775,241 UCF-Crime
instruction pairs of the supplementary material, then 150 SETS iterations.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import ml_collections  # noqa: E402
import vadllama as vadllama_config  # noqa: E402
from common import add_dataset_fields, base_config, data_dir, parse_preset  # noqa: E402


def _stage(steps: int, lr: float, warmup: int, freeze: list[str]) -> ml_collections.ConfigDict:
    ref = ml_collections.FieldReference(steps)
    opt = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": lr,
            "weight_decay": 0.0,
            "warmup_steps": warmup,
            "total_steps": ref,
            "grad_clip_norm": 1.0,
            "freeze": freeze,
        }
    )
    return ml_collections.ConfigDict({"steps": ref, "optimizer": opt})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg)
    c = base_config()
    c.method = "vagpt"
    c.preset = preset
    c.data_dir = data_dir()
    # The same frozen tiny CLIP as VAD-LLaMA (one checkpoint in the data dir serves both).
    c.clip_pretrain = vadllama_config.get_config("tiny").clip_pretrain
    c.synthvad = ml_collections.ConfigDict({"height": 64, "width": 64, "fps": 8.0})
    add_dataset_fields(c, frame_size=64)
    c.class_names = ()  # anomaly classes of the templates; () = the dataset's
    c.test_questions = ""  # a benchmark JSONL (vau_jax/data/formats/mcqa.py); "" = generated
    c.features = ""  # pre-extracted features are VAD-LLaMA's only: VA-GPT needs frames
    c.num_train_videos = 400
    c.num_test_videos = 96
    c.questions_per_train_video = 4  # MC questions per video (different distractors/order)
    c.questions_per_test_video = 2
    c.frames_per_video = 16  # frames sampled uniformly for the visual tokens
    # Encoders (frozen; features cached in the data dir).
    c.vision_encoder = "tiny-clip-vit"
    c.patch_encoder = "tiny-dinov2"
    c.patch_encoder_grid = 8  # tiny: DINOv2 on 64x64 with 8x8 patches = the CLIP grid
    c.patch_encoder_seed = 0
    # SETS / TETG switches (the ablation script flips them).
    c.use_sets = True
    c.use_tetg = True
    c.sets_keep_ratio = 0.5
    c.tetg = ml_collections.ConfigDict(
        {
            "hidden": (256, 128),
            "threshold": 0.5,
            "lr": 1e-3,
            "momentum": 0.9,
            "batch_size": 32,
            "steps": 3000,
            "frames_per_video": 32,
        }
    )
    # Video LLM.
    c.llm = "tiny"  # "tiny" (tiny LLaMA from scratch), "smollm2" (real GGUF weights)
    c.llm_preset = "tiny-llama"
    c.train_llm = True  # False: only Q-Former + projectors (LLM frozen)
    c.qformer = "tiny-qformer"
    c.projector_hidden = 0
    c.chat_format = "vicuna_v1"
    c.max_length = 320
    # "" drops the system sentence (93 tokens of the tiny tokenizer, no use to an LLM trained
    # from scratch); None = the chat format's default system prompt.
    c.system_prompt = ""
    c.max_query_length = 32
    c.eval_generate = True  # also score by generate-and-parse (greedy answer, letter parsed)
    c.batch_size = 8
    c.log_every = 50
    c.stage1 = _stage(200, 1e-3, 20, [])
    c.stage2 = _stage(50, 2e-4, 5, [])
    c.report_videos = 8
    if preset == "paper":
        c.vision_encoder = "clip-vit-l/14"
        c.patch_encoder = "dinov2-l/14"
        c.patch_encoder_grid = 16
        c.qformer = "blip2-qformer"
        c.llm = "paper"
        c.llm_preset = "vicuna-7b"
        c.projector_hidden = 4096
        c.frames_per_video = 32
        c.frame_size = 224
        c.fps = 1.0
        c.dataset = "ucf_crime"
        c.max_length = 2048
        c.system_prompt = None
        c.batch_size = 128
        steps = 775241 // 128
        c.stage1 = _stage(steps, 2e-5, int(0.03 * steps), [])
        c.stage2 = _stage(150, 2e-5, 5, [])
        c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 8, "tensor": 1})
        c.paper_checkpoints = ml_collections.ConfigDict(
            {"vision": "", "patch_encoder": "", "qformer": "", "llm": ""}
        )
        # The Q-Former's instruction tokenizer (a folder or tokenizer.json); "" = the
        # qformer_tokenizer/ folder the conversion kept beside the converted Q-Former.
        c.qformer_tokenizer = ""
    return c
