"""The one Python inference API: a finished run folder -> ``predict(frames, fps, state)``.

    import vau_jax
    run = vau_jax.load_run("runs/vadllama-tiny")
    timeline, state = run.predict(frames, fps=8.0)            # frames: uint8 [T, H, W, 3]
    timeline2, state = run.predict(more_frames, 8.0, state)   # a stream, window by window

``load_run`` rebuilds the method from the run's ``config.json`` (registry, cheap), loads
only what prediction needs (``prepare(inference=True)``: frozen encoders and auxiliary heads,
never the training features, never training anything) and restores the latest checkpoint
onto a mesh of the local devices. Every timeline has the ``timeline.json`` schema:
``frame_probs`` (one anomaly probability per input frame), ``intervals_s`` (runs above the
threshold, ``[[start, end], ...]`` seconds, half-open), ``fps``, ``n_frames``, ``start_s``,
``method``, plus the method's extras (VA-GPT: ranked ``options``, ``explanation``, TETG's
sentence; VAD-LLaMA: ``clip_scores``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np


class RunError(ValueError):
    """A run folder that cannot be used for prediction; the message starts with the path."""


@dataclasses.dataclass
class Run:
    """A restored run (see the module docstring).

    Attributes:
      workdir: the run folder.
      config: its config.
      method: the prepared (inference) method object.
      params: the trained params of the latest checkpoint.
      step: that checkpoint's global step; ``stage`` its stage name.
    """

    workdir: str
    config: Any
    method: Any
    params: Any
    step: int
    stage: str

    @property
    def name(self) -> str:
        """The method's registry name."""
        return str(self.config.method)

    def frame_rate(self) -> float:
        """Frames per second the method's encoders see (decode at this rate)."""
        m = self.method
        if hasattr(m, "predict_fps"):  # methods whose encoders see every native frame
            return float(m.predict_fps)
        spec = m.spec if hasattr(m, "spec") else m.specs["cls"]
        return float(spec.fps)

    def frame_size(self) -> int:
        """Encoder input side in pixels (decode to this size, centre crop)."""
        m = self.method
        spec = m.spec if hasattr(m, "spec") else m.specs["cls"]
        return int(spec.size)

    def predict(
        self, frames: np.ndarray, fps: float, state: Any = None, **kwargs: Any
    ) -> tuple[dict[str, Any], Any]:
        """uint8 ``[T, H, W, 3]`` frames at ``fps`` -> ``(timeline, state)``; ``state=None``
        starts a new video. ``kwargs`` go to the method (VA-GPT: ``question``,
        ``num_options``, ``free_form``, ``max_new_tokens``)."""
        if self.name == "vagpt":
            from vau_jax.methods.vagpt.predict import predict

            keep = 1.0 if self.stage == "stage1" else None
            return predict(self.method, self.params, frames, fps, state, keep=keep, **kwargs)
        if kwargs:
            raise TypeError(f"{self.name}.predict takes no options, got {sorted(kwargs)}")
        return self.method.predict(self.params, frames, fps, state)


def load_config(workdir: str) -> Any:
    """The run's config from ``workdir/config.json`` (``RunError`` naming the path)."""
    import ml_collections

    if not os.path.isdir(workdir):
        raise RunError(f"{workdir}: no such run folder")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing; not a run folder of python -m vau_jax.main")
    try:
        with open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: cannot read the run's config: {err}") from None


def load_run(workdir: str, config: Any = None) -> Run:
    """Restores the run in ``workdir`` for prediction (see the module docstring).

    Raises:
      RunError: not a run folder, a method without prediction, no checkpoint, or a frozen
        encoder / auxiliary head the run needs is missing (the message names the path).
    """
    import jax
    import ml_collections

    from vau_jax import methods
    from vau_jax.train.checkpoint import CheckpointCorruptError
    from vau_jax.train.trainer import Trainer

    config = load_config(workdir) if config is None else config
    name = str(config.get("method", ""))
    if name not in methods.PREDICTORS:
        raise RunError(
            f"{workdir}: a {name!r} run; prediction needs one of {list(methods.PREDICTORS)}"
        )
    ckpts = os.path.join(workdir, "checkpoints")
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.async_checkpointing = False
    method = methods.build(config, workdir)
    try:
        method.prepare(inference=True)
    except FileNotFoundError as err:
        raise RunError(
            f"{err} (run from the folder the run was started in: data_dir="
            f"{config.get('data_dir', '')!r})"
        ) from None
    trainer = Trainer(method, config, workdir)
    try:
        if trainer.ckpt.latest_step() is None and not trainer.ckpt.step_dirs():
            raise RunError(f"{ckpts}: no checkpoint; train first with python -m vau_jax.main")
        try:
            step, params, meta = trainer.restore_latest()
        except CheckpointCorruptError as err:
            raise RunError(str(err)) from None
    finally:
        trainer.close()
    params = jax.device_put(jax.device_get(params), jax.local_devices()[0])  # one video: one device
    return Run(workdir, config, method, params, step, str(meta.get("stage", "")))
