"""T-VAU's steps for ahead-of-time compilation (:mod:`vau_jax.aot`), from the config alone
(no checkpoint, no data): the paper preset's AHD on OpenCLIP ViT-H/14 taps and RAE in front
of the frozen LLaMA-VID (Vicuna-7B), under the config's precision policy.

* ``ahd``: AHD's train step on ``ahd.batch_size`` frames, ``tap_<k> [B, N, D]`` (the CLIP
  tower's patch tokens at each tapped block) and patch targets ``target [B, g, g]``;
* ``rae_narration`` / ``rae_anomaly``: the curriculum's train steps, RAE alone learning
  through the frozen LVLM, on ``rae.batch_size`` rows of ``rae_max_length`` tokens with
  their videos' ``visual [B, S, N, Dv]`` (EVA tokens), taps ``[B, S, N, D]`` and
  ``frame_valid [B, S]`` (``S = frames_per_video``);
* ``generate``: an answer to ``aot_eval_batch`` videos' questions: AHD's heatmaps, RAE's
  prompts and the prompt (``rae_max_length`` tokens, an upper bound) prefilled into a KV
  cache, then ``max_answer_tokens`` greedy cached decode steps.

The frozen towers (ViT-H/14 for the taps, EVA-ViT-g for the LVLM) run once per video when
the features are cached, outside these steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vau_jax.aot import AotStep, apply_step, greedy_answers, train_step


def shell(config: Any) -> Any:
    """A :class:`~vau_jax.methods.tvau.method.TVAU` with its models built from the config's
    registry names (no checkpoint read, no data): what the steps need."""
    from vau_jax.methods.tvau.method import TVAU
    from vau_jax.methods.vagpt.paper import vagpt_vlm_config
    from vau_jax.models import registry
    from vau_jax.models.vlm import VideoLLM

    m = TVAU(config, workdir="")
    clip = registry.get_config(config.clip_encoder)
    vis = registry.get_config(config.vision_encoder)
    m.taps = tuple(int(t) for t in config.taps)
    m.width = int(clip.vision_config.hidden_size)
    m.grid = int(clip.vision_config.image_size) // int(clip.vision_config.patch_size)
    m.vis_width = int(vis.hidden_size)
    m.vis_tokens = (int(vis.image_size) // int(vis.patch_size)) ** 2
    m.prompts = np.zeros((2, int(clip.projection_dim)), np.float32)
    m.vlm = VideoLLM(vagpt_vlm_config(config))
    m.llm_cfg = m.vlm.config.llm
    m.build_heads(int(clip.projection_dim))
    return m


def aot_steps(config: Any, mesh: Any) -> list[AotStep]:
    """The paper preset's AHD and RAE train steps and its generation step on ``mesh``."""
    from vau_jax import sharding

    rules = sharding.rules_from_config(config)
    m = shell(config)
    boxed = m.abstract_params()
    s = jax.ShapeDtypeStruct
    n, g, taps = m.grid * m.grid, m.grid, range(len(m.taps))
    b = int(config.ahd.batch_size)
    ahd_batch = {f"tap_{k}": s((b, n, m.width), jnp.float32) for k in taps}
    ahd_batch["target"] = s((b, g, g), jnp.float32)
    frozen = [r"^rae/", r"^vlm/"]
    steps = [
        train_step(
            "ahd",
            m._ahd_loss,
            {**dict(config.ahd_stage.optimizer), "freeze": frozen},
            boxed,
            ahd_batch,
            mesh,
            rules,
        )
    ]

    def rows(b: int, loss: bool) -> dict[str, jax.ShapeDtypeStruct]:
        t, length = int(config.frames_per_video), int(config.rae_max_length)
        lq = int(config.max_query_length)
        out = {
            "input_ids": s((b, length), jnp.int32),
            "attention_mask": s((b, length), jnp.bool_),
            "video_mask": s((b, length), jnp.bool_),
            "query_ids": s((b, lq), jnp.int32),
            "query_mask": s((b, lq), jnp.bool_),
            "visual": s((b, t, m.vis_tokens, m.vis_width), jnp.float32),
            "frame_valid": s((b, t), jnp.bool_),
            **{f"tap_{k}": s((b, t, n, m.width), jnp.float32) for k in taps},
        }
        if loss:
            out["loss_mask"] = s((b, length), jnp.bool_)
        return out

    for kind in ("narration", "anomaly"):
        cfg = config[f"rae_{kind}"]
        steps.append(
            train_step(
                f"rae_{kind}",
                m._rae_loss,
                {**dict(cfg.optimizer), "freeze": [r"^ahd/", r"^vlm/"]},
                boxed,
                rows(int(config.rae.batch_size), True),
                mesh,
                rules,
                grad_accum_steps=int(cfg.get("grad_accum_steps", 1)),
            )
        )

    new = int(config.max_answer_tokens)

    def generate(params: Any, **b: jax.Array) -> jax.Array:
        """Greedy answers ``[B, max_answer_tokens]``."""
        emb = m.prefix_embeds(params, b)
        return greedy_answers(m.llm_cfg, params["vlm"]["llm"], emb, b["attention_mask"], new)

    inputs = rows(int(config.get("aot_eval_batch", 8)), False)
    steps.append(apply_step("generate", generate, boxed, inputs, mesh, rules))
    return steps
