"""VA-GPT's steps for ahead-of-time compilation (:mod:`vau_jax.aot`), from the config alone
(no checkpoint, no data): LLaMA-VID's video LLM (Vicuna-7B + text-conditioned Q-Former +
projectors) under the config's precision policy (:mod:`vau_jax.models.precision`).

* ``stage1`` / ``stage2``: the instruction-tuning train steps on the frozen towers' cached
  features, at the global ``batch_size`` (``grad_accum_steps`` micro-batches each):
  ``input_ids`` / ``attention_mask`` / ``video_mask`` / ``loss_mask [B, max_length]``,
  ``visual [B, T, N, Dv]`` (EVA-ViT-g patches, ``T = frames_per_video``),
  ``query_ids`` / ``query_mask [B, max_query_length]`` and, for stage 2 (SETS keeps
  ``sets_keep_ratio`` of the patches), ``dino [B, T, Nd, Dd]`` (DINOv2 patches on EVA's
  grid); features in the ``compute_dtype``;
* ``generate``: the evaluation's answer generation at ``aot_eval_batch`` videos: the
  multimodal prompt (``max_length`` tokens, an upper bound) prefilled into a KV cache, then
  ``max_answer_tokens`` greedy cached decode steps.

The frozen towers (EVA-ViT-g, DINOv2-L, TETG's input) run once per video when the features
are cached, outside these steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.aot import AotStep, apply_step, greedy_answers, train_step


def _batch(config: Any, b: int, dino: bool = True) -> dict[str, jax.ShapeDtypeStruct]:
    """The abstract instruction batch of ``b`` rows (module docstring); the features in the
    config's ``compute_dtype`` as the trainer's pipeline gives them, ``dino`` only for SETS."""
    from vau_jax.models import registry

    vis = registry.get_config(config.vision_encoder)
    dino_cfg = registry.get_config(config.patch_encoder)
    t, n = int(config.frames_per_video), (vis.image_size // vis.patch_size) ** 2
    nd = int(config.patch_encoder_grid) ** 2
    length, lq = int(config.max_length), int(config.max_query_length)
    s, dt = jax.ShapeDtypeStruct, jnp.dtype(str(config.compute_dtype))
    out = {
        "input_ids": s((b, length), jnp.int32),
        "attention_mask": s((b, length), jnp.bool_),
        "video_mask": s((b, length), jnp.bool_),
        "loss_mask": s((b, length), jnp.bool_),
        "visual": s((b, t, n, vis.hidden_size), dt),
        "query_ids": s((b, lq), jnp.int32),
        "query_mask": s((b, lq), jnp.bool_),
    }
    if dino:
        out["dino"] = s((b, t, nd, dino_cfg.hidden_size), dt)
    return out


def aot_steps(config: Any, mesh: Any) -> list[AotStep]:
    """The paper preset's stage 1 and 2 train steps and its generation step on ``mesh``."""
    from vau_jax import sharding
    from vau_jax.methods.vagpt.method import instruction_loss, prompt_embeds
    from vau_jax.methods.vagpt.paper import lvlm_abstract_params, vagpt_vlm_config
    from vau_jax.models.vlm import VideoLLM

    rules = sharding.rules_from_config(config)
    model = VideoLLM(vagpt_vlm_config(config))
    boxed = lvlm_abstract_params(config)
    freeze = [] if config.train_llm else [r"^llm/"]
    keep = {"stage1": 1.0, "stage2": float(config.sets_keep_ratio) if config.use_sets else 1.0}
    steps = []
    for name in ("stage1", "stage2"):
        opt = dict(config[name].optimizer)
        opt["freeze"] = list(opt.get("freeze", ())) + freeze
        steps.append(
            train_step(
                name,
                instruction_loss(model, keep[name]),
                opt,
                boxed,
                _batch(config, int(config.batch_size), dino=keep[name] < 1.0),
                mesh,
                rules,
                grad_accum_steps=int(config[name].get("grad_accum_steps", 1)),
                accum_dtype=config[name].get("accum_dtype", None) or None,
            )
        )

    new = int(config.max_answer_tokens)

    def generate(params: Any, **b: jax.Array) -> jax.Array:
        """Greedy answers ``[B, max_answer_tokens]`` of the stage-2 model (SETS on)."""
        emb = prompt_embeds(model, params, b, keep["stage2"])
        return greedy_answers(model.config.llm, params["llm"], emb, b["attention_mask"], new)

    inputs = _batch(config, int(config.get("aot_eval_batch", 8)))
    inputs = {k: v for k, v in inputs.items() if k != "loss_mask"}
    steps.append(apply_step("generate", generate, boxed, inputs, mesh, rules))
    return steps
