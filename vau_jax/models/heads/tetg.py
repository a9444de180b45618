"""VA-GPT's Temporal Effective Token Generation (TETG) (DESIGN §5).

An anomaly-aware classifier ``F_A`` — a 3-layer MLP on the CLIP class embedding ``z`` of each
frame — is trained alone with binary cross-entropy (normal frames 0, anomalous frames 1; the
paper: SGD lr 1e-3, batch 32) and then frozen. At inference the frames with
``sigmoid(F_A(z)) >= τ`` form the predicted anomaly; the longest run of such frames gives
``<a-start>``/``<a-end>`` in seconds, written into the text template by the method
(``vau_jax.methods.vagpt.tetg.tetg_prompt``: "Known common ... types are: ... There is one of
the ... types occurring from X to Y.", or its "no anomaly" sentence when no frame is
confident).

The network runs on device; :func:`longest_run` and :func:`run_to_seconds` are host-side
numpy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from vau_jax.models import layers

Array = jax.Array

#: ``torch.nn.Linear``'s default kernel init, ``U(±1/sqrt(fan_in))``, as the paper's MLP had.
#: The model zoo's ``normal(0.02)`` makes this small MLP learn far too slowly with SGD lr 1e-3.
TORCH_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class TETGConfig:
    """Hidden widths of the first two layers and the dropout after each hidden ReLU."""

    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.0


class TETG(nn.Module):
    """``F_A``: Dense → ReLU → Dense → ReLU → Dense(1), one anomaly logit per frame.

    Parameter names: ``dense_0`` (kernel axes ``("embed", "mlp")``), ``dense_1``
    (``("mlp", None)``) and ``dense_2`` (``(None, None)``), each with a ``bias``.
    """

    config: TETGConfig = TETGConfig()

    @nn.compact
    def __call__(self, z: Array, deterministic: bool = True) -> Array:
        """Per-frame logits.

        Args:
          z: ``[..., D]`` CLIP class embeddings (e.g. ``[B, T, D]``).
          deterministic: disables dropout (needs a ``"dropout"`` rng when False and
            ``dropout > 0``).

        Returns:
          float32 logits ``[...]``; ``sigmoid`` gives the anomaly probability.
        """
        cfg = self.config
        if len(cfg.hidden) != 2:
            raise ValueError(f"TETG is a 3-layer MLP: hidden needs 2 widths, got {cfg.hidden}")
        axes = (("embed", "mlp"), ("mlp", None))
        h = z.astype(jnp.float32)
        for i, (width, ax) in enumerate(zip(cfg.hidden, axes)):
            h = jax.nn.relu(layers.dense(width, ax, name=f"dense_{i}", kernel_init=TORCH_INIT)(h))
            if cfg.dropout > 0:
                h = nn.Dropout(cfg.dropout, deterministic=deterministic)(h)
        return layers.dense(1, (None, None), name="dense_2", kernel_init=TORCH_INIT)(h)[..., 0]


def tetg_loss(logits: Array, labels: Array, mask: Array | None = None) -> Array:
    """Mean binary cross-entropy with logits over the valid entries.

    Args:
      logits: ``[...]`` outputs of :class:`TETG`.
      labels: ``[...]`` targets in ``{0, 1}`` (1 = anomalous frame); soft targets allowed.
      mask: optional bool ``[...]``, False on padding frames.

    Returns:
      float32 scalar; 0 when no entry is valid.
    """
    per = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels.astype(jnp.float32))
    if mask is None:
        return jnp.mean(per)
    m = mask.astype(jnp.float32)
    return jnp.sum(per * m) / jnp.maximum(jnp.sum(m), 1.0)


def longest_run(probs: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """The longest run of consecutive frames with ``p >= threshold``.

    Args:
      probs: float ``[T]`` per-frame anomaly probabilities.
      threshold: ``τ``; a frame is anomalous when ``p >= τ``.

    Returns:
      ``(first, last)`` frame indices, ``last`` inclusive; among equally long runs the earliest;
      None when no frame reaches the threshold.
    """
    hot = np.asarray(probs, np.float64).reshape(-1) >= threshold
    if not hot.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[0], hot.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]  # ends exclusive
    i = int(np.argmax(ends - starts))  # first maximum = earliest run
    return int(starts[i]), int(ends[i]) - 1


def run_to_seconds(run: tuple[int, int], fps: float) -> tuple[float, float]:
    """Frame run -> interval in seconds.

    Frame ``i`` covers ``[i / fps, (i + 1) / fps)``, so the run ``(first, last)`` maps to
    ``(first / fps, (last + 1) / fps)``; both rounded to 0.1 s (Python's ``round``), the
    precision the answers are written with.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    first, last = run
    return round(first / fps, 1), round((last + 1) / fps, 1)
