"""``python -m vau_jax.convert --src=PATH --dst=DIR``.

PATH is an HF ``save_pretrained`` folder (config.json + *.safetensors) of a supported model
(CLIP, CLIP vision/text, DINOv2 (+registers), BLIP-2 vision/Q-Former, LLaMA) or a llama
``.gguf`` file. DIR receives an orbax param tree + ``config.json`` (see
``vau_jax.convert.checkpoint``), loadable with ``load_converted(DIR)``, and the tokenizer:
a GGUF's embedded one, or an HF folder's tokenizer files copied as they are
(``load_converted_tokenizer(DIR)``).

A user error (a bad or missing flag, a missing or unsupported source, a non-empty ``DIR``,
a checkpoint that does not fit) prints one line ``error: ...`` on stderr and exits with
code 2.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

_SRC = flags.DEFINE_string("src", None, "HF save_pretrained folder or .gguf file.")
_DST = flags.DEFINE_string("dst", None, "Output folder (must not exist or be empty).")
_VERIFY = flags.DEFINE_bool("verify", True, "Reload the written checkpoint and compare.")


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
        summary = convert(_SRC.value, _DST.value, _VERIFY.value)
    except (OSError, ValueError) as e:  # CheckpointMismatchError, a bad file: ValueError
        fail(e)
    logging.info("converted %s -> %s: %s", _SRC.value, _DST.value, summary)
    print(f"wrote {_DST.value}: {summary}")


if __name__ == "__main__":
    from vau_jax.cli import absl_parser

    app.run(main, flags_parser=absl_parser(required=("src", "dst")))
