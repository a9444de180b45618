"""Paper presets need converted full-size checkpoints: say exactly which and how to get them."""

from __future__ import annotations

import os
import sys
from typing import Any

#: checkpoint role -> (HF repository of the public weights, what it provides)
SOURCES: dict[str, dict[str, tuple[str, str]]] = {
    "vadllama": {
        "vision": ("Salesforce/blip2-opt-2.7b (vision_model.*)", "EVA-ViT-g/14 image encoder"),
        "image_qformer": ("Salesforce/blip2-opt-2.7b (qformer.*, query_tokens)", "image Q-Former"),
        "video_qformer": (
            "DAMO-NLP-SG/Video-LLaMA (video Q-Former, after export to HF layout)",
            "video Q-Former",
        ),
        "llm": ("lmsys/vicuna-7b-v1.5", "Vicuna-7B (phase 3)"),
    },
    "vagpt": {
        "vision": ("openai/clip-vit-large-patch14", "CLIP ViT-L/14 (frozen)"),
        "patch_encoder": ("facebook/dinov2-large", "DINOv2 ViT-L/14 (SETS, frozen)"),
        "qformer": (
            "Salesforce/instructblip-vicuna-7b (qformer.*, query_tokens)",
            "text-conditioned Q-Former",
        ),
        "llm": ("lmsys/vicuna-7b-v1.5", "Vicuna-7B"),
    },
}


def missing_checkpoints(config: Any) -> list[str]:
    """Roles of ``config.paper_checkpoints`` that are unset or not a converted folder."""
    missing = []
    for role, path in dict(config.get("paper_checkpoints", {})).items():
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            missing.append(role)
    return missing


def explain_missing_weights(config: Any, stream: Any = None) -> int:
    """Prints the conversion commands for every missing checkpoint; returns an exit code.

    Returns 2 when something is missing (nothing is trained), 0 when all are present.
    """
    stream = stream or sys.stderr
    missing = missing_checkpoints(config)
    if not missing:
        return 0
    table = SOURCES.get(config.method, {})
    lines = [
        f"vau_jax: the '{config.method}:paper' preset needs converted full-size checkpoints, "
        "and none can be downloaded at run time. Missing: " + ", ".join(missing) + ".",
        "On a machine with the weights: download each HF repository (huggingface-cli download REPO "
        "--local-dir DIR, safetensors), then convert and point the config at the result:",
    ]
    for role in missing:
        repo, what = table.get(role, ("<HF repository>", role))
        lines.append(f"  # {what}: {repo}")
        lines.append(
            f"  python -m vau_jax.convert --src=/path/to/{role}_hf --dst=checkpoints/{role}"
        )
    flags = " ".join(f"--config.paper_checkpoints.{r}=checkpoints/{r}" for r in missing)
    lines.append(f"then: python -m vau_jax.main --config=configs/{config.method}.py:paper {flags}")
    print("\n".join(lines), file=stream)
    return 2
