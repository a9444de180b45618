"""Share a trained run: ``python -m vau_jax.convert --export --src=RUN_DIR --dst=DIR``.

Writes every model of a finished run (:func:`vau_jax.inference.load_run`) as safetensors
plus config, one folder per part (:mod:`vau_jax.convert.export_parts` says which)::

    DIR/export.json              manifest: method, step, stage, source, trees, parts, links
    DIR/run/                     the run's config.json (+ metrics.json, classes.json, ...)
    DIR/llm/                     HF LlamaForCausalLM folder: config.json, model.safetensors,
                                 tokenizer files (tokenizer.json or tokenizer.model +
                                 tokenizer_config.json)
    DIR/qformer/                 HF InstructBLIP / BLIP-2 Q-Former folder (+ query_tokens)
    DIR/encoder_<roles>/         HF CLIP / DINOv2 / EVA vision folders (frozen encoders)
    DIR/<head>/                  vau_jax parts: model.safetensors with flattened ``a.b.c``
                                 names + config.json {"library": "vau_jax", our config,
                                 the run-config section}

HF folders load with :func:`vau_jax.convert.load_hf` and with ``transformers``
(``AutoModelForCausalLM.from_pretrained(DIR/llm)``). The Q-Former folders also hold the
trained ``query_tokens`` (HF keeps them outside the Q-Former; ``transformers`` ignores the
extra tensor, ``load_hf`` reads it).

The manifest lists per part its format (``hf:<model_type>`` or ``vau_jax``), tree and path,
parameter count, dtype and the sha256 of its safetensors file; HF parts also carry our
config (``vau_jax_config``: the layout the run used, e.g. scanned layers) so that
:func:`load_export` gives back every tree bit-exactly as the run holds it.

Writes are atomic: everything goes into a temporary sibling folder, is read back and
compared leaf by leaf (``verify``), then renamed to ``DIR``, which must not exist or be
empty. A folder that is not a run, a run without a checkpoint, a non-empty ``DIR`` raise
``ValueError`` / ``OSError`` subclasses whose message starts with the path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from types import ModuleType
from typing import Any

import numpy as np

from vau_jax.convert.common import atomic_folder, check_empty_destination, read_json_object
from vau_jax.convert.export_parts import TREES, Part, Plan, hf_converter, same_bits, subtree
from vau_jax.tree import CheckpointMismatchError, flatten, unflatten

FORMAT = "vau_jax.export/1"
MANIFEST = "export.json"
WEIGHTS = "model.safetensors"
#: Files of the run folder copied to ``DIR/run/`` (``config.json`` always).
RUN_FILES = ("config.json", "metrics.json", "classes.json", "provenance.json")

Params = Any


def _hf_state_dict(conv: ModuleType, params: Params, cfg: Any) -> dict[str, np.ndarray]:
    """HF-named tensors of a part; a Q-Former keeps its ``query_tokens``."""
    from vau_jax.models.qformer import QFormerConfig

    if isinstance(cfg, QFormerConfig):
        return conv.params_to_hf(params, cfg, include_query_tokens=True)
    return conv.params_to_hf(params, cfg)


def _dtypes(flat: dict[str, np.ndarray]) -> tuple[str, dict[str, str]]:
    """``(the most common dtype, {key: dtype} of the leaves with another one)``."""
    names = {k: np.asarray(v).dtype.name for k, v in flat.items()}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    common = max(sorted(counts), key=lambda n: counts[n]) if counts else "float32"
    return common, {k: n for k, n in sorted(names.items()) if n != common}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def save_tokenizer(tok: Any, folder: str) -> list[str]:
    """Writes ``tok`` into ``folder`` as HF tokenizer files; returns their names.

    An HF ``tokenizers`` tokenizer (:class:`~vau_jax.data.tokenizer.HFTokenizer`) ->
    ``tokenizer.json`` + ``tokenizer_config.json``; a sentencepiece one -> its
    ``tokenizer.model`` + ``tokenizer_config.json`` (bos / eos / pad token strings). Both
    load back with :func:`vau_jax.data.tokenizer.load_tokenizer` (the folder). Anything else:
    nothing written.
    """
    if tok is None:
        return []
    if hasattr(tok, "backend") and hasattr(tok, "save"):
        tok.save(os.path.join(folder, "tokenizer.json"))
        return ["tokenizer.json", "tokenizer_config.json"]
    sp = getattr(tok, "sp", None)
    if sp is None:
        return []
    with open(os.path.join(folder, "tokenizer.model"), "wb") as f:
        f.write(sp.serialized_model_proto())
    meta: dict[str, Any] = {"chat_template_name": getattr(tok, "chat_template", None)}
    for key, i in (("bos_token", tok.bos_id), ("eos_token", tok.eos_id), ("pad_token", tok.pad_id)):
        meta[key] = None if i is None else sp.id_to_piece(int(i))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return ["tokenizer.model", "tokenizer_config.json"]


def write_part(part: Part, folder: str, run_config: Any = None) -> dict[str, Any]:
    """Writes one part into ``folder`` (created); returns its manifest entry.

    Raises:
      ValueError: a vau_jax part whose parameter names contain ``.`` (the flattened-name
        separator) — never the case for Flax modules.
    """
    from safetensors.numpy import save_file

    from vau_jax.convert.checkpoint import config_to_json

    os.makedirs(folder)
    flat = {k: np.asarray(v) for k, v in flatten(part.params).items()}
    dtype, exceptions = _dtypes(flat)
    entry: dict[str, Any] = {"name": part.name, "tree": part.tree, "path": list(part.path)}
    if part.hf:
        conv = hf_converter(part.config)
        tensors = _hf_state_dict(conv, part.params, part.config)
        hf_config = dict(conv.config_to_hf(part.config))
        hf_config.setdefault("dtype", dtype)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(hf_config, f, indent=2)
        entry["format"] = f"hf:{hf_config['model_type']}"
        entry["vau_jax_config"] = config_to_json(part.config)
    else:
        bad = [k for k in flat if "." in k]
        if bad:
            raise ValueError(f"part {part.name}: parameter names with '.': {bad[:4]}")
        tensors = {k.replace("/", "."): v for k, v in flat.items()}
        section = None
        if part.run_section and run_config is not None and part.run_section in run_config:
            section = json.loads(run_config[part.run_section].to_json())
        meta = {
            "library": "vau_jax",
            "format": FORMAT,
            "part": part.name,
            **config_to_json(part.config),
            "run_config_section": part.run_section,
            "run_config": section,
            "extra": dict(part.extra),
        }
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        entry["format"] = "vau_jax"
    tensors = {k: np.asarray(v, order="C") for k, v in tensors.items()}  # 0-d stays 0-d
    weights = os.path.join(folder, WEIGHTS)
    save_file(tensors, weights, metadata={"format": "pt"})
    save_tokenizer(part.tokenizer, folder)
    entry.update(
        params=int(sum(v.size for v in flat.values())),
        dtype=dtype,
        dtype_exceptions=exceptions,
        weights=WEIGHTS,
        bytes=os.path.getsize(weights),
        sha256=_sha256(weights),
        files=sorted(os.listdir(folder)),
        extra=dict(part.extra),
    )
    return entry


def write_export(
    dst: str,
    plan: Plan,
    meta: dict[str, Any],
    *,
    run_dir: str = "",
    run_config: Any = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Writes ``plan`` to ``dst`` atomically (module docstring); returns the manifest.

    ``meta`` (method, step, stage, source...) goes into the manifest; ``run_dir``'s
    :data:`RUN_FILES` are copied to ``dst/run/`` and ``run_config``'s sections beside the
    parts that name one. ``dst`` is written in a temporary sibling folder, read back with
    :func:`load_export` and compared leaf by leaf to ``plan.trees`` (``verify``), then
    renamed into place.

    Raises:
      FileExistsError: ``dst`` exists and is not an empty folder.
      RuntimeError: the written export does not read back bit-exactly (naming the leaf).
    """
    with atomic_folder(dst, ".export-") as tmp:
        entries = [write_part(p, os.path.join(tmp, p.name), run_config) for p in plan.parts]
        if run_dir:
            os.makedirs(os.path.join(tmp, "run"))
            for name in RUN_FILES:
                if os.path.isfile(os.path.join(run_dir, name)):
                    shutil.copyfile(os.path.join(run_dir, name), os.path.join(tmp, "run", name))
        trees = {t: TREES.get(t, _encoder_text(plan, t)) for t in plan.trees}
        manifest = {
            "format": FORMAT,
            "library": "vau_jax",
            **meta,
            "trees": trees,
            "parts": entries,
            "links": [
                {
                    "tree": ln.tree,
                    "path": list(ln.path),
                    "source_tree": ln.source_tree,
                    "source_path": list(ln.source_path),
                }
                for ln in plan.links
            ],
        }
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
        if verify:
            compare_trees(plan.trees, load_export(tmp), source=dst)
    return manifest


def _encoder_text(plan: Plan, tree: str) -> str:
    part = next((p for p in plan.parts if p.tree == tree), None)
    roles = ", ".join((part.extra.get("roles") if part else None) or [tree])
    return f"frozen encoder ({roles}) the method predicts with"


def compare_trees(want: dict[str, Params], got: dict[str, Params], *, source: str) -> None:
    """Raises ``RuntimeError`` naming the first tree / leaf of ``got`` that is missing or
    not bit-identical (dtype, shape, bytes) to ``want``."""
    if sorted(want) != sorted(got):
        raise RuntimeError(f"{source}: trees {sorted(got)} read back, expected {sorted(want)}")
    for name in want:
        fw, fg = flatten(want[name]), flatten(got[name])
        if fw.keys() != fg.keys():
            diff = sorted(set(fw) ^ set(fg))[:8]
            raise RuntimeError(f"{source}: tree {name!r} read back with other leaves: {diff}")
        for key in fw:
            if not same_bits(fw[key], fg[key]):
                raise RuntimeError(f"{source}: {name}/{key} differs after the round trip")


# ------------------------------------------------------------------------------- loading


def read_manifest(path: str) -> dict[str, Any]:
    """``path/export.json`` (``FileNotFoundError`` / ``CheckpointMismatchError`` naming it
    when missing or not an export of this format)."""
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise FileNotFoundError(f"{path}: no {MANIFEST} (not a vau_jax export folder)")
    manifest = read_json_object(mpath)
    if manifest.get("format") != FORMAT:
        raise CheckpointMismatchError(
            f"{mpath}: format {manifest.get('format')!r}, expected {FORMAT!r}"
        )
    return manifest


def _read_weights(fpath: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return dict(load_file(fpath))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointMismatchError(f"{fpath}: cannot read safetensors file: {e}") from None


def _cast(tree: Params, dtype: str, exceptions: dict[str, str]) -> Params:
    import jax.numpy as jnp

    flat = flatten(tree)
    out = {}
    for key, value in flat.items():
        want = np.dtype(jnp.dtype(exceptions.get(key, dtype)))
        out[key] = np.asarray(value).astype(want, copy=False)
    return unflatten(out)


def _merge(dst: dict, src: dict, where: str) -> None:
    for key, value in src.items():
        if key in dst:
            if isinstance(dst[key], dict) and isinstance(value, dict):
                _merge(dst[key], value, f"{where}/{key}")
                continue
            raise CheckpointMismatchError(f"{where}/{key}: held by two parts of the export")
        dst[key] = value


def _place(root: dict, path: tuple[str, ...], sub: Params, where: str) -> None:
    node = root
    for key in path:
        node = node.setdefault(key, {})
    _merge(node, sub, where)


def load_part(path: str, entry: dict[str, Any], *, check_hash: bool = True) -> Params:
    """One part of an export (a manifest entry) -> its nested param subtree, in the layout
    and dtypes the run used.

    Raises:
      CheckpointMismatchError: naming the file whose sha256 differs from the manifest, that
        cannot be read, or whose tensors do not fit the part's config.
    """
    from vau_jax.convert.checkpoint import config_from_json

    fpath = os.path.join(path, entry["name"], entry.get("weights", WEIGHTS))
    if not os.path.isfile(fpath):
        raise FileNotFoundError(f"{fpath}: missing (listed in {MANIFEST})")
    if check_hash and _sha256(fpath) != entry.get("sha256"):
        raise CheckpointMismatchError(f"{fpath}: sha256 differs from {MANIFEST} (damaged?)")
    tensors = _read_weights(fpath)
    if entry["format"].startswith("hf:"):
        cfg = config_from_json(entry["vau_jax_config"], source=f"{path}/{MANIFEST}")
        conv = hf_converter(cfg)
        if conv is None:
            raise CheckpointMismatchError(f"{fpath}: no converter for {type(cfg).__name__}")
        sub = conv.params_from_hf(tensors, cfg, source=fpath)
    elif entry["format"] == "vau_jax":
        sub = unflatten({k.replace(".", "/"): v for k, v in tensors.items()})
    else:
        raise CheckpointMismatchError(f"{path}/{MANIFEST}: unknown format {entry['format']!r}")
    return _cast(sub, entry.get("dtype", "float32"), dict(entry.get("dtype_exceptions") or {}))


def load_export(path: str, *, check_hashes: bool = True) -> dict[str, Params]:
    """An export folder -> ``{tree name: nested dict of numpy arrays}``.

    ``["params"]`` equals the run's ``load_run(run).params`` bit-exactly (VA-GPT also
    ``["tetg"]``, a phase-3 VAD-LLaMA ``["phase3"]``, each frozen encoder
    ``["encoder_<roles>"]``); the manifest (:func:`read_manifest`) says which part holds
    what and each part's config.
    """
    manifest = read_manifest(path)
    trees: dict[str, Params] = {}
    for entry in manifest["parts"]:
        sub = load_part(path, entry, check_hash=check_hashes)
        where = f"{path}: {entry['tree']}"
        _place(trees.setdefault(entry["tree"], {}), tuple(entry["path"]), sub, where)
    for link in manifest.get("links", []):
        src = subtree(trees[link["source_tree"]], tuple(link["source_path"]))
        where = f"{path}: {link['tree']}"
        _place(trees.setdefault(link["tree"], {}), tuple(link["path"]), dict(src), where)
    return trees


# ------------------------------------------------------------------------------ the run


def export_run(src: str, dst: str, *, verify: bool = True, encoders: bool = True) -> dict:
    """Exports the run in ``src`` to ``dst`` (module docstring); returns a summary.

    Args:
      src: a run folder of ``python -m vau_jax.main`` with a checkpoint.
      dst: the export folder (must not exist or be empty).
      verify: read the export back and compare every leaf before renaming it into place.
      encoders: also export the frozen encoders the method predicts with.
    Raises:
      vau_jax.inference.RunError: ``src`` is not a usable run (no such folder, no
        config.json, no checkpoint, a method without prediction).
      FileExistsError: ``dst`` exists and is not empty (checked before loading anything).
    """
    from vau_jax.convert.export_parts import plan as make_plan
    from vau_jax.inference import load_run

    t0 = time.time()
    dst = check_empty_destination(dst)  # before anything loads
    run = load_run(src)
    plan = make_plan(run)
    if not encoders:
        keep = [p for p in plan.parts if not p.tree.startswith("encoder_")]
        trees = {k: v for k, v in plan.trees.items() if not k.startswith("encoder_")}
        plan = Plan(keep, trees, plan.links)
    meta = {
        "method": run.name,
        "preset": str(run.config.get("preset", "")),
        "step": int(run.step),
        "stage": run.stage,
        "source": os.path.abspath(src),
    }
    manifest = write_export(dst, plan, meta, run_dir=src, run_config=run.config, verify=verify)
    return {
        "method": run.name,
        "step": int(run.step),
        "parts": {e["name"]: e["format"] for e in manifest["parts"]},
        "params": sum(e["params"] for e in manifest["parts"]),
        "seconds": round(time.time() - t0, 2),
    }
