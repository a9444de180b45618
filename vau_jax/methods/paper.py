"""Paper presets, shared part: which converted checkpoints a preset needs and how to make them.

Paper presets need converted full-size checkpoints, and none can be downloaded at run time.
Each method lists its checkpoint roles in ``methods/<m>/paper.py:SOURCES``;
:func:`explain_missing_weights` prints, per missing role, the HF repository, the download
command, the conversion command and the ``--config.paper_checkpoints.<role>=DIR`` flag.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a paper checkpoint comes from.

    Attributes:
      repo: HF repository id of the public weights (``huggingface-cli download REPO``).
      what: what the role provides.
      loader: ``""`` when ``python -m vau_jax.convert`` reads the downloaded folder directly;
        otherwise ``"module:function"``, a ``path -> (module, params)`` reader of a composite
        folder (e.g. the Q-Former inside a full InstructBLIP model), run with ``python -c``.
      prepare: a shell command run before converting, with ``{hf}`` (the download folder)
        and ``{bare}`` (where it writes a bare model folder, which is then converted; a
        command without ``{bare}`` adds to ``{hf}``, which is converted).
      note: an extra line printed under the commands (empty: none).
      include: the download's ``--include`` patterns (PyTorch ``.bin`` / ``.pth`` releases
        name theirs; they are read with ``torch.load(weights_only=True)``, the ``convert``
        extra).
    """

    repo: str
    what: str
    loader: str = ""
    prepare: str = ""
    note: str = ""
    include: tuple[str, ...] = ("*.json", "*.safetensors", "tokenizer.model")


BIN_NOTE = (
    'if the repository has no *.safetensors, download with --include "*.json" "*.bin" '
    "and re-save first: LlamaForCausalLM.from_pretrained(DIR).save_pretrained(DIR, "
    "safe_serialization=True)"
)


def sources(method: str) -> dict[str, Source]:
    """The checkpoint roles of a method's paper preset (``methods/<m>/paper.py:SOURCES``)."""
    import importlib

    try:
        return dict(importlib.import_module(f"vau_jax.methods.{method}.paper").SOURCES)
    except (ModuleNotFoundError, AttributeError):
        return {}


def missing_checkpoints(config: Any) -> list[str]:
    """Roles of ``config.paper_checkpoints`` that are unset or not a converted folder."""
    missing = []
    for role, path in dict(config.get("paper_checkpoints", {})).items():
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            missing.append(role)
    return missing


def convert_command(source: Source, src: str, dst: str) -> str:
    """The shell command converting the downloaded folder ``src`` into ``dst``."""
    if not source.loader:
        return f"python -m vau_jax.convert --src={src} --dst={dst}"
    mod, fn = source.loader.split(":")
    return (
        f'python -c "from {mod} import {fn}; '
        "from vau_jax.convert.checkpoint import save_converted; "
        f"m, p = {fn}('{src}'); save_converted('{dst}', m, p, source='{src}')\""
    )


def explain_missing_weights(config: Any, stream: Any = None) -> int:
    """Prints the download + conversion commands for every missing checkpoint.

    Returns an exit code: 2 when something is missing (nothing is trained), 0 when every
    ``config.paper_checkpoints`` role points at a converted folder.
    """
    stream = stream or sys.stderr
    missing = missing_checkpoints(config)
    if not missing:
        return 0
    table = sources(config.method)
    lines = [
        f"vau_jax: the '{config.method}:paper' preset needs converted full-size checkpoints, "
        "and none can be downloaded at run time. Missing: " + ", ".join(missing) + ".",
        "On a machine with the weights (and network), for each missing role: download the HF "
        "repository (safetensors), convert it, then point the config at the result:",
    ]
    for role in missing:
        src = table.get(role, Source("<HF repository>", role))
        hf, dst = f"hf/{role}", f"checkpoints/{role}"
        lines.append(f"  # {role}: {src.what} <- {src.repo}")
        include = " ".join(f'"{p}"' for p in src.include)
        lines.append(f"  huggingface-cli download {src.repo} --local-dir {hf} --include {include}")
        if src.prepare:
            bare = f"{hf}_bare"
            lines.append("  " + src.prepare.format(hf=hf, bare=bare))
            hf = bare if "{bare}" in src.prepare else hf
        lines.append(f"  {convert_command(src, hf, dst)}")
        if src.note:
            lines.append(f"  #   note: {src.note}")
    flags = " ".join(f"--config.paper_checkpoints.{r}=checkpoints/{r}" for r in missing)
    lines.append(f"then: python -m vau_jax.main --config=configs/{config.method}.py:paper {flags}")
    print("\n".join(lines), file=stream)
    return 2
