"""Helpers shared by every converter: flat key tables, checked assembly, safetensors I/O.

A converter module ``vau_jax/convert/hf_<family>.py`` defines

- ``MODEL_TYPES``: the HF ``config.json`` ``model_type`` values it reads;
- ``config_from_hf(hf_config: dict) -> Config`` and ``config_to_hf(cfg) -> dict``;
- ``module_from_config(cfg) -> nn.Module``;
- ``params_from_hf(state_dict, cfg) -> params`` (nested dict of numpy arrays), built with
  :func:`assemble` so a missing key or a wrong shape names the key and both shapes;
- ``params_to_hf(params, cfg) -> dict[str, np.ndarray]`` (exact inverse);
- ``handles(cfg) -> bool`` (used by ``export_hf`` to pick the converter).

``flatten``/``unflatten``/``CheckpointMismatchError``/``to_numpy_tree`` live in the neutral
:mod:`vau_jax.tree` (the training layer uses them too) and are re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from vau_jax.tree import (  # noqa: F401
    CheckpointMismatchError,
    Params,
    flatten,
    to_numpy_tree,
    unflatten,
)


def abstract_params(module: Any, *args: Any, **kwargs: Any) -> Params:
    """``jax.eval_shape`` of ``module.init`` -> nested dict of ``ShapeDtypeStruct`` (unboxed).

    No memory is allocated; used as the template that converters fill and check against.
    """
    import flax.linen as nn

    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
    return nn.unbox(shapes)["params"]


def assemble(
    template: Mapping[str, Any],
    values: Mapping[str, np.ndarray],
    *,
    source: str = "checkpoint",
    allow_missing: Callable[[str], bool] | None = None,
) -> Params:
    """Builds a nested param dict from flat ``values`` checked against ``template``.

    Args:
      template: nested dict whose leaves have ``.shape`` (e.g. from :func:`abstract_params`).
      values: flat ``{"a/b/kernel": array}`` produced by a converter's mapping table.
      source: file or folder name used in error messages.
      allow_missing: predicate for template keys that may be absent (left out of the result).
    Raises:
      CheckpointMismatchError: naming every missing key, every unexpected key and every
        shape mismatch (key, expected shape, found shape).
    """
    flat_t = flatten(template)
    problems = []
    for key, leaf in flat_t.items():
        if key not in values:
            if allow_missing is None or not allow_missing(key):
                problems.append(f"missing key {key!r} (expected shape {tuple(leaf.shape)})")
            continue
        got = tuple(np.shape(values[key]))
        if got != tuple(leaf.shape):
            problems.append(
                f"shape mismatch for {key!r}: model expects {tuple(leaf.shape)}, "
                f"checkpoint has {got}"
            )
    for key in values:
        if key not in flat_t:
            problems.append(
                f"unexpected key {key!r} with shape {tuple(np.shape(values[key]))} "
                "(not a parameter of this model)"
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit the model:\n  {shown}{more}"
        )
    return unflatten({k: np.asarray(values[k]) for k in flat_t if k in values})


def take(
    state_dict: Mapping[str, np.ndarray], key: str, *, source: str = "checkpoint"
) -> np.ndarray:
    """``state_dict[key]`` with a clear error naming the key and the source when it is missing."""
    try:
        return np.asarray(state_dict[key])
    except KeyError:
        near = [k for k in state_dict if k.split(".")[-1] == key.split(".")[-1]][:5]
        raise CheckpointMismatchError(
            f"{source}: missing key {key!r} in the checkpoint"
            + (f" (similar: {near})" if near else "")
        ) from None


def check_no_leftovers(
    state_dict: Mapping[str, np.ndarray],
    used: set[str],
    *,
    source: str,
    ignore: Callable[[str], bool],
) -> None:
    """Raises when the checkpoint holds tensors the converter did not consume (and not ignored)."""
    extra = sorted(k for k in state_dict if k not in used and not ignore(k))
    if extra:
        raise CheckpointMismatchError(
            f"{source}: {len(extra)} checkpoint tensor(s) not used by the model, e.g. {extra[:8]}"
        )


def read_hf_config(path: str) -> dict:
    """Reads ``config.json`` of an HF ``save_pretrained`` folder."""
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (is this an HF save_pretrained folder?)")
    with open(cfg_path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: not valid JSON: {e}") from None


def read_safetensors_dir(path: str) -> dict[str, np.ndarray]:
    """Loads every ``*.safetensors`` file of a folder (sharded or not) into numpy arrays.

    bfloat16 tensors are upcast to float32 (numpy has no bfloat16 arithmetic we rely on).
    Never unpickles: ``pytorch_model.bin`` folders are refused with a hint.
    """
    from safetensors import safe_open

    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        hint = (
            " (found a pickle .bin: re-save with safe_serialization=True)"
            if any(f.endswith(".bin") for f in os.listdir(path))
            else ""
        )
        raise FileNotFoundError(f"{path}: no *.safetensors files{hint}")
    out: dict[str, np.ndarray] = {}
    for fname in files:
        fpath = os.path.join(path, fname)
        try:
            with safe_open(fpath, framework="numpy") as f:
                for key in f.keys():
                    out[key] = np.asarray(f.get_tensor(key))
        except TypeError:
            # numpy framework cannot represent bf16: go through flax's reader via ml_dtypes.
            out.update(_read_safetensors_bf16(fpath))
        except Exception as e:  # safetensors raises its own error types
            raise ValueError(f"{fpath}: cannot read safetensors file: {e}") from None
    return out


def _read_safetensors_bf16(fpath: str) -> dict[str, np.ndarray]:
    import ml_dtypes

    with open(fpath, "rb") as f:
        data = f.read()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    out = {}
    base = 8 + header_len
    dtypes = {
        "BF16": ml_dtypes.bfloat16,
        "F16": np.float16,
        "F32": np.float32,
        "F64": np.float64,
        "I64": np.int64,
        "I32": np.int32,
        "I8": np.int8,
        "U8": np.uint8,
        "BOOL": np.bool_,
    }
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype=dtypes[info["dtype"]])
        arr = arr.reshape(info["shape"])
        out[key] = arr.astype(np.float32) if info["dtype"] == "BF16" else arr.copy()
    return out
