"""Which parts a trained run is exported as: one :class:`Part` per shareable model.

A part is a subtree of one of the run's param trees, written to its own folder
``DST/<name>/`` by :mod:`vau_jax.convert.export`:

* **HF parts** (``hf=True``): a model one of our converters maps to an HF class (the LLaMA
  LLM -> ``LlamaForCausalLM``, a Q-Former -> ``InstructBlipQFormerModel`` /
  ``Blip2QFormerModel``, CLIP / DINOv2 / EVA vision towers); written as HF
  ``save_pretrained`` folders.
* **vau_jax parts**: everything without an HF class (TETG, VADor's LTC and AP heads, AHD,
  RAE, the video LLM's projectors, phase 3's adaptor): flattened ``a.b.c`` tensors + our
  config.

Trees (``Part.tree``): ``params`` is the run's checkpoint (``load_run(...).params``);
VA-GPT adds ``tetg`` (its TETG head, ``<run>/tetg``), a VAD-LLaMA run with phase 3 adds
``phase3`` (``<run>/phase3``: ``vador``, ``adaptor``, ``llm``), and every frozen encoder
the method predicts with is its own tree ``encoder_<roles>``. The parts of a tree
partition it: :func:`check_partition` fails naming any leaf left out or claimed twice.

Per method (``path`` inside its tree)::

    vagpt     llm (hf:llama)  qformer (hf:instructblip_qformer)  video_llm (projectors)
              tetg  encoder_cls_visual (hf:clip)  encoder_dino (hf:dinov2)
    vadllama  video_qformer (hf:blip_2_qformer)  vador (LTC, AP, frame positions)
              encoder_frames (hf:clip)  [phase3_adaptor, phase3_llm (hf:llama)]
    tvau      ahd  rae  llm  qformer  video_llm (all three under ``vlm``)  encoder_frames

Leaves keep the run's layouts and dtypes in the vau_jax parts (a Dense ``kernel [in, out]``,
VADor's ``frame_position [F, D]``, RAE's ``conv_0/kernel [3, 3, 1, C]``); HF parts are
written in HF's (``Linear.weight [out, in]``, scanned LLM layers ``[L, ...]`` unstacked to
``model.layers.{i}.*``; Q-Former ``query_tokens [1, Nq, D]`` kept at top level) and read back
into the run's layout from the config the manifest keeps.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from vau_jax.tree import CheckpointMismatchError, flatten, to_numpy_tree

Params = Any


@dataclasses.dataclass(frozen=True)
class Part:
    """One exported model.

    Attributes:
      name: its folder under the export (``DST/<name>/``).
      tree: the param tree it belongs to (``params``, ``tetg``, ``phase3``, ``encoder_*``).
      path: where its subtree sits inside ``tree`` (``()``: at the root).
      params: the subtree (nested dict of numpy arrays), without the children other parts
        hold.
      config: our model config dataclass (for HF parts the one a converter ``handles``).
      hf: written as an HF ``save_pretrained`` folder.
      run_section: the run-config section stored beside a vau_jax part (``tetg``, ``ahd``...).
      tokenizer: saved into the folder (the LLM's; the Q-Former's when it has its own).
      extra: JSON facts stored in the manifest (encoder roles and source, input widths).
    """

    name: str
    tree: str
    path: tuple[str, ...]
    params: Params
    config: Any
    hf: bool = False
    run_section: str | None = None
    tokenizer: Any = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Link:
    """A subtree stored once but present in two trees: ``tree/path`` is a bit-identical
    copy of ``source_tree/source_path`` (phase 3's frozen ``vador``)."""

    tree: str
    path: tuple[str, ...]
    source_tree: str
    source_path: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's export: its ``trees`` (name -> nested dict of numpy arrays, what
    ``load_export`` gives back), the ``parts`` that partition them and the ``links``."""

    parts: list[Part]
    trees: dict[str, Params]
    links: list[Link] = dataclasses.field(default_factory=list)


#: What each tree is, for the manifest.
TREES = {
    "params": "the run's checkpoint params (vau_jax.load_run(run).params)",
    "tetg": "VA-GPT's TETG head (<run>/tetg, trained before stage 1)",
    "phase3": "VAD-LLaMA phase 3 (<run>/phase3): frozen vador + llm, trained adaptor",
}


def rest(tree: Mapping[str, Any], taken: set[str]) -> dict[str, Any]:
    """``tree`` without the top-level keys ``taken`` (held by other parts)."""
    return {k: v for k, v in tree.items() if k not in taken}


def video_llm_parts(
    cfg: Any, tree: Mapping[str, Any], path: tuple[str, ...], tok: Any, query_tok: Any
) -> list[Part]:
    """A :class:`~vau_jax.models.vlm.VideoLLM` tree -> ``llm`` (HF LLaMA + tokenizer),
    ``qformer`` (HF Q-Former, query tokens included) and ``video_llm`` (the projectors;
    config: the whole :class:`~vau_jax.models.vlm.VLMConfig`)."""
    return [
        Part("llm", "params", (*path, "llm"), tree["llm"], cfg.llm, hf=True, tokenizer=tok),
        Part(
            "qformer",
            "params",
            (*path, "qformer"),
            tree["qformer"],
            cfg.qformer,
            hf=True,
            tokenizer=query_tok if query_tok is not tok else None,
        ),
        Part("video_llm", "params", path, rest(tree, {"llm", "qformer"}), cfg),
    ]


def encoder_parts(method: Any) -> list[Part]:
    """The frozen encoders the method predicts with, one part per distinct weights
    (``source``), named ``encoder_<roles>``: ``encoders[k]`` has role ``k``, ``encoder``
    role ``frames``, ``visual_encoder`` role ``visual``."""
    found: list[tuple[str, Any]] = []
    for role, enc in sorted(dict(getattr(method, "encoders", None) or {}).items()):
        found.append((role, enc))
    for attr, role in (("encoder", "frames"), ("visual_encoder", "visual")):
        enc = getattr(method, attr, None)
        if enc is not None:
            found.append((role, enc))
    groups: dict[str, tuple[list[str], Any]] = {}
    for role, enc in found:
        if not hasattr(enc, "module") or not hasattr(enc, "params"):
            continue
        groups.setdefault(str(enc.source), ([], enc))[0].append(role)
    parts = []
    for source, (roles, enc) in groups.items():
        name = "encoder_" + "_".join(sorted(roles))
        cfg = enc.module.config
        extra = {"roles": sorted(roles), "source": source}
        parts.append(
            Part(
                name,
                name,
                (),
                to_numpy_tree(enc.params),
                cfg,
                hf=hf_converter(cfg) is not None,
                extra=extra,
            )
        )
    return parts


def hf_converter(cfg: Any) -> ModuleType | None:
    """The ``vau_jax.convert.hf_*`` module whose ``handles(cfg)`` is true, or ``None``."""
    from vau_jax.convert import _CONVERTERS

    for name in sorted(set(_CONVERTERS.values())):
        conv = importlib.import_module(name)
        if conv.handles(cfg):
            return conv
    return None


def plan(run: Any) -> Plan:
    """The parts of a restored run (:func:`vau_jax.inference.load_run`), checked to
    partition each tree.

    Raises:
      ValueError: a method this exporter does not know (naming the run folder), or parts
        that do not partition a tree.
    """
    m, name = run.method, run.name
    params = to_numpy_tree(run.params)
    trees: dict[str, Params] = {"params": params}
    links: list[Link] = []
    if name == "vagpt":
        parts = video_llm_parts(m.model.config, params, (), m.tok, m.query_tok)
        trees["tetg"] = to_numpy_tree(m.tetg_params)
        dim = {"input_dim": int(m.tetg.dim)}
        parts.append(
            Part(
                "tetg",
                "tetg",
                (),
                trees["tetg"],
                m.tetg.model.config,
                run_section="tetg",
                extra=dim,
            )
        )
    elif name == "vadllama":
        vcfg = m.vcfg
        parts = [
            Part(
                "video_qformer",
                "params",
                ("video_qformer",),
                params["video_qformer"],
                vcfg.qformer,
                hf=True,
            ),
            Part("vador", "params", (), rest(params, {"video_qformer"}), vcfg),
        ]
        p3 = phase3_parts(run, params)
        if p3 is not None:
            parts += p3.parts
            trees.update(p3.trees)
            links += p3.links
    elif name == "tvau":
        parts = [
            Part("ahd", "params", ("ahd",), params["ahd"], m.ahd.config, run_section="ahd"),
            Part("rae", "params", ("rae",), params["rae"], m.rcfg, run_section="rae"),
            *video_llm_parts(m.vlm.config, params["vlm"], ("vlm",), m.tok, m.query_tok),
        ]
    else:
        raise ValueError(f"{run.workdir}: a {name!r} run; export knows vagpt, vadllama, tvau")
    for part in encoder_parts(m):
        parts.append(part)
        trees[part.tree] = part.params
    out = Plan(parts, trees, links)
    check_partition(out)
    return out


def _holders(plan: Plan, tree_name: str) -> list[tuple[str, tuple[str, ...], Params]]:
    """``(holder name, path, subtree)`` of every part and link inside ``tree_name``."""
    out = [(p.name, p.path, p.params) for p in plan.parts if p.tree == tree_name]
    for link in plan.links:
        if link.tree == tree_name:
            src = subtree(plan.trees[link.source_tree], link.source_path)
            out.append((f"link from {link.source_tree}", link.path, src))
    return out


def subtree(tree: Params, path: tuple[str, ...]) -> Params:
    """``tree[path[0]][path[1]]...``."""
    for key in path:
        tree = tree[key]
    return tree


def check_partition(plan: Plan) -> None:
    """Every leaf of each tree is held by exactly one part (or link), no part holds a leaf
    outside its tree.

    Raises:
      ValueError: naming the leaves missing, held twice or unknown (a new parameter the
        part table does not know about).
    """
    for tree_name, tree in plan.trees.items():
        want = set(flatten(tree))
        seen: dict[str, str] = {}
        twice = []
        for holder, path, params in _holders(plan, tree_name):
            prefix = "/".join(path)
            for key in flatten(params):
                full = f"{prefix}/{key}" if prefix else key
                if full in seen:
                    twice.append(f"{full} ({seen[full]}, {holder})")
                seen[full] = holder
        missing, unknown = sorted(want - set(seen)), sorted(set(seen) - want)
        if missing or twice or unknown:
            raise ValueError(
                f"export parts do not partition the {tree_name!r} tree: missing "
                f"{missing[:8]}, held twice {twice[:8]}, not in the tree {unknown[:8]}"
            )


# ----------------------------------------------------------------------------- phase 3


def phase3_parts(run: Any, params: Params) -> Plan | None:
    """VAD-LLaMA phase 3 (``<run>/phase3/checkpoints``) when it has a checkpoint, else
    ``None``: the tree ``phase3`` as ``phase3_adaptor`` (vau_jax; ``adaptor/kernel
    [2 D, D_llm]``) and ``phase3_llm`` (HF LLaMA + tokenizer). Its ``vador`` is frozen (bit-identical to the run's ``params``), so
    it is stored once and linked (a differing one becomes the part ``phase3_vador``)."""
    ckpt = os.path.join(run.workdir, "phase3", "checkpoints")
    found = restore_params(ckpt)
    if found is None:
        return None
    step, p3 = found
    llm_cfg, tok = phase3_llm(run.config)
    from vau_jax.convert.common import abstract_params, check_shapes
    from vau_jax.methods.vadllama.phase3 import ChatConfig
    from vau_jax.models.llama import LlamaForCausalLM, dummy_inputs

    args, kwargs = dummy_inputs(llm_cfg)
    template = abstract_params(LlamaForCausalLM(llm_cfg), *args, **kwargs)
    shapes = {k: tuple(np.shape(v)) for k, v in flatten(p3["llm"]).items()}
    check_shapes(template, shapes, source=f"{ckpt}/{step} llm")
    chat = ChatConfig(run.method.vcfg, llm_cfg)
    parts = [
        Part(
            "phase3_adaptor", "phase3", (), rest(p3, {"vador", "llm"}), chat, extra={"step": step}
        ),
        Part("phase3_llm", "phase3", ("llm",), p3["llm"], llm_cfg, hf=True, tokenizer=tok),
    ]
    links = []
    if _same_tree(p3["vador"], params):
        links.append(Link("phase3", ("vador",), "params", ()))
    else:
        parts.append(Part("phase3_vador", "phase3", ("vador",), p3["vador"], run.method.vcfg))
    return Plan(parts, {"phase3": p3}, links)


def _same_tree(a: Params, b: Params) -> bool:
    fa, fb = flatten(a), flatten(b)
    return fa.keys() == fb.keys() and all(same_bits(fa[k], fb[k]) for k in fa)


def same_bits(a: Any, b: Any) -> bool:
    """Equal dtype, shape and bytes (bit-exact, unlike ``np.array_equal``: ``-0.0 != 0.0``)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def restore_params(ckpt_dir: str) -> tuple[int, Params] | None:
    """``(step, params)`` of the newest checkpoint of a trainer folder, read without the
    method that wrote it (only the ``params`` of the stored train state, as numpy), or
    ``None`` when the folder holds no checkpoint."""
    if not os.path.isdir(ckpt_dir):
        return None
    steps = sorted((int(n) for n in os.listdir(ckpt_dir) if n.isdigit()), reverse=True)
    if not steps:
        return None
    import jax
    import orbax.checkpoint as ocp

    state_dir = os.path.join(ckpt_dir, str(steps[0]), "state")
    try:
        ckptr = ocp.PyTreeCheckpointer()
        stored = ckptr.metadata(state_dir).item_metadata.tree["params"]
        item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored)
        args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), stored)
        out = ckptr.restore(
            state_dir,
            args=ocp.args.PyTreeRestore(
                item={"params": item}, restore_args={"params": args}, partial_restore=True
            ),
        )
    except Exception as e:  # orbax / tensorstore errors on a damaged checkpoint
        raise CheckpointMismatchError(
            f"{state_dir}: cannot read the params: {type(e).__name__}: {e}"
        ) from None
    return steps[0], to_numpy_tree(out["params"])


def phase3_llm(config: Any) -> tuple[Any, Any]:
    """``(LlamaConfig, tokenizer)`` of phase 3's frozen LLM, read from where the run took it
    (paper: ``paper_checkpoints.llm``; tiny: the text-pretrained tiny LLaMA of
    ``phase3.llm_pretrain``), under the run's precision policy. Reads configs only.

    Raises:
      FileNotFoundError: that converted checkpoint is gone (naming it).
    """
    from vau_jax.convert.checkpoint import load_converted_tokenizer, read_converted_config
    from vau_jax.models.precision import llm_policy

    cfg = config.copy_and_resolve_references()
    if cfg.phase3.get("mesh", None) is not None:
        with cfg.unlocked():
            cfg.mesh = cfg.phase3.mesh
    if cfg.get("preset", "tiny") == "paper":
        path = str(cfg.paper_checkpoints.get("llm", "") or "")
        tok = load_converted_tokenizer(path) if path else None
    else:
        from vau_jax.methods.pretrain import llm as llm_pretrain

        lp = cfg.phase3.llm_pretrain
        path = llm_pretrain.checkpoint_dir(lp)
        tok = llm_pretrain.synthvad_tokenizer(lp)
    if not path or not os.path.isdir(path):
        raise FileNotFoundError(f"{path or 'paper_checkpoints.llm'}: phase 3's LLM is missing")
    return llm_policy(cfg, read_converted_config(path)), tok
