"""``run(method, config, workdir, mode)``: train (resumable) and/or evaluate, write results."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
from absl import logging

from vau_jax.train.trainer import Trainer
from vau_jax.train.writers import write_final_metrics


def run_method(method: Any, config: Any, workdir: str, mode: str) -> tuple[Any, dict[str, float]]:
    """Runs ``mode`` in {"train_and_eval", "train", "eval"}; returns ``(params, metrics)``.

    ``eval`` restores the workdir's latest checkpoint (it must exist). Final metrics go to
    ``workdir/metrics.json`` (flat name -> number) and to the metric writer (split "eval");
    the method may also write ``report.html`` from its ``report(params, metrics, workdir)``.
    """
    if mode not in ("train_and_eval", "train", "eval"):
        raise ValueError(f"unknown mode {mode!r}")
    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    trainer = Trainer(method, config, workdir)
    try:
        if mode == "eval":
            if trainer.ckpt.latest_step() is None:
                raise FileNotFoundError(f"{workdir}: --mode=eval needs a checkpoint; train first")
            params = trainer.restore_params()
        else:
            params = trainer.train()
        metrics: dict[str, float] = {}
        if mode != "train":
            metrics = dict(method.evaluate(params, workdir))
            metrics["train_and_eval_seconds"] = round(time.time() - t0, 1)
            step = trainer.ckpt.latest_step() or 0
            trainer.writer.write(step, metrics, split="eval")
            write_final_metrics(workdir, metrics)
            if hasattr(method, "report") and jax.process_index() == 0:
                method.report(params, metrics, workdir)
            logging.info("final metrics: %s", json.dumps(metrics, sort_keys=True))
        return params, metrics
    finally:
        trainer.close()
