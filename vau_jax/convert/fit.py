"""Fitting a converted checkpoint into one part of a bigger model's parameters.

A method whose model embeds a converted model starts that part from the converted weights:
VA-GPT's video LLM takes every part of a converted LLaMA-VID (``qformer``, ``llm``, the
projectors); VAD-LLaMA's VADor holds Video-LLaMA's video Q-Former under ``video_qformer``.
:func:`fit_params` lays the converted tree over the model's own subtree, leaf by leaf:

* a leaf of both with the same shape takes the converted value;
* a leaf whose shape differs keeps the model's (freshly initialised) value when its path
  matches one of the ``reinit`` regexes (e.g. the Q-Former's cross-attention key/value
  kernels, which read a vision width the checkpoint was not trained on), with a logged note;
  any other shape difference (a vocabulary, a width) is an error naming the leaf;
* a model leaf the checkpoint lacks is an error; a checkpoint leaf the model lacks (e.g.
  text embeddings of a Q-Former used without text) is ignored, with a logged note.

Paths are ``/``-joined (``encoder/layer_0/crossattention/attention/key/kernel``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from vau_jax.tree import CheckpointMismatchError, Params, flatten, unflatten


def fit_params(
    converted: Mapping[str, Any],
    target: Mapping[str, Any],
    *,
    source: str,
    reinit: Sequence[str] = (),
) -> Params:
    """The converted values in the structure of ``target`` (see the module docstring).

    Args:
      converted: nested dict of host arrays (``load_converted(path)[1]``).
      target: the model's subtree (nested dict of arrays: device arrays, numpy or
        ``ShapeDtypeStruct``; only ``.shape`` is read, except for kept leaves).
      source: the checkpoint folder, named in notes and errors.
      reinit: regexes (``re.search``) over leaf paths that may differ in shape.

    Returns:
      A nested dict with exactly ``target``'s leaves: a numpy array from ``converted``, or
      the ``target`` leaf itself where a ``reinit`` leaf's shape differs.

    Raises:
      CheckpointMismatchError: naming every model leaf missing from the checkpoint and every
        other shape difference, with both shapes.
    """
    have, want = flatten(dict(converted)), flatten(dict(target))
    patterns = [re.compile(p) for p in reinit]
    out: dict[str, Any] = {}
    problems: list[str] = []
    kept: list[str] = []
    for key, leaf in want.items():
        shape = tuple(leaf.shape)
        if key not in have:
            problems.append(f"missing {key!r} (the model expects shape {shape})")
            continue
        value = np.asarray(have[key])
        if tuple(value.shape) == shape:
            out[key] = value
        elif any(p.search(key) for p in patterns):
            out[key] = leaf
            kept.append(f"{key} {tuple(value.shape)} -> {shape}")
        else:
            problems.append(
                f"shape mismatch for {key!r}: the model expects {shape}, the checkpoint has "
                f"{tuple(value.shape)}"
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"{source}: the converted checkpoint does not fit the model:\n  {shown}{more}"
        )
    if kept:
        logging.info(
            "%s: %d leaves differ in shape and keep their fresh initialisation: %s",
            source,
            len(kept),
            "; ".join(kept),
        )
    extra = sorted(set(have) - set(want))
    if extra:
        logging.info("%s: %d checkpoint leaves are not used: %s", source, len(extra), extra[:8])
    return unflatten(out)


#: Q-Former leaves whose shapes follow the width of the tokens it cross-attends to: a bare
#: Q-Former checkpoint trained on another tower keeps the model's fresh ones (the biases are
#: Q-Former-wide and are loaded). The paper presets' checkpoints (LLaMA-VID, Video-LLaMA)
#: fit their towers and never need it.
QFORMER_VISION_KV = (r"crossattention/attention/(key|value)/kernel$",)
