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

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
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
    shapes = {k: tuple(np.shape(v)) for k, v in values.items()}
    check_shapes(template, shapes, source=source, allow_missing=allow_missing)
    return unflatten({k: np.asarray(values[k]) for k in flat_t if k in values})


def check_shapes(
    template: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    source: str = "checkpoint",
    allow_missing: Callable[[str], bool] | None = None,
) -> None:
    """The checks of :func:`assemble` on shapes alone (e.g. a checkpoint's metadata, before
    any array is read): raises :class:`CheckpointMismatchError` as :func:`assemble` does."""
    flat_t = flatten(template)
    problems = []
    for key, leaf in flat_t.items():
        if key not in shapes:
            if allow_missing is None or not allow_missing(key):
                problems.append(f"missing key {key!r} (expected shape {tuple(leaf.shape)})")
            continue
        got = tuple(shapes[key])
        if got != tuple(leaf.shape):
            problems.append(
                f"shape mismatch for {key!r}: model expects {tuple(leaf.shape)}, "
                f"checkpoint has {got}"
            )
    for key in shapes:
        if key not in flat_t:
            problems.append(
                f"unexpected key {key!r} with shape {tuple(shapes[key])} "
                "(not a parameter of this model)"
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit the model:\n  {shown}{more}"
        )


#: Config integers up to this are accepted whatever the stored parameter count (token ids,
#: position limits of tiny models); above it they may not exceed the stored element count.
CONFIG_INT_FLOOR = 2**16


def _config_ints(value: Any, name: str = "") -> list[tuple[str, int]]:
    """Every integer of a config dataclass (nested configs included) as ``(dotted name, n)``."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [(name, value)]
    if dataclasses.is_dataclass(value):
        return [
            pair
            for f in dataclasses.fields(value)
            for pair in _config_ints(getattr(value, f.name), f"{name}.{f.name}".lstrip("."))
        ]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _config_ints(v, f"{name}[{i}]")]
    return []


def check_config_sizes(cfg: Any, n_elements: int, *, source: str) -> None:
    """Refuse config integers no honest checkpoint has, before a model is built from them:
    above :data:`CONFIG_INT_FLOOR` and above ``n_elements``, the checkpoint's parameter
    element count (every layer, row and width owns at least one parameter). A lying layer
    count of 10^12 would otherwise build 10^12 layer modules.

    Raises:
      CheckpointMismatchError: ``"{source}: config NAME=N is larger than ..."``.
    """
    limit = max(CONFIG_INT_FLOOR, int(n_elements))
    for name, value in _config_ints(cfg):
        if value > limit:
            raise CheckpointMismatchError(
                f"{source}: config {name}={value} is larger than the {limit} stored "
                "parameter elements (a lying size?)"
            )


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
    return read_json_object(cfg_path)


def read_json_object(path: str) -> dict:
    """A JSON file holding an object (a checkpoint's ``config.json``, an index).

    Raises:
      CheckpointMismatchError: ``"{path}: not valid JSON: ..."`` (also for invalid UTF-8,
        nesting past the recursion limit, over-long integers) or ``"{path}: expected a JSON
        object"``.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, digits
        raise CheckpointMismatchError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_safetensors_file(
    fpath: str, wanted: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """The tensors of one ``.safetensors`` file (those whose key satisfies ``wanted``) as numpy
    arrays; bfloat16 is upcast to float32.

    The safetensors library checks the header length and every tensor's dtype, shape and
    offsets against the file size when it opens the file, so a truncated file or a lying
    header fails before any tensor is allocated.

    Raises:
      CheckpointMismatchError: ``"{fpath}: cannot read safetensors file: ..."``.
    """
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    try:
        with safe_open(fpath, framework="numpy") as f:
            keys = [k for k in f.keys() if wanted is None or wanted(k)]
            for key in keys:
                try:
                    out[key] = np.asarray(f.get_tensor(key))
                except TypeError:
                    # numpy framework cannot represent bf16: parse the (validated) file.
                    out.update(_read_safetensors_bf16(fpath, keys))
                    break
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointMismatchError(f"{fpath}: cannot read safetensors file: {e}") from None
    return out


def read_safetensors_dir(path: str) -> dict[str, np.ndarray]:
    """Loads every ``*.safetensors`` file of a folder (sharded or not) into numpy arrays.

    bfloat16 tensors are upcast to float32 (numpy has no bfloat16 arithmetic we rely on).
    Never unpickles: ``pytorch_model.bin`` folders are refused with a hint. A file that is
    not a readable safetensors file raises :class:`CheckpointMismatchError` naming it.
    """
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
        out.update(read_safetensors_file(os.path.join(path, fname)))
    return out


def _read_safetensors_bf16(fpath: str, keys: list[str]) -> dict[str, np.ndarray]:
    """``keys`` of a safetensors file that ``safe_open`` has already validated, parsed here
    because the numpy framework has no bfloat16 (upcast to float32 through ml_dtypes)."""
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
    for key in keys:
        info = header[key]
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype=dtypes[info["dtype"]])
        arr = arr.reshape(info["shape"])
        out[key] = arr.astype(np.float32) if info["dtype"] == "BF16" else arr.copy()
    return out


def check_empty_destination(dst: str) -> str:
    """``dst`` as an absolute path; ``FileExistsError`` unless it is missing or an empty folder."""
    dst = os.path.abspath(dst)
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise FileExistsError(f"{dst}: exists and is not empty; choose another --dst or remove it")
    return dst


@contextlib.contextmanager
def atomic_folder(dst: str, prefix: str) -> Iterator[str]:
    """Yields a temporary sibling folder of ``dst`` to write into; on success it is renamed
    to ``dst`` (which must be missing or empty), on any error it is removed, so an
    interrupted write never leaves a half-written ``dst``."""
    dst = check_empty_destination(dst)
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        if os.path.exists(dst):
            os.rmdir(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
