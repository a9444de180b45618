"""The training / evaluation entry point (thin: parse, initialise, dispatch).

    python -m vau_jax.main --config=configs/vagpt.py[:tiny|:paper] [--workdir=DIR]
        [--mode=train_and_eval|train|eval] [--config.a.b=value ...]

``--workdir`` defaults to ``runs/<config>-<preset>``; rerunning resumes from its latest
checkpoint. The method named by ``config.method`` is imported from ``vau_jax.methods``.
"""

from __future__ import annotations

import importlib
import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<m>.py[:preset]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; default runs/<config>-<preset>.")
_MODE = flags.DEFINE_enum(
    "mode", "train_and_eval", ["train_and_eval", "train", "eval"], "What to run."
)


def default_workdir(config_arg: str) -> str:
    """``configs/vagpt.py:paper`` -> ``runs/vagpt-paper`` (preset defaults to ``tiny``)."""
    path, _, preset = config_arg.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}-{preset or 'tiny'}")


def run(config, workdir: str, mode: str) -> int:
    """Imports ``vau_jax.methods.<config.method>`` and runs it; returns a process exit code."""
    from vau_jax import distributed

    distributed.initialize()
    try:
        method = importlib.import_module(f"vau_jax.methods.{config.method}")
    except ModuleNotFoundError as e:
        if e.name != f"vau_jax.methods.{config.method}":
            raise
        known = sorted(
            n[:-3]
            for n in os.listdir(os.path.join(os.path.dirname(__file__), "methods"))
            if n.endswith(".py") and not n.startswith("_")
        )
        print(f"vau_jax: unknown method {config.method!r}; known: {known}", file=sys.stderr)
        return 1
    return int(method.run(config, workdir=workdir, mode=mode) or 0)


class _QuietLibraries(std_logging.Filter):
    """Drops INFO chatter of orbax / grain / jax internals (warnings and errors still show)."""

    NOISY = ("/orbax/", "/grain/", "/jax/_src/", "/tensorstore/")

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or not any(
            s in record.pathname for s in self.NOISY
        )


def main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config_arg = flags.FLAGS["config"].serialize().split("=", 1)[-1]
    workdir = _WORKDIR.value or default_workdir(config_arg)
    logging.info("config %s, workdir %s, mode %s", config_arg, workdir, _MODE.value)
    sys.exit(run(_CONFIG.value, workdir, _MODE.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
