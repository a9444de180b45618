"""Per-window anomaly probabilities of a restored run, with state carried across windows.

A :class:`WindowScorer` turns the frames of one window (uint8 ``[n, S, S, 3]`` at the run's
frame rate, :mod:`vau_jax.stream.source`) into one probability per frame, keeping whatever
the method needs from earlier windows:

* VAD-LLaMA: :func:`vau_jax.methods.vadllama.predict.predict` with its
  :class:`~vau_jax.methods.vadllama.predict.StreamState`: the causal background, the frames
  of the unfinished clip (scored provisionally) and the LTC lists (the paper's online
  design: the lists of past clips carry over, window after window);
* VA-GPT: TETG, the per-frame classifier on the frozen CLIP's class token (the part of
  VA-GPT that scores frames; its LLM answers about a finished clip). An alert's ``type`` is
  the anomaly class whose option the LLM ranks highest for the frames of the last few
  seconds (:meth:`WindowScorer.classify`, once per alert);
* T-VAU: the maximum of AHD's heatmap per frame (its frame score).

For VA-GPT and T-VAU the frames go through the same steps as in the feature store (resize,
the run's causal background subtraction when its encoder sees ``"background"`` input, kept
across windows, the frozen encoder, per-token standardisation), so a stream cut into
windows scores each frame as the whole video would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vau_jax.data.frames import BackgroundSubtractor, resize_crop
from vau_jax.methods.base import standardise


class WindowScorer:
    """The base: ``threshold`` and ``__call__(frames) -> probabilities [n]``.

    Attributes:
      run: the restored :class:`vau_jax.inference.Run`.
      fps: the frame rate windows come at (``run.frame_rate()``).
      threshold: the run's own alert threshold.
    """

    def __init__(self, run: Any):
        self.run = run
        self.fps = float(run.frame_rate())
        self.threshold = 0.5

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[n, S, S, 3]`` (the next frames of the stream) -> float32 ``[n]``."""
        raise NotImplementedError

    def classify(self, frames: np.ndarray) -> str | None:
        """The anomaly type of an alert from its recent frames (``None``: no classifier)."""
        del frames
        return None

    def reset(self) -> None:
        """Forgets the stream (the next call starts a new one)."""


class VADLLaMAScorer(WindowScorer):
    """VAD-LLaMA's phase-2 VADor, LTC lists carried across windows (module docstring)."""

    def __init__(self, run: Any):
        super().__init__(run)
        self.threshold = float(run.config.get("threshold", 0.5))
        self.state: Any = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        timeline, self.state = self.run.predict(frames, self.fps, self.state)
        return np.asarray(timeline["frame_probs"], np.float32)

    def reset(self) -> None:
        self.state = None


class _EncoderScorer(WindowScorer):
    """Frames -> the frozen encoder's outputs, with the run's causal background kept."""

    def __init__(self, run: Any, spec: Any, encoder: Any):
        super().__init__(run)
        self.spec, self.encoder = spec, encoder
        self.background: BackgroundSubtractor | None = None
        self.reset()

    def reset(self) -> None:
        self.background = (
            BackgroundSubtractor(self.spec.warmup) if self.spec.input == "background" else None
        )

    def encode(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 ``[n, S, S, 3]`` -> the encoder's outputs ``{name: [n, ...]}`` (float32)."""
        x = resize_crop(np.asarray(frames), int(self.spec.size), self.spec.shorter_side)
        if self.background is not None:
            x = self.background(x)
        bs = int(self.encoder.batch_size)
        outs = [self.encoder(x[a : a + bs]) for a in range(0, len(x), bs)]
        return {k: np.concatenate([np.asarray(o[k], np.float32) for o in outs]) for k in outs[0]}


class VAGPTScorer(_EncoderScorer):
    """TETG on each frame's CLIP class token; alerts typed by the LLM's option ranking."""

    def __init__(self, run: Any):
        m = run.method
        super().__init__(run, m.specs["cls"], m.encoders["cls"])
        self.threshold = float(run.config.tetg.threshold)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        m = self.run.method
        cls = standardise(self.encode(frames)["cls"])  # [n, D]
        return m.tetg.probs(m.tetg_params, [cls])[0].astype(np.float32)

    def classify(self, frames: np.ndarray) -> str | None:
        """The best-ranked option naming an anomaly class (the detector has already fired,
        so "no anomaly" is skipped), asked about ``frames`` alone."""
        timeline, _ = self.run.predict(frames, self.fps, None, num_options=8, max_new_tokens=1)
        for option in timeline["options"]:
            if option.get("anomaly_type") not in (None, "", "normal"):
                return str(option["anomaly_type"])
        return None


class TVAUScorer(_EncoderScorer):
    """The maximum of AHD's heatmap of each frame; with ``ahd.motion`` / ``ahd.background``
    the earlier windows' tapped tokens are summarised (:class:`~vau_jax.methods.tvau.data.
    TapHistory`: the last frame, the running sum), so a window's frames have their change and
    their difference from the mean so far as in a whole video."""

    def __init__(self, run: Any):
        m = run.method
        self.previous: Any = None  # TapHistory of the windows so far
        super().__init__(run, m.spec, m.encoder)
        from vau_jax.methods.tvau.predict import THRESHOLD

        self.threshold = float(run.config.get("threshold", THRESHOLD))

    def reset(self) -> None:
        super().reset()
        self.previous = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from vau_jax.eval.boxes import frame_scores
        from vau_jax.methods.tvau.data import read_taps, tap_history
        from vau_jax.methods.tvau.evaluation import heatmaps

        m = self.run.method
        rec = self.encode(frames)
        # float32 host copies once: read_taps and tap_history then read them as they are
        rec = {f"hidden_{b}": np.asarray(rec[f"hidden_{b}"], np.float32) for b in m.taps}
        taps = read_taps(rec, m.taps, m.motion, self.previous, m.background)
        if m.motion or m.background:
            self.previous = tap_history(rec, m.taps, self.previous)
        return frame_scores(heatmaps(m, self.run.params["ahd"], taps))


SCORERS = {"vadllama": VADLLaMAScorer, "vagpt": VAGPTScorer, "tvau": TVAUScorer}


def window_scorer(run: Any) -> WindowScorer:
    """The :class:`WindowScorer` of a restored run's method."""
    if run.name not in SCORERS:
        raise ValueError(f"{run.workdir}: no stream scorer for method {run.name!r}")
    return SCORERS[run.name](run)
