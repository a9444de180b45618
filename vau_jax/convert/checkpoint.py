"""Converted checkpoints on disk: an orbax param tree + a JSON config, loadable back.

Layout written by ``python -m vau_jax.convert --src=PATH --dst=DIR``::

    DIR/config.json      {"format": "vau_jax.converted/1", "family": "vau_jax.models.llama",
                          "config_class": "LlamaConfig", "config": {...}, "source": PATH}
    DIR/params/          orbax StandardCheckpointer tree (float32 numpy leaves)
    DIR/tokenizer.json   (GGUF sources) the embedded tokenizer, when it can be saved
    DIR/tokenizer.*      (HF folders) the source folder's tokenizer files, copied as they are
                         (``tokenizer.json``, ``tokenizer.model``, ``tokenizer_config.json``,
                         ``special_tokens_map.json``, ``vocab.txt``), and those of its
                         ``qformer_tokenizer/`` subfolder (InstructBLIP's Q-Former tokenizer)

Loading checks every key and shape against the model the config describes and fails with
:class:`~vau_jax.convert.common.CheckpointMismatchError` naming the key and both shapes. The
check runs on the stored metadata before any array is read, and a folder whose files are
garbage, truncated or lying (a config or an array header claiming 10^12 elements) fails
with the same error naming the file, before a model or an array is built from the claim.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import shutil
from typing import Any

import jax
import numpy as np

from vau_jax.convert.common import (
    CheckpointMismatchError,
    abstract_params,
    assemble,
    atomic_folder,
    check_config_sizes,
    check_shapes,
    flatten,
    read_json_object,
)

FORMAT = "vau_jax.converted/1"
#: Tokenizer files of an HF folder that :func:`save_converted` keeps beside the weights.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
#: Subfolders of an HF folder whose tokenizer files are kept too (InstructBLIP's processor
#: saves the Q-Former's BERT tokenizer there).
TOKENIZER_SUBFOLDERS = ("", "qformer_tokenizer")
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

    ``tokenizer`` (an object with ``save(path)``, e.g. a GGUF's embedded tokenizer) is saved
    as ``tokenizer.json``; without one, when ``source`` is a folder (an HF ``save_pretrained``
    download) its tokenizer files are copied (:func:`tokenizer_files`), so a converted LLM
    keeps the tokenizer its ids belong to.

    Everything is first written into a temporary sibling folder which is renamed into place,
    so an interrupted conversion never leaves a half-written ``dst``.
    """
    import orbax.checkpoint as ocp

    with atomic_folder(dst, ".convert-") as tmp:
        meta = {"format": FORMAT, **config_to_json(module.config), "source": source}
        ckptr = ocp.StandardCheckpointer()
        ckptr.save(os.path.join(tmp, "params"), jax.tree.map(np.asarray, params))
        ckptr.wait_until_finished()
        if tokenizer is not None and hasattr(tokenizer, "save"):
            tokenizer.save(os.path.join(tmp, "tokenizer.json"))
            meta["tokenizer"] = "tokenizer.json"
        elif source and os.path.isdir(source):
            copied = []
            for rel in tokenizer_files(source):
                os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
                shutil.copyfile(os.path.join(source, rel), os.path.join(tmp, rel))
                copied.append(rel)
            if copied:
                meta["tokenizer_files"] = copied
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)


def load_converted(path: str) -> tuple[Any, Any]:
    """Loads a folder written by :func:`save_converted` -> ``(module, params)``.

    Raises ``CheckpointMismatchError`` (key + both shapes) when the stored params do not fit
    the model built from the stored config, and naming the file when ``config.json`` or the
    orbax tree cannot be read. In order, nothing large is built from an unchecked claim:
    config -> stored array metadata (shapes only; their total must fit in this machine's
    memory) -> config sizes against the stored element count -> abstract model -> shapes
    compared -> arrays read.
    """
    import orbax.checkpoint as ocp

    cfg, meta = _read_meta(path)
    cfg_path = os.path.join(path, "config.json")
    params_dir = os.path.abspath(os.path.join(path, "params"))
    stored = _stored_shapes(params_dir)
    check_config_sizes(cfg, sum(math.prod(s) for s, _ in stored.values()), source=cfg_path)
    try:
        family = importlib.import_module(meta["family"])
        module = family.module_from_config(cfg)
        args, kwargs = family.dummy_inputs(cfg)
        template = abstract_params(module, *args, **kwargs)
    except Exception as e:  # config values a model constructor refuses
        raise CheckpointMismatchError(
            f"{cfg_path}: the config does not build a model: {type(e).__name__}: {e}"
        ) from None
    check_shapes(template, {k: s for k, (s, _) in stored.items()}, source=params_dir)
    try:
        restored = ocp.StandardCheckpointer().restore(params_dir)
    except Exception as e:  # tensorstore / orbax errors on damaged array files
        raise CheckpointMismatchError(
            f"{params_dir}: cannot read the stored arrays: {type(e).__name__}: {e}"
        ) from None
    params = assemble(template, flatten(restored), source=params_dir)
    return module, params


def _stored_shapes(params_dir: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{"a/b/kernel": (shape, dtype)}`` of an orbax param tree from its metadata alone.

    Raises:
      CheckpointMismatchError: naming ``params_dir`` when the metadata cannot be read or the
        arrays it claims would not fit in this machine's memory.
    """
    import orbax.checkpoint as ocp

    if not os.path.isdir(params_dir):
        raise FileNotFoundError(f"{params_dir}: no params/ folder (not a converted checkpoint)")
    try:
        tree = ocp.StandardCheckpointer().metadata(params_dir).item_metadata.tree
        stored = {
            k: (tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype))
            for k, leaf in flatten(tree).items()
        }
    except Exception as e:  # orbax / tensorstore errors on damaged metadata
        raise CheckpointMismatchError(
            f"{params_dir}: cannot read the stored array metadata: {type(e).__name__}: {e}"
        ) from None
    nbytes = sum(math.prod(s) * d.itemsize for s, d in stored.values())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if nbytes > memory:
        raise CheckpointMismatchError(
            f"{params_dir}: the stored arrays claim {nbytes} bytes, more than this machine's "
            f"{memory} bytes of memory (a lying or damaged array header?)"
        )
    return stored


def tokenizer_files(folder: str) -> list[str]:
    """Relative paths of the tokenizer files of an HF folder (:data:`TOKENIZER_FILES` at the
    top level and in :data:`TOKENIZER_SUBFOLDERS`), sorted."""
    out = []
    for sub in TOKENIZER_SUBFOLDERS:
        for name in TOKENIZER_FILES:
            rel = os.path.join(sub, name) if sub else name
            if os.path.isfile(os.path.join(folder, rel)):
                out.append(rel)
    return sorted(out)


def _read_meta(path: str) -> tuple[Any, dict]:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (not a vau_jax converted checkpoint)")
    meta = read_json_object(cfg_path)
    if meta.get("format") != FORMAT:
        raise CheckpointMismatchError(
            f"{cfg_path}: format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        return config_from_json(meta, source=cfg_path), meta
    except Exception as e:  # wrong types in the config fields, a refused __post_init__, ...
        msg = str(e)
        if not msg.startswith(cfg_path):
            msg = f"{cfg_path}: not a vau_jax model config: {type(e).__name__}: {msg}"
        raise CheckpointMismatchError(msg) from None


def read_converted_config(path: str) -> Any:
    """The model config dataclass of a converted checkpoint folder, without reading params
    (``FileNotFoundError`` / ``CheckpointMismatchError`` naming the file when it is not one)."""
    return _read_meta(path)[0]


def load_converted_tokenizer(path: str, subfolder: str = "") -> Any:
    """The tokenizer saved beside a converted checkpoint (``tokenizer.json`` or a
    sentencepiece ``tokenizer.model`` in ``path/subfolder``), or ``None``."""
    from vau_jax.data.tokenizer import load_tokenizer

    folder = os.path.join(path, subfolder) if subfolder else path
    for name in ("tokenizer.json", "tokenizer.model"):
        if os.path.isfile(os.path.join(folder, name)):
            return load_tokenizer(os.path.join(folder, name))
    return None
