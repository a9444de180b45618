"""VAD-LLaMA phases 1–2: VADor (video Q-Former + anomaly predictor) with Long-Term Context.

    python -m vau_jax.main --config=configs/vadllama.py            # tiny preset, SynthVAD
    python -m vau_jax.main --config=configs/vadllama.py:paper      # EVA-ViT-g + Q-Formers

Tiny: frozen contrastively pretrained tiny CLIP per frame (built automatically when missing;
it sees causally background-subtracted frames, ``clip_pretrain.input="background"``),
8-frame clips, tiny video Q-Former, LTC with K=4 normal/abnormal/history lists. Reports
frame-level AUC_O / AUC_A on the SynthVAD test split (see README for the measured numbers).
Paper: AdamW 1e-5, weight decay 1e-3, batch 8, cosine with 5 warm-up epochs, 30 epochs per
phase on UCF-Crime (1,610 training videos -> 202 steps per epoch).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import clip_pretrain  # noqa: E402
import ml_collections  # noqa: E402
from common import add_dataset_fields, base_config, data_dir, parse_preset  # noqa: E402


def _phase(steps: int, lr: float, warmup: int, freeze: list[str]) -> ml_collections.ConfigDict:
    """A phase: ``steps`` is shared with the schedule's ``total_steps`` (override either)."""
    ref = ml_collections.FieldReference(steps)
    opt = ml_collections.ConfigDict(
        {
            "name": "adamw",
            "lr": lr,
            "weight_decay": 1e-3,
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
    c.method = "vadllama"
    c.preset = preset
    c.data_dir = data_dir()
    c.clip_pretrain = clip_pretrain.get_config("tiny")
    # The encoder sees causally background-subtracted frames: SynthVAD scenes are random per
    # video and a pixel encoder learns the scene (linear probe on its tokens: 0.55-0.65 test
    # frame AUC); on background-subtracted frames the same probe reaches 0.85 (README).
    c.clip_pretrain.input = "background"
    c.clip_pretrain.num_steps = 1000
    c.synthvad = ml_collections.ConfigDict({"height": 64, "width": 64, "fps": 8.0})
    add_dataset_fields(c, frame_size=64)
    # Pre-extracted snippet features instead of videos (VAD-LLaMA only): "i3d" | "vadclip"
    # under `features_dir` (default <dataset_dir>/features), crops averaged (-1) or one kept.
    c.features = ""
    c.features_dir = ""
    c.feature_crop = -1
    c.feature_width = 0
    c.threshold = 0.5  # clip score -> anomalous, for the predicted intervals
    c.report_videos = 6
    c.num_train_videos = 800
    c.num_test_videos = 96
    c.max_clips = 16
    c.frames_per_clip = 8
    c.pool = 4
    c.motion_tokens = False  # True appends per-token frame differences (measured: no gain)
    c.video_qformer = "tiny-qformer"
    c.ap_hidden = 64
    c.ltc = ml_collections.ConfigDict(
        {"k": 4, "use_normal": True, "use_abnormal": True, "use_history": True, "retrieval": "dot"}
    )
    c.extra_losses = False
    c.batch_size = 8
    c.log_every = 50
    phase1_freeze = [r"^ap_base/", r"^ltc/"]
    phase2_freeze = [r"^video_qformer/", r"^frame_position$", r"^ap_base/"]
    c.phase1 = _phase(400, 1e-3, 40, phase1_freeze)
    c.phase2 = _phase(400, 5e-4, 40, phase2_freeze)
    if preset == "paper":
        steps, warmup = 30 * 202, 5 * 202
        c.vision_encoder = "eva-vit-g/14"
        c.image_qformer = "blip2-qformer"
        c.video_qformer = "blip2-qformer"
        c.frames_per_clip = 16
        c.frame_size = 224
        c.fps = 30.0  # UCF-Crime's native rate: 16-frame clips are the dataset's snippets
        c.dataset = "ucf_crime"
        c.batch_size = 8
        c.phase1 = _phase(steps, 1e-5, warmup, phase1_freeze)
        c.phase2 = _phase(steps, 1e-5, warmup, phase2_freeze)
        c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
        c.paper_checkpoints = ml_collections.ConfigDict(
            {"vision": "", "image_qformer": "", "video_qformer": ""}
        )
        c.encoder_batch = 32
    # Phase 3 (vau_jax/methods/vadllama_phase3.py): adaptor Linear([x, x̃]) -> LLM width
    # trained alone on pseudo-instructions + normal descriptions; own run in <workdir>/phase3.
    import llm_pretrain as llm_pretrain_config  # configs/llm_pretrain.py (the frozen tiny LLM)

    p3 = _phase(300, 1e-3, 30, [r"^vador/", r"^llm/"])
    p3.enabled = False  # --config.phase3.enabled=True (tiny: see the README for its cost)
    p3.llm_pretrain = llm_pretrain_config.get_config("tiny")
    p3.threshold = 0.5  # clip score -> anomalous clip in the pseudo-instructions
    p3.description_fraction = 0.25
    p3.num_description_videos = 200  # first train videos whose normal ones are described
    p3.batch_size = 8
    p3.eval_batch_size = 32
    p3.question_index = 0  # templates.VADLLAMA_QUESTIONS[i] asked at evaluation
    c.phase3 = p3
    return c
