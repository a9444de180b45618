"""``python -m vau_jax.convert --src=PATH --dst=DIR`` and ``--export --src=RUN_DIR --dst=DIR``.

PATH is an HF ``save_pretrained`` folder (config.json + *.safetensors) of a supported model
(CLIP, CLIP vision/text, DINOv2 (+registers), BLIP-2 vision/Q-Former, LLaMA) or a llama
``.gguf`` file. DIR receives an orbax param tree + ``config.json`` (see
``vau_jax.convert.checkpoint``), loadable with ``load_converted(DIR)``, and the tokenizer:
a GGUF's embedded one, or an HF folder's tokenizer files copied as they are
(``load_converted_tokenizer(DIR)``).

With ``--export``, RUN_DIR is a trained run of ``python -m vau_jax.main`` and DIR receives
its models as HF-layout safetensors plus config (``vau_jax.convert.export``: HF
``save_pretrained`` folders for the LLaMA LLM, Q-Formers and vision encoders, vau_jax
safetensors folders for the heads, an ``export.json`` manifest), loadable with
``vau_jax.convert.export.load_export(DIR)``; ``--noencoders`` leaves the frozen encoders out.

A user error (a bad or missing flag, a missing or unsupported source, a folder that is not
a run or has no checkpoint, a non-empty ``DIR``, a checkpoint that does not fit) prints one
line ``error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

_SRC = flags.DEFINE_string(
    "src", None, "HF save_pretrained folder or .gguf file (--export: a trained run folder)."
)
_DST = flags.DEFINE_string("dst", None, "Output folder (must not exist or be empty).")
_VERIFY = flags.DEFINE_bool("verify", True, "Reload the written checkpoint and compare.")
_EXPORT = flags.DEFINE_bool(
    "export", False, "--src is a trained run folder: write its models as safetensors + config."
)
_ENCODERS = flags.DEFINE_bool("encoders", True, "--export: also the frozen encoders.")


def convert(src: str, dst: str, verify: bool = True) -> dict:
    """Converts ``src`` into ``dst``; returns a summary dict (params, seconds)."""
    import jax
    import numpy as np

    from vau_jax.convert import load_gguf, load_hf
    from vau_jax.convert.checkpoint import load_converted, save_converted

    t0 = time.time()
    tokenizer = None
    if src.endswith(".gguf"):
        if not os.path.isfile(src):
            raise FileNotFoundError(f"{src}: no such file")
        module, params, tokenizer = load_gguf(src)
    else:
        if not os.path.isdir(src):
            raise FileNotFoundError(f"{src}: not a folder (expected an HF save_pretrained folder)")
        module, params = load_hf(src)
    save_converted(dst, module, params, source=os.path.abspath(src), tokenizer=tokenizer)
    n = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    if verify:
        _, back = load_converted(dst)
        same = jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params, back))
        if not same:
            raise RuntimeError(f"{dst}: reloaded params differ from the converted ones")
    return {"family": type(module).__name__, "params": n, "seconds": round(time.time() - t0, 2)}


def main(argv: list[str]) -> None:
    from vau_jax.cli import fail

    del argv  # cli.parse_flags refuses positional arguments
    try:
        if _EXPORT.value:
            from vau_jax.convert.export import export_run

            summary = export_run(
                _SRC.value, _DST.value, verify=_VERIFY.value, encoders=_ENCODERS.value
            )
        else:
            summary = convert(_SRC.value, _DST.value, _VERIFY.value)
    except (OSError, ValueError) as e:  # CheckpointMismatchError, RunError, a bad file
        fail(e)
    logging.info(
        "%s %s -> %s: %s",
        "exported" if _EXPORT.value else "converted",
        _SRC.value,
        _DST.value,
        summary,
    )
    print(f"wrote {_DST.value}: {summary}")


if __name__ == "__main__":
    from vau_jax.cli import absl_parser

    app.run(main, flags_parser=absl_parser(required=("src", "dst")))
