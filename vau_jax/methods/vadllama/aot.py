"""VAD-LLaMA's steps for ahead-of-time compilation (:mod:`vau_jax.aot`), from the config
alone (no checkpoint, no data).

* ``phase1`` / ``phase2``: the VADor train steps (video Q-Former + frame positions + AP, LTC)
  on the frozen VE's cached query tokens, ``tokens [batch_size, max_clips, F*M, D]``,
  ``mask [batch_size, max_clips]``, ``label [batch_size]``, with each phase's optimizer and
  freeze list and the config's MIL objective;
* ``score``: the evaluation forward pass (phase 2: AP + LTC) of ``batch_size`` videos.

Phase 3 (the frozen Vicuna-7B behind an adaptor, batch 2) is not listed yet.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.aot import AotStep, apply_step, train_step


def aot_steps(config: Any, mesh: Any) -> list[AotStep]:
    """The paper preset's phase 1 and 2 train steps and its scoring step on ``mesh``."""
    from vau_jax import sharding
    from vau_jax.methods.vadllama.method import vador_loss
    from vau_jax.methods.vadllama.paper import abstract_vador_config
    from vau_jax.models.heads.vador import VADor

    rules = sharding.rules_from_config(config)
    vcfg = abstract_vador_config(config)
    model = VADor(vcfg)
    b, c = int(config.batch_size), int(config.max_clips)
    width = vcfg.frames_per_clip * vcfg.tokens_per_frame
    dummy = jnp.zeros((1, 2, width, vcfg.vision_width), jnp.float32)
    init = jax.eval_shape(lambda: model.init(jax.random.key(0), dummy, jnp.ones((1, 2), bool)))
    boxed = init["params"]
    batch = {
        "tokens": jax.ShapeDtypeStruct((b, c, width, vcfg.vision_width), jnp.float32),
        "mask": jax.ShapeDtypeStruct((b, c), jnp.bool_),
        "label": jax.ShapeDtypeStruct((b,), jnp.int32),
    }
    steps = [
        train_step(
            f"phase{k}",
            vador_loss(model, str(config.mil_loss), k),
            dict(config[f"phase{k}"].optimizer),
            boxed,
            batch,
            mesh,
            rules,
        )  # fmt: skip
        for k in (1, 2)
    ]

    def score(params: Any, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        return model.apply({"params": params}, tokens, mask, phase=2)["scores"]

    inputs = {k: batch[k] for k in ("tokens", "mask")}
    steps.append(apply_step("score", score, boxed, inputs, mesh, rules))
    return steps
