"""The training / evaluation entry point (thin: parse, initialise, dispatch).

    python -m vau_jax.main --config=configs/vagpt.py[:tiny|:paper] [--workdir=DIR]
        [--mode=train_and_eval|train|eval] [--config.a.b=value ...]

``--workdir`` defaults to ``runs/<config>-<preset>``; rerunning resumes from its latest
checkpoint. The method named by ``config.method`` comes from the registry
(:mod:`vau_jax.methods`): prepare -> train -> evaluate -> report (:func:`vau_jax.methods.runner.run`).
"""

from __future__ import annotations

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
    """Builds ``config.method`` from the registry and runs it; returns a process exit code.

    A paper preset whose converted checkpoints are missing prints the per-role download and
    conversion commands and returns 2 without training anything.
    """
    from vau_jax import distributed, methods
    from vau_jax.methods import paper, runner

    distributed.initialize()
    if config.get("preset", "tiny") == "paper" and paper.missing_checkpoints(config):
        return paper.explain_missing_weights(config)
    runner.run(methods.build(config, workdir), mode)
    return 0


class _QuietLibraries(std_logging.Filter):
    """Drops INFO chatter of orbax / grain / jax internals (warnings and errors still show),
    and tensorflow_datasets' notes below ERROR (its "custom data configuration" warning is
    how every SynthVAD build is made)."""

    NOISY = ("/orbax/", "/grain/", "/jax/_src/", "/tensorstore/")
    CHATTY = ("/tensorflow_datasets/",)

    def filter(self, record: std_logging.LogRecord) -> bool:
        if any(s in record.pathname for s in self.CHATTY):
            return record.levelno >= std_logging.ERROR
        return record.levelno >= std_logging.WARNING or not any(
            s in record.pathname for s in self.NOISY
        )


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing whose errors are one line (``error: ...``, exit code 2): a config
    key typo names the nearest valid keys, a bad preset or config file says why."""
    from vau_jax.cli import explain_flag_error, fail

    try:
        rest = flags.FLAGS(argv)
        if _CONFIG.value is None:
            raise flags.IllegalFlagValueError("--config is required")
        _CONFIG.value.get("method")  # a config file that failed to load raises here
        return rest
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - flag, config-file and override errors alike
        fail(explain_flag_error(argv[1:], err))


def main(argv: list[str]) -> None:
    from vau_jax.cli import fail, user_errors

    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}")
    config_arg = flags.FLAGS["config"].serialize().split("=", 1)[-1]
    workdir = _WORKDIR.value or default_workdir(config_arg)
    logging.info("config %s, workdir %s, mode %s", config_arg, workdir, _MODE.value)
    try:
        code = run(_CONFIG.value, workdir, _MODE.value)
    except user_errors() as err:
        fail(str(err))
    sys.exit(code)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
