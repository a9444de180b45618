"""Driving a method: :func:`run` (prepare -> train (resumable) -> evaluate -> report ->
finish) and :func:`run_method` (the train/evaluate part for any trainer method).

Also the pieces the single-stage pretraining methods (``pretrain/clip.py``, ``pretrain/llm.py``)
share: :func:`single_stage` (their one training stage) and :func:`ensure_pretrained` (train
the converted checkpoint other methods start from when it is missing).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from absl import logging

from vau_jax import timing
from vau_jax.data import templates as T
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.provenance import write_run_files
from vau_jax.train.lock import check_free, workdir_lock
from vau_jax.train.trainer import Stage, Trainer
from vau_jax.train.writers import write_final_metrics

MODES = ("train_and_eval", "train", "eval")


def run(method: Any, mode: str) -> dict[str, float]:
    """The whole job of a :class:`~vau_jax.methods.base.Method` built with its config and
    workdir: ``prepare()``, then :func:`run_method`, then ``finish`` (extra runs such as
    VAD-LLaMA's phase 3, whose metrics are merged in). Ends by printing where the time went
    (:mod:`vau_jax.timing`) and adding it to ``metrics.json`` as ``seconds_<phase>``.
    Returns the final metrics."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    timing.reset()
    check_free(method.workdir)  # refuse a busy folder before any preparation
    method.prepare()  # data only (caches in the data dir): a bad dataset leaves no workdir
    with workdir_lock(method.workdir):  # one job per folder (WorkdirBusyError otherwise)
        params, metrics = run_method(method, method.config, method.workdir, mode)
        extra = method.finish(params, metrics, mode) or {}
    secs = timing.seconds()
    if jax.process_index() == 0:
        print(f"where the time went ({method.workdir}):\n{timing.table(secs)}", flush=True)
        if mode != "train":  # metrics.json exists: add the phase clocks to it
            path = os.path.join(method.workdir, "metrics.json")
            with open(path) as f:
                saved = json.load(f)
            write_final_metrics(method.workdir, {**saved, **secs})
    return {**metrics, **extra, **secs}


def run_method(method: Any, config: Any, workdir: str, mode: str) -> tuple[Any, dict[str, float]]:
    """Runs ``mode`` in {"train_and_eval", "train", "eval"}; returns ``(params, metrics)``.

    The method must be prepared (``prepare()`` is called here when it has one and was not).
    ``eval`` restores the workdir's latest checkpoint (it must exist). Final metrics go to
    ``workdir/metrics.json`` (flat name -> number) and to the metric writer (split "eval");
    the method may also write ``report.html`` from its ``report(params, metrics, workdir)``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if getattr(method, "prepared", "train") is None:
        method.prepare()
    t0 = time.time()
    with workdir_lock(workdir):
        return _run_method_locked(method, config, workdir, mode, t0)


def _run_method_locked(
    method: Any, config: Any, workdir: str, mode: str, t0: float
) -> tuple[Any, dict[str, float]]:
    from vau_jax.convert.checkpoint import load_converted

    if jax.process_index() == 0:
        write_run_files(workdir, config)  # config.json + provenance.json
    trainer = Trainer(method, config, workdir, load_init=lambda p: load_converted(p)[1])
    try:
        if mode == "eval":
            if trainer.ckpt.latest_step() is None and not trainer.ckpt.step_dirs():
                raise FileNotFoundError(f"{workdir}: --mode=eval needs a checkpoint; train first")
            params = trainer.restore_params()
        else:
            with timing.phase("train"):
                params = trainer.train()
        metrics: dict[str, float] = {}
        if mode != "train":
            with timing.phase("eval"):
                metrics = dict(method.evaluate(params, workdir))
            metrics["train_and_eval_seconds"] = round(time.time() - t0, 1)
            step = trainer.ckpt.latest_step() or 0
            trainer.writer.write(step, metrics, split="eval")
            write_final_metrics(workdir, metrics)
            if hasattr(method, "report") and jax.process_index() == 0:
                with timing.phase("report"):
                    method.report(params, metrics, workdir)
            logging.info("final metrics: %s", json.dumps(metrics, sort_keys=True))
        return params, metrics
    finally:
        trainer.close()


def single_stage(
    name: str,
    config: Any,
    loss_fn: Callable[..., Any],
    source: Sequence[Mapping[str, Any]] | Callable[[], Sequence[Mapping[str, Any]]],
) -> list[Stage]:
    """The one training stage of a pretraining method: ``loss_fn`` over in-memory examples.

    ``source`` (a list of example dicts, or a function building it when the stage starts,
    so that ``stages()`` stays cheap) is shuffled and batched endlessly by
    :func:`vau_jax.data.pipeline.make_iterator`; ``config`` gives ``batch_size``, ``seed``,
    ``num_steps``, ``optimizer``, ``checkpoint_every`` and ``log_every``.
    """
    c = config
    pcfg = PipelineConfig(
        global_batch_size=c.batch_size, seed=c.seed, num_epochs=None, read_threads=1, prefetch=2
    )
    return [
        Stage(
            name=name,
            num_steps=c.num_steps,
            optimizer=dict(c.optimizer),
            loss_fn=loss_fn,
            make_data=lambda: make_iterator(source() if callable(source) else source, pcfg),
            checkpoint_every=c.checkpoint_every,
            log_every=c.log_every,
        )
    ]


#: Config fields (at any depth) that never change what a pretraining trains: where the data
#: dir is, and how many optimizer steps one jitted call runs (the same numbers either way).
NOT_IN_KEY = ("data_dir", "steps_per_call")


#: Fields added after pretrainings were cached, with the value that trains what those caches
#: hold: at that value (at any depth) a field stays out of the key, so older caches stay valid.
KEY_DEFAULTS = {"tokenizer": "synthvad", "prior_types_word": T.TETG_TYPES_WORD_BEFORE}


def _without_locations(tree: Any) -> Any:
    """A config dict with every :data:`NOT_IN_KEY` field, and every :data:`KEY_DEFAULTS`
    field at its default, (at any depth) left out."""
    if isinstance(tree, dict):
        return {
            k: _without_locations(v)
            for k, v in tree.items()
            if k not in NOT_IN_KEY and not (k in KEY_DEFAULTS and v == KEY_DEFAULTS[k])
        }
    return tree


def pretrained_dir(config: Any, name: str) -> str:
    """``<config.data_dir>/<name>_<hash>``: the converted checkpoint folder of the pretraining
    method ``name`` (e.g. ``"clip_pretrain"``) run with ``config``. The hash is of the
    config's JSON without its :data:`NOT_IN_KEY` fields: where the data dir is (relative or
    absolute, moved, mounted elsewhere) and how many steps one call runs are not what was
    trained, so they never invalidate a cached pretraining."""
    body = json.dumps(_without_locations(config.to_dict()), sort_keys=True, default=str)
    key = hashlib.sha1(body.encode()).hexdigest()[:10]
    return os.path.join(config.data_dir, f"{name}_{key}")


def ensure_pretrained(config: Any, name: str, what: str, make_method: Callable[[], Any]) -> str:
    """Returns the converted checkpoint folder of a pretraining run, training it when missing.

    The folder is :func:`pretrained_dir` of ``config`` and ``name``, the pretraining method's
    name (its recipe is ``configs/<name>.py``). Missing means no ``<folder>/config.json``:
    then (after logging that the ``what``, e.g. ``"tiny CLIP"``, is missing) the method that
    ``make_method()`` builds is trained and evaluated by :func:`run_method` with ``config`` in
    the resumable run folder ``<folder>.run``, and process 0 saves its final weights with
    :func:`vau_jax.convert.checkpoint.save_converted`, so that they load with
    ``load_converted`` like any converted HF checkpoint. The method must have a ``model``.
    Another job already training the same folder is waited for (:func:`workdir_lock`).
    """
    path = pretrained_dir(config, name)
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    with workdir_lock(path + ".run", wait=True):  # another job may be training it right now
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
        return _pretrain(config, path, name, what, make_method)


def _pretrain(config: Any, path: str, name: str, what: str, make_method: Callable[[], Any]) -> str:
    from vau_jax.convert.checkpoint import save_converted

    logging.info("no pretrained %s at %s: training it (configs/%s.py)", what, path, name)
    with timing.phase("pretrain"), timing.within("pretrain"):
        method = make_method()
        if getattr(method, "prepared", "train") is None:
            method.prepare()
        params, _ = run_method(method, config, path + ".run", "train_and_eval")
        if jax.process_index() == 0:
            save_converted(path, method.model, jax.device_get(params), source=path + ".run")
    return path
