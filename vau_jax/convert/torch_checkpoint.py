"""PyTorch pickle checkpoints (``.bin`` / ``.pth``), read safely into numpy state dicts.

LLaMA-VID publishes ``pytorch_model-0000k-of-0000n.bin`` shards with a
``pytorch_model.bin.index.json`` (its code reads that index); Video-LLaMA publishes LAVIS
``.pth`` files (``{"model": state_dict, ...}``). Both are pickles. This module is the one
place in vau_jax that opens a pickle, and it does so only through
``torch.load(path, map_location="cpu", weights_only=True)``: torch's restricted unpickler,
which builds tensors and plain containers (dict, list, str, numbers) and refuses any other
class, so a malicious file cannot run code. torch comes from the ``convert`` extra
(``pip install -e .[convert]``); nothing else in the package imports it
(``tests/convert/test_torch_checkpoint.py`` greps for other ``torch.load`` / ``pickle.load``).

Tensors come back as numpy arrays; bfloat16 / float16 ones are upcast to float32 (numpy has
no bfloat16 arithmetic we rely on; the converters store float32 as for safetensors). A file
that is not a readable checkpoint (truncated, garbage, refused by the restricted unpickler)
raises :class:`~vau_jax.tree.CheckpointMismatchError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vau_jax.tree import CheckpointMismatchError

INDEX = "pytorch_model.bin.index.json"
SUFFIXES = (".bin", ".pth", ".pt")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "reading a PyTorch .bin/.pth checkpoint needs torch: pip install -e '.[convert]'"
        ) from None
    return torch


def _to_numpy(value: Any) -> np.ndarray:
    torch = _torch()
    t = value.detach().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    return t.numpy().copy()


def load_pickle(path: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with a clear error.

    Raises:
      CheckpointMismatchError: naming the file when it is not a weights-only pickle (it needs
        classes the restricted unpickler refuses, or it is not a torch file at all).
    """
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        raise CheckpointMismatchError(
            f"{path}: cannot read as a weights-only PyTorch checkpoint "
            f"(torch.load(weights_only=True) refused it: {type(e).__name__}: {e})"
        ) from None


def state_dict_of(obj: Any, *, source: str) -> dict[str, np.ndarray]:
    """The tensors of a loaded checkpoint: a flat ``{name: tensor}`` dict, or a LAVIS
    ``{"model": {...}, "optimizer": ..., "config": ...}`` dict (only ``"model"`` is read).
    Non-tensor entries are dropped."""
    torch = _torch()
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f"{source}: expected a state dict, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            try:
                out[str(k)] = _to_numpy(v)
            except Exception as e:  # a dtype / layout numpy cannot hold (sparse, float8, ...)
                raise CheckpointMismatchError(
                    f"{source}: tensor {str(k)!r} cannot become a numpy array: {e}"
                ) from None
    return out


def checkpoint_files(path: str) -> list[str]:
    """The pickle files of ``path``: the file itself, or a folder's shards in the order of its
    ``pytorch_model.bin.index.json`` (else every ``*.bin`` / ``*.pth``, sorted)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    index = os.path.join(path, INDEX)
    if os.path.isfile(index):
        from vau_jax.convert.common import read_json_object

        weight_map = read_json_object(index).get("weight_map", {})
        if (
            not isinstance(weight_map, dict)
            or not weight_map
            or not all(
                isinstance(n, str) and n and os.path.basename(n) == n for n in weight_map.values()
            )
        ):
            raise CheckpointMismatchError(
                f"{index}: 'weight_map' must map tensor names to shard file names in {path}"
            )
        names = sorted(set(weight_map.values()))
    else:
        names = sorted(n for n in os.listdir(path) if n.endswith(SUFFIXES))
    if not names:
        raise FileNotFoundError(f"{path}: no {INDEX}, *.bin or *.pth files")
    return [os.path.join(path, n) for n in names]


def read_state_dict(
    path: str, wanted: Callable[[str], bool] | None = None
) -> dict[str, np.ndarray]:
    """All tensors of a ``.bin`` / ``.pth`` file or a folder of shards (``wanted`` filters
    keys), as numpy arrays. A key found in two shards is an error naming both files."""
    out: dict[str, np.ndarray] = {}
    seen: dict[str, str] = {}
    for fpath in checkpoint_files(path):
        sd = state_dict_of(load_pickle(fpath), source=fpath)
        for key, value in sd.items():
            if wanted is not None and not wanted(key):
                continue
            if key in seen:
                raise CheckpointMismatchError(f"{key!r} is in both {seen[key]} and {fpath}")
            seen[key] = fpath
            out[key] = value
    return out


def read_any(path: str, wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """A checkpoint folder or file as a numpy state dict: ``*.safetensors`` when the folder
    has them (never unpickled), else the PyTorch pickles through :func:`read_state_dict`."""
    if os.path.isdir(path) and any(n.endswith(".safetensors") for n in os.listdir(path)):
        from vau_jax.convert.common import read_safetensors_dir

        sd = read_safetensors_dir(path)
        return {k: v for k, v in sd.items() if wanted is None or wanted(k)}
    if path.endswith(".safetensors"):
        from vau_jax.convert.common import read_safetensors_file

        return read_safetensors_file(path, wanted)
    return read_state_dict(path, wanted)
