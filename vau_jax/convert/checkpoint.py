"""Converted checkpoints on disk: an orbax param tree + a JSON config, loadable back.

Layout written by ``python -m vau_jax.convert --src=PATH --dst=DIR``::

    DIR/config.json      {"format": "vau_jax.converted/1", "family": "vau_jax.models.llama",
                          "config_class": "LlamaConfig", "config": {...}, "source": PATH}
    DIR/params/          orbax StandardCheckpointer tree (float32 numpy leaves)
    DIR/tokenizer.json   (GGUF sources) the embedded tokenizer, when it can be saved

Loading checks every key and shape against the model the config describes and fails with
:class:`~vau_jax.convert.common.CheckpointMismatchError` naming the key and both shapes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np

from vau_jax.convert.common import abstract_params, assemble, flatten

FORMAT = "vau_jax.converted/1"
_ALLOWED_FAMILY_PREFIX = "vau_jax.models."


def _encode(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):  # nested configs (CLIPConfig's towers) rebuild from dicts
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    try:
        return {"__dtype__": np.dtype(value).name}
    except TypeError:
        raise TypeError(
            f"cannot store config value {value!r} of type {type(value)} in JSON"
        ) from None


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__dtype__"}:
            import jax.numpy as jnp

            return jnp.dtype(value["__dtype__"]).type
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def config_to_json(cfg: Any) -> dict:
    """A model config dataclass -> JSON-able dict (with family and class for reloading)."""
    fields = {f.name: _encode(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    return {"family": type(cfg).__module__, "config_class": type(cfg).__name__, "config": fields}


def config_from_json(data: dict, *, source: str = "config.json") -> Any:
    """Inverse of :func:`config_to_json`; only ``vau_jax.models.*`` classes are instantiated."""
    family = data.get("family", "")
    if not family.startswith(_ALLOWED_FAMILY_PREFIX):
        raise ValueError(f"{source}: family {family!r} is not a vau_jax model family")
    cls = getattr(importlib.import_module(family), data["config_class"], None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ValueError(f"{source}: unknown config class {data.get('config_class')!r} in {family}")
    known = {f.name for f in dataclasses.fields(cls)}
    raw = data["config"]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{source}: config fields {unknown} are not fields of {cls.__name__}")
    return cls(**{k: _decode(v) for k, v in raw.items()})


def save_converted(
    dst: str, module: Any, params: Any, *, source: str = "", tokenizer: Any = None
) -> None:
    """Writes ``module.config`` + ``params`` (+ tokenizer) to ``dst`` atomically.

    Everything is first written into a temporary sibling folder which is renamed into place,
    so an interrupted conversion never leaves a half-written ``dst``.
    """
    import orbax.checkpoint as ocp

    dst = os.path.abspath(dst)
    if os.path.exists(dst) and os.listdir(dst):
        raise FileExistsError(f"{dst}: exists and is not empty; choose another --dst or remove it")
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        meta = {"format": FORMAT, **config_to_json(module.config), "source": source}
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), jax.tree.map(np.asarray, params))
        ckptr.wait_until_finished()
        if tokenizer is not None and hasattr(tokenizer, "save"):
            tokenizer.save(os.path.join(tmp, "tokenizer.json"))
            meta["tokenizer"] = "tokenizer.json"
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        if os.path.exists(dst):
            os.rmdir(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_converted(path: str) -> tuple[Any, Any]:
    """Loads a folder written by :func:`save_converted` -> ``(module, params)``.

    Raises ``CheckpointMismatchError`` (key + both shapes) when the stored params do not fit
    the model built from the stored config.
    """
    import orbax.checkpoint as ocp

    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (not a vau_jax converted checkpoint)")
    with open(cfg_path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}: not valid JSON: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{cfg_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    cfg = config_from_json(meta, source=cfg_path)
    family = importlib.import_module(meta["family"])
    module = family.module_from_config(cfg)
    args, kwargs = family.dummy_inputs(cfg)
    template = abstract_params(module, *args, **kwargs)
    restored = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(path, "params")))
    params = assemble(template, flatten(restored), source=os.path.join(path, "params"))
    return module, params


def load_converted_tokenizer(path: str) -> Any:
    """The tokenizer saved beside a converted checkpoint, or ``None``."""
    tok = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tok):
        return None
    from vau_jax.data.tokenizer import load_tokenizer

    return load_tokenizer(tok)
