"""T-VAU's paper preset: the checkpoint roles, the converted towers it reads, and the
full-size trees under ``jax.eval_shape``.

The paper does not name its LVLM (T-VAU §3: "a frozen LVLM backbone"; AHD taps blocks
1/8/16/32 of a 32-block vision tower whose text tower embeds the normal/abnormal prompts).
Our choice, kept as on the tiny preset (where the frozen LVLM is the base video LLM VA-GPT
starts from, and the CLIP tower is both AHD's and the LVLM's):

* ``clip``: OpenCLIP ViT-H/14 (laion2B), the 32-block CLIP-family tower with its text
  tower (986,109,441 parameters): AHD's taps and prompt embeddings;
* ``vision`` + ``vlm``: the frozen LVLM is LLaMA-VID (Vicuna-7B), VA-GPT's starting point
  (:mod:`vau_jax.methods.vagpt.paper`: the same two roles and converters), reading its own
  EVA-ViT-g tokens, since its Q-Former cross-attends 1408-wide EVA tokens.

AHD (4 per-tap MLPs 1280 → text width 1024) and RAE (projections to Vicuna's 4096) are the
only trained parts; :func:`tvau_abstract_params` gives every full-size tree (shardings,
parameter counts) without weights.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.methods.paper import Source
from vau_jax.methods.vagpt import paper as vagpt_paper
from vau_jax.models import registry

#: checkpoint role -> source of its public weights.
SOURCES: dict[str, Source] = {
    "clip": Source(
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "OpenCLIP ViT-H/14 in HF's CLIPModel layout (vision + text towers: AHD's taps and "
        "prompt embeddings)",
        include=(
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ),
    ),
    "vision": vagpt_paper.SOURCES["vision"],
    "vlm": vagpt_paper.SOURCES["vlm"],
}


def tvau_abstract_params(config: Any) -> dict[str, Any]:
    """Full-size T-VAU parameter trees under ``jax.eval_shape`` (no memory), boxed
    (``nn.LogicallyPartitioned``) so :func:`vau_jax.sharding.param_shardings` derives a
    ``NamedSharding`` for each leaf. Keys:

    * ``clip``: the CLIP model of ``config.clip_encoder`` (vision + text towers; frozen);
    * ``vision``: the LVLM's vision tower, ``config.vision_encoder`` (frozen);
    * ``vlm``: the LVLM in LLaMA-VID's layout (:func:`vagpt_paper.vagpt_vlm_config`; frozen);
    * ``ahd``: AHD on ``len(config.taps)`` taps of the CLIP tower's width, to its text width;
    * ``rae``: RAE projecting to the LLM's width.
    """
    from vau_jax.models.heads.ahd import AHD, AHDConfig
    from vau_jax.models.heads.rae import RAE, config_from

    clip_cfg = registry.get_config(config.clip_encoder)
    width = clip_cfg.vision_config.hidden_size
    vcfg = vagpt_paper.vagpt_vlm_config(config)
    ahd = AHD(
        AHDConfig(
            num_taps=len(config.taps),
            text_width=int(clip_cfg.projection_dim),
            mlp_hidden=int(config.ahd.mlp_hidden),
            init_temperature=float(config.ahd.init_temperature),
        )
    )
    taps = [jnp.zeros((1, 1, 2, 2, width), jnp.float32) for _ in config.taps]
    prompts = jnp.zeros((2, clip_cfg.projection_dim), jnp.float32)
    rae = RAE(config_from(config.rae, vcfg.llm.hidden_size))
    heat = jnp.zeros((1, int(config.frames_per_video), 16, 16), jnp.float32)
    key = jax.random.key(0)
    return {
        "clip": registry.abstract_params(config.clip_encoder),
        "vision": registry.abstract_params(config.vision_encoder),
        "vlm": vagpt_paper.lvlm_abstract_params(config),
        "ahd": jax.eval_shape(lambda: ahd.init(key, taps, prompts))["params"],
        "rae": jax.eval_shape(lambda: rae.init(key, heat))["params"],
    }


def clip_tower(config: Any, batch_size: int = 32) -> tuple[Any, Any]:
    """``(encoder, tokenizer)`` of ``config.paper_checkpoints.clip``: the converted CLIP
    model as a frozen feature-store encoder (class-token output; the method picks its taps)
    and the tokenizer the conversion kept beside it.

    Raises:
      FileNotFoundError / ValueError: the folder is not set, is not a converted CLIP model
        (vision + text), or has no tokenizer.
    """
    from vau_jax import encoders
    from vau_jax.convert.checkpoint import load_converted_tokenizer
    from vau_jax.models.clip_text import CLIPConfig

    path, _ = vagpt_paper.converted_role(config, "clip", CLIPConfig)
    tok = load_converted_tokenizer(path)
    if tok is None:
        raise FileNotFoundError(
            f"{path}: no tokenizer.json beside the converted CLIP model; convert the HF folder "
            "together with its tokenizer files (the conversion copies them)"
        )
    return encoders.from_checkpoint(path, outputs=("cls",), batch_size=batch_size), tok


def visual_encoder(config: Any) -> Any:
    """The LVLM's visual tokens: the converted EVA tower's raw last-block patch tokens,
    cached as ``patches`` (:func:`vagpt_paper.eva_patches`)."""
    return vagpt_paper.eva_patches(str(config.paper_checkpoints.vision))
