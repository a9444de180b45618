"""VAD-LLaMA's steps for ahead-of-time compilation (:mod:`vau_jax.aot`), from the config
alone (no checkpoint, no data).

* ``phase1`` / ``phase2``: the VADor train steps (video Q-Former + frame positions + AP, LTC)
  on the frozen VE's cached query tokens, ``tokens [batch_size, max_clips, F*M, D]``,
  ``mask [batch_size, max_clips]``, ``label [batch_size]``, with each phase's optimizer and
  freeze list and the config's MIL objective;
* ``score``: the evaluation forward pass (phase 2: AP + LTC) of ``batch_size`` videos;
* ``phase3``: the adaptor's train step, the VADor and Vicuna-7B frozen (``phase3.optimizer``'s
  freeze list), on ``phase3.batch_size`` rows of ``phase3.llm_pretrain.max_length`` tokens
  with their clips' cached tokens, on ``phase3.mesh`` (its own: batch 2, a 7B LLM);
* ``phase3_generate``: phase 3's evaluation, ``phase3.eval_batch_size`` prompts of
  ``max_length`` tokens (an upper bound) prefilled into a KV cache, then
  ``llm_pretrain.max_answer`` greedy cached decode steps.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vau_jax.aot import AotStep, apply_step, greedy_answers, train_step


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
    if config.phase3.enabled:
        steps += phase3_steps(config, mesh, vcfg)
    return steps


def phase3_steps(config: Any, mesh: Any, vcfg: Any) -> list[AotStep]:
    """Phase 3's train and generation steps (module docstring) on ``phase3.mesh`` laid over
    ``mesh``'s devices."""
    from vau_jax import sharding
    from vau_jax.methods.vadllama.phase3 import ChatConfig, VADLLaMAChat
    from vau_jax.models import registry
    from vau_jax.models.precision import llm_policy
    from vau_jax.models.vlm import lm_loss

    p3, lp = config.phase3, config.phase3.llm_pretrain
    if p3.get("mesh", None) is not None:
        mesh = sharding.make_mesh(dict(p3.mesh), devices=list(mesh.devices.flat))
    rules = sharding.rules_from_config(config)
    llm_cfg = llm_policy(config, registry.get_config(str(p3.llm_preset)))
    model = VADLLaMAChat(ChatConfig(vcfg, llm_cfg))
    width = vcfg.frames_per_clip * vcfg.tokens_per_frame
    c = int(config.max_clips)
    dummy = (
        jnp.zeros((1, 4), jnp.int32),
        jnp.ones((1, 4), bool),
        jnp.array([[False, True, True, False]]),
        jnp.zeros((1, 2, width, vcfg.vision_width)),
        jnp.ones((1, 2), bool),
    )
    boxed = jax.eval_shape(lambda: model.init(jax.random.key(0), *dummy))["params"]

    def rows(b: int, loss: bool) -> dict[str, jax.ShapeDtypeStruct]:
        s, n = jax.ShapeDtypeStruct, int(lp.max_length)
        out = {
            "input_ids": s((b, n), jnp.int32),
            "attention_mask": s((b, n), jnp.bool_),
            "video_mask": s((b, n), jnp.bool_),
            "tokens": s((b, c, width, vcfg.vision_width), jnp.float32),
            "mask": s((b, c), jnp.bool_),
        }
        if loss:
            out["loss_mask"] = s((b, n), jnp.bool_)
        return out

    def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
        del rng
        out = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["video_mask"],
            batch["tokens"],
            batch["mask"],
        )
        return lm_loss(out["logits"], batch["input_ids"], batch["loss_mask"])

    train = train_step(
        "phase3", loss_fn, dict(p3.optimizer), boxed, rows(int(p3.batch_size), True), mesh, rules
    )
    new = int(lp.max_answer)

    def generate(params: Any, **b: jax.Array) -> jax.Array:
        """Greedy answers ``[B, max_answer]``."""
        emb = model.apply(
            {"params": params},
            b["input_ids"],
            b["video_mask"],
            b["tokens"],
            b["mask"],
            method=VADLLaMAChat.prefix_embeds,
        )
        return greedy_answers(llm_cfg, params["llm"], emb, b["attention_mask"], new)

    gen = apply_step(
        "phase3_generate", generate, boxed, rows(int(p3.eval_batch_size), False), mesh, rules
    )
    return [train, gen]
