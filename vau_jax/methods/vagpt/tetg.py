"""VA-GPT's TETG, trained alone and then frozen: its run, its sentence and its frame AUC.

The classifier (:class:`vau_jax.models.heads.tetg.TETG`, a 3-layer MLP on each frame's CLIP
class token) is trained in its own resumable run in ``<workdir>/tetg`` during
``VAGPT.prepare()`` (SGD lr 1e-3, batch 32, BCE on frame labels: as the supplementary, the
labels come from the training videos' annotated times), evaluated by frame AUC on the test
videos, then frozen. Its longest run of confident frames becomes the prior sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from vau_jax.data import templates as T
from vau_jax.data.formats.record import VideoRecord
from vau_jax.data.instruct import tetg_text
from vau_jax.data.memo import ByteBudgetMemo
from vau_jax.data.pipeline import PipelineConfig, make_iterator
from vau_jax.data.synthvad.types import label_runs
from vau_jax.eval.metrics import frame_auc
from vau_jax.eval.smoothing import smooth_scores
from vau_jax.methods.base import MethodBase, standardise
from vau_jax.models.heads.tetg import TETG, TETGConfig, longest_run, run_to_seconds, tetg_loss
from vau_jax.train.trainer import Stage


def tetg_types_word(config: Any) -> str:
    """What VA-GPT's TETG sentence calls the class list: ``config.tetg.types_word``; for a
    config saved before the field (an older run, evaluated or explained again), the word it
    was trained with, :data:`~vau_jax.data.templates.TETG_TYPES_WORD_BEFORE`."""
    return str(config.tetg.get("types_word", T.TETG_TYPES_WORD_BEFORE))


def tetg_prompt(
    probs: np.ndarray,
    fps: float,
    threshold: float,
    class_names: Sequence[str],
    smooth_s: float = 0.0,
    types_word: str = T.TETG_TYPES_WORD,
) -> tuple[str, tuple[float, float] | None]:
    """The TETG sentence for one video.

    Args:
      probs: float ``[T]`` per-frame anomaly probabilities (``sigmoid`` of :class:`TETG`).
      fps: frames per second of ``probs`` (the sampled frame rate, not the source video's).
      threshold: ``τ`` (0.5 in the paper).
      class_names: the dataset's anomaly class list, in the order to print.
      smooth_s: ours, not the paper's: the probabilities are first smoothed over time by a
        Gaussian of this many seconds (:func:`vau_jax.eval.smoothing.smooth_scores`); 0 =
        the paper's per-frame threshold.
      types_word: what the class list is called (``tetg.types_word``; the paper's "crime").

    Returns:
      ``(sentence, interval)``: the template filled with the longest confident run in
      seconds, or the "no anomaly" sentence and None when no frame reaches ``threshold``.
    """
    if smooth_s > 0:
        probs = smooth_scores(probs, np.arange(len(probs)) / float(fps), float(smooth_s))
    run = longest_run(probs, threshold)
    interval = None if run is None else run_to_seconds(run, fps)
    return tetg_text(class_names, interval, types_word), interval


def tetg_auc(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], ids: Sequence[str]
) -> float:
    """Frame-level AUC (all videos' frames concatenated) of per-frame probabilities."""
    recs = [
        VideoRecord(
            id=i, n_frames=len(lab), intervals=[(int(a), int(b)) for a, b in label_runs(lab)]
        )
        for i, lab in zip(ids, labels)
    ]
    return float(frame_auc(recs, dict(zip(ids, probs)), snippet=1)["AUC_O"])


class FrameSource:
    """TETG's training frames as a grain random-access source over the ``cls`` feature store
    (ArrayRecord): example ``i`` is one frame, ``{"z": [D] standardised, "label": 0/1}``.

    Training draws frames in a random order across all videos, so each video's standardised
    ``[T_i, D]`` block is kept once read (:class:`~vau_jax.data.memo.ByteBudgetMemo`, up to
    ``cache_bytes``). A 64-video cache over SynthVAD's 400 train videos read a video for most
    frames: ~16 ms of host work per batch of 32 on a 2-core Xeon, 3,000 steps in 71 s against
    11 s now; the frames and their order are the same either way.

    Args:
      features: the per-video ``cls`` records (a :class:`~vau_jax.data.features.FeatureSet`).
      labels: per video, uint8 ``[T_i]`` frame labels of the encoded frames.
      cache_bytes: the most bytes of standardised frames kept (default 1 GiB: SynthVAD's 400
        train videos take ~17 MB).
    """

    def __init__(self, features: Any, labels: Sequence[np.ndarray], cache_bytes: int = 1 << 30):
        self.features, self.labels = features, [np.asarray(x) for x in labels]
        self.index = np.array(
            [(v, t) for v, lab in enumerate(self.labels) for t in range(len(lab))], np.int64
        ).reshape(-1, 2)
        self.memo = ByteBudgetMemo(cache_bytes)

    def __len__(self) -> int:
        return len(self.index)

    def _video(self, v: int) -> np.ndarray:
        return self.memo(v, lambda: standardise(self.features[v]["cls"]))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        v, t = (int(x) for x in self.index[int(i)])
        return {"z": self._video(v)[t], "label": np.float32(self.labels[v][t])}


class TETGRun(MethodBase):
    """TETG's own trainer run: the MLP on frame class tokens, SGD, BCE (frozen afterwards).

    Args:
      config: the VA-GPT config (``config.tetg`` holds the knobs).
      dim: the class-token width.
      train: a :class:`FrameSource` of the training frames (``None`` for inference).
      test: ``(standardised cls [T_i, D], labels [T_i])`` per test video (frame AUC), or
        ``None``.
    """

    name = "vagpt_tetg"

    def __init__(self, config: Any, dim: int, train: Any = None, test: Any = None):
        super().__init__(config, "")
        self.model = TETG(TETGConfig(hidden=tuple(config.tetg.hidden)))
        self.dim, self.train, self.test = int(dim), train, test
        self.prepared = "train"

    def abstract_params(self) -> Any:
        z = jnp.zeros((1, self.dim))
        return jax.eval_shape(lambda: self.model.init(jax.random.key(0), z))["params"]

    def init_params(self, rng: jax.Array) -> Any:
        return nn.unbox(self.model.init(rng, jnp.zeros((1, self.dim)))["params"])

    def stages(self) -> list[Stage]:
        c = self.config.tetg
        pcfg = PipelineConfig(
            int(c.batch_size), seed=self.config.seed, num_epochs=None, read_threads=1
        )

        def loss_fn(params: Any, batch: dict[str, jax.Array], rng: jax.Array):
            del rng
            logits = self.model.apply({"params": params}, batch["z"])
            return tetg_loss(logits, batch["label"]), {}

        opt = {"name": "sgd", "lr": float(c.lr), "momentum": float(c.momentum)}
        return [
            Stage(
                "tetg",
                int(c.steps),
                opt,
                loss_fn,
                lambda: make_iterator(self.train, pcfg),
                log_every=500,
            )
        ]

    def probs_fn(self):
        """Jitted ``(params, z [T, D]) -> probabilities [T]`` (built once: every call of
        :meth:`probs`, e.g. each window of a stream, reuses its compilations)."""
        if getattr(self, "_probs_jit", None) is None:
            self._probs_jit = jax.jit(
                lambda p, z: jax.nn.sigmoid(self.model.apply({"params": p}, z))
            )
        return self._probs_jit

    def probs(self, params: Any, cls: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-video frame probabilities ``[T_i]`` (videos padded to one length: one shape)."""
        fn = self.probs_fn()
        tmax = max(len(z) for z in cls)
        tmax = -(-tmax // 64) * 64
        out = []
        for z in cls:
            pad = np.zeros((tmax, z.shape[-1]), np.float32)
            pad[: len(z)] = z
            out.append(np.asarray(fn(params, pad))[: len(z)])
        return out

    def evaluate(self, params: Any, workdir: str) -> dict[str, float]:
        del workdir
        if not self.test:
            return {}
        cls, labels = zip(*self.test)
        ids = [f"v{i}" for i in range(len(cls))]
        return {"tetg_frame_auc": tetg_auc(self.probs(params, cls), labels, ids)}


def prior_reader_accuracy(
    probs: Sequence[np.ndarray],
    questions: Sequence[tuple[int, Any]],
    fps: float,
    threshold: float,
    smooth_s: float,
) -> float:
    """:func:`vau_jax.data.benchmark.prior_reader_accuracy` on ``questions``, ``(video index
    into probs, MCQuestion)`` pairs, with each video's prior made from ``probs`` (per video
    ``[T_i]`` at ``fps``) at ``threshold`` after smoothing by ``smooth_s`` seconds: how to
    choose ``tetg.smooth_s`` on videos that are neither trained on nor tested
    (``scripts/vagpt_tetg_smoothing.py``)."""
    from vau_jax.data.benchmark import prior_reader_accuracy as read

    priors = [tetg_prompt(probs[i], fps, threshold, (), smooth_s)[1] for i, _ in questions]
    return read([q for _, q in questions], priors)
