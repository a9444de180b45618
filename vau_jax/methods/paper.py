"""Paper presets: full-size parameter trees (no memory) and which checkpoints they need.

Paper presets need converted full-size checkpoints, and none can be downloaded at run time.
:func:`explain_missing_weights` prints, per missing role, the HF repository, the download
command, the conversion command and the ``--config.paper_checkpoints.<role>=DIR`` flag.
:func:`vagpt_abstract_params` builds the VA-GPT paper model under ``jax.eval_shape`` so
shapes and shardings are tested without allocating the 7B parameters.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.models import registry
from vau_jax.models.heads.tetg import TETG, TETGConfig
from vau_jax.models.vlm import VideoLLM, VLMConfig


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a paper checkpoint comes from.

    Attributes:
      repo: HF repository id of the public weights (``huggingface-cli download REPO``).
      what: what the role provides.
      loader: ``""`` when ``python -m vau_jax.convert`` reads the downloaded folder directly;
        otherwise ``"module:function"``, a ``path -> (module, params)`` reader of a composite
        folder (e.g. the Q-Former inside a full InstructBLIP model), run with ``python -c``.
      prepare: a shell command run before converting, with ``{hf}`` (the download folder)
        and ``{bare}`` (where it writes a bare model folder, which is then converted).
      note: an extra line printed under the commands (empty: none).
    """

    repo: str
    what: str
    loader: str = ""
    prepare: str = ""
    note: str = ""


_BIN_NOTE = (
    'if the repository has no *.safetensors, download with --include "*.json" "*.bin" '
    "and re-save first: LlamaForCausalLM.from_pretrained(DIR).save_pretrained(DIR, "
    "safe_serialization=True)"
)

#: method -> checkpoint role -> source of its public weights.
SOURCES: dict[str, dict[str, Source]] = {
    "vadllama": {
        "vision": Source(
            "Salesforce/blip2-opt-2.7b",
            "EVA-ViT-g/14 image encoder (vision_model.* of BLIP-2)",
            prepare='python -c "from transformers import Blip2Model; '
            "Blip2Model.from_pretrained('{hf}').vision_model.save_pretrained('{bare}')\"",
        ),
        "image_qformer": Source(
            "Salesforce/blip2-opt-2.7b",
            "image Q-Former (qformer.*, query_tokens of BLIP-2)",
            loader="vau_jax.convert.hf_qformer:load_full_model",
        ),
        "video_qformer": Source(
            "DAMO-NLP-SG/Video-LLaMA",
            "video Q-Former",
            note="the video Q-Former must first be exported to an HF Blip2QFormerModel folder",
        ),
        "llm": Source("lmsys/vicuna-7b-v1.5", "Vicuna-7B (phase 3)", note=_BIN_NOTE),
    },
    "vagpt": {
        "vision": Source("openai/clip-vit-large-patch14", "CLIP ViT-L/14 (frozen)"),
        "patch_encoder": Source("facebook/dinov2-large", "DINOv2 ViT-L/14 (SETS, frozen)"),
        "qformer": Source(
            "Salesforce/instructblip-vicuna-7b",
            "text-conditioned Q-Former (qformer.*, query_tokens of InstructBLIP)",
            loader="vau_jax.convert.hf_qformer:load_full_model",
            note="its cross-attention key/value kernels read 1408-wide EVA tokens; VA-GPT feeds "
            "1024-wide CLIP-L tokens, so those kernels do not fit and are trained from scratch "
            "in stage 1",
        ),
        "llm": Source("lmsys/vicuna-7b-v1.5", "Vicuna-7B", note=_BIN_NOTE),
    },
}


def missing_checkpoints(config: Any) -> list[str]:
    """Roles of ``config.paper_checkpoints`` that are unset or not a converted folder."""
    missing = []
    for role, path in dict(config.get("paper_checkpoints", {})).items():
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            missing.append(role)
    return missing


def convert_command(source: Source, src: str, dst: str) -> str:
    """The shell command converting the downloaded folder ``src`` into ``dst``."""
    if not source.loader:
        return f"python -m vau_jax.convert --src={src} --dst={dst}"
    mod, fn = source.loader.split(":")
    return (
        f'python -c "from {mod} import {fn}; '
        "from vau_jax.convert.checkpoint import save_converted; "
        f"m, p = {fn}('{src}'); save_converted('{dst}', m, p, source='{src}')\""
    )


def explain_missing_weights(config: Any, stream: Any = None) -> int:
    """Prints the download + conversion commands for every missing checkpoint.

    Returns an exit code: 2 when something is missing (nothing is trained), 0 when every
    ``config.paper_checkpoints`` role points at a converted folder.
    """
    stream = stream or sys.stderr
    missing = missing_checkpoints(config)
    if not missing:
        return 0
    table = SOURCES.get(config.method, {})
    lines = [
        f"vau_jax: the '{config.method}:paper' preset needs converted full-size checkpoints, "
        "and none can be downloaded at run time. Missing: " + ", ".join(missing) + ".",
        "On a machine with the weights (and network), for each missing role: download the HF "
        "repository (safetensors), convert it, then point the config at the result:",
    ]
    for role in missing:
        src = table.get(role, Source("<HF repository>", role))
        hf, dst = f"hf/{role}", f"checkpoints/{role}"
        lines.append(f"  # {role}: {src.what} <- {src.repo}")
        lines.append(
            f"  huggingface-cli download {src.repo} --local-dir {hf} "
            '--include "*.json" "*.safetensors"'
        )
        if src.prepare:
            bare = f"{hf}_bare"
            lines.append("  " + src.prepare.format(hf=hf, bare=bare))
            hf = bare
        lines.append(f"  {convert_command(src, hf, dst)}")
        if src.note:
            lines.append(f"  #   note: {src.note}")
    flags = " ".join(f"--config.paper_checkpoints.{r}=checkpoints/{r}" for r in missing)
    lines.append(f"then: python -m vau_jax.main --config=configs/{config.method}.py:paper {flags}")
    print("\n".join(lines), file=stream)
    return 2


# ------------------------------------------------------------------------- VA-GPT paper model


def vagpt_vlm_config(config: Any) -> VLMConfig:
    """The paper's video LLM: Vicuna-7B behind a text-conditioned BLIP-2-size Q-Former that
    reads ``vision_encoder``-wide tokens (CLIP-L/14: 1024), with ``projector_hidden`` MLPs."""
    width = registry.get_config(config.vision_encoder).hidden_size
    qformer = dataclasses.replace(
        registry.get_config(config.qformer),
        text_input=True,  # the context token needs the instruction (LLaMA-VID)
        encoder_hidden_size=width,
    )  # vocabulary: the Q-Former's own BERT vocabulary (30,522)
    return VLMConfig(
        llm=registry.get_config(config.llm_preset),
        qformer=qformer,
        vision_width=width,
        projector_hidden=int(config.projector_hidden),
    )


def vagpt_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size VA-GPT parameter trees under ``jax.eval_shape`` (no memory).

    Leaves stay boxed (``nn.LogicallyPartitioned``), so
    :func:`vau_jax.sharding.param_shardings` derives a ``NamedSharding`` for each. Keys (the
    checkpoint roles of ``config.paper_checkpoints`` map onto them):

    * ``vision``: the CLIP ViT-L/14 vision tower (``config.vision_encoder``; 303,179,776);
    * ``patch_encoder``: DINOv2 ViT-L/14 (``config.patch_encoder``; SETS distances);
    * ``vlm``: :class:`~vau_jax.models.vlm.VideoLLM` (Q-Former + projectors + Vicuna-7B);
    * ``tetg``: the TETG MLP on the CLIP **class token** before the visual projection
      (1024-wide for CLIP-L: the token the tiny preset uses too, taken from
      ``last_hidden_state[:, 0]``, so ``vision`` needs no ``visual_projection``).
    """
    vcfg = vagpt_vlm_config(config)
    t, k, length = 1, 4, 8  # dummy shapes: any values give the same parameter shapes
    ids = jnp.zeros((1, length), jnp.int32)
    video = jnp.zeros((1, length), bool).at[:, 1 : 1 + 2 * t].set(True)
    visual = jnp.zeros((1, t, k, vcfg.vision_width), jnp.float32)
    query = jnp.zeros((1, 4), jnp.int32)
    vlm = jax.eval_shape(
        lambda: VideoLLM(vcfg).init(
            jax.random.key(0), ids, jnp.ones_like(video), video, visual, query
        )
    )
    tetg_module = TETG(TETGConfig(hidden=tuple(config.tetg.hidden)))
    cls = jnp.zeros((1, vcfg.vision_width), jnp.float32)
    tetg = jax.eval_shape(lambda: tetg_module.init(jax.random.key(0), cls))
    return {
        "vision": registry.abstract_params(config.vision_encoder),
        "patch_encoder": registry.abstract_params(config.patch_encoder),
        "vlm": vlm["params"],
        "tetg": tetg["params"],
    }
