"""The training / evaluation entry point (thin: parse, initialise, dispatch).

    python -m vau_jax.main --config=configs/vagpt.py[:tiny|:paper] [--workdir=DIR]
        [--mode=train_and_eval|train|eval] [--config.a.b=value ...]

``--workdir`` defaults to ``runs/<config>-<preset>``; rerunning resumes from its latest
checkpoint. The method named by ``config.method`` comes from the registry
(:mod:`vau_jax.methods`): prepare -> train -> evaluate -> report (:func:`vau_jax.methods.runner.run`).
A user error (a bad flag, a config key typo, an unknown preset, a malformed dataset) is one
line ``error: ...`` on stderr and exit code 2 (:mod:`vau_jax.cli`).
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


def check_config(config, workdir: str) -> None:
    """Refuses, before anything is built, a run whose config names what does not exist: an
    unknown method or dataset, a ``resume`` / ``init_from`` folder that is not there, a
    workdir that is a file (:class:`~vau_jax.cli.ConfigError`, one line)."""
    from vau_jax import methods
    from vau_jax.cli import ConfigError

    if config.get("method") not in methods.REGISTRY:
        raise ConfigError(
            f"config.method={config.get('method')!r}: unknown method; known: {methods.names()}"
        )
    if "dataset" in config:
        from vau_jax.data.datasets import DATASETS

        if config.dataset not in DATASETS:
            raise ConfigError(
                f"config.dataset={config.dataset!r}: unknown dataset; choose one of {DATASETS}"
            )
    resumes = os.path.isdir(os.path.join(workdir, "checkpoints"))  # these are then unused
    for key in ("resume", "init_from"):
        path = str(config.get(key, "") or "")
        if path and not resumes and "://" not in path and not os.path.isdir(path):
            raise ConfigError(f"config.{key}={path!r}: no such folder")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"{workdir}: the workdir is a file, not a folder")


def run(config, workdir: str, mode: str) -> int:
    """Builds ``config.method`` from the registry and runs it; returns a process exit code.

    A paper preset whose converted checkpoints are missing prints the per-role download and
    conversion commands on stdout, one ``error:`` line on stderr, and returns 2 without
    training anything.
    """
    from vau_jax import distributed, methods
    from vau_jax.cli import report
    from vau_jax.methods import paper, runner

    check_config(config, workdir)
    distributed.initialize()
    if config.get("preset", "tiny") == "paper":
        missing = paper.missing_checkpoints(config)
        if missing:
            paper.explain_missing_weights(config, stream=sys.stdout)
            sys.stdout.flush()
            flags_ = " ".join(f"--config.paper_checkpoints.{r}=checkpoints/{r}" for r in missing)
            return report(
                f"the {config.method}:paper preset needs converted checkpoints: {flags_} (the "
                "commands that download and convert them are printed on stdout)"
            )
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
    from vau_jax.cli import parse_flags as parse

    return parse(argv, config="config")


def main(argv: list[str]) -> None:
    from vau_jax.cli import fail, user_errors

    del argv  # parse_flags refuses positional arguments
    logging.get_absl_handler().addFilter(_QuietLibraries())
    config_arg = flags.FLAGS["config"].serialize().split("=", 1)[-1]
    workdir = _WORKDIR.value or default_workdir(config_arg)
    try:
        check_config(_CONFIG.value, workdir)  # before any log line: a bad config is one line
    except user_errors() as err:
        fail(err)
    logging.info("config %s, workdir %s, mode %s", config_arg, workdir, _MODE.value)
    try:
        code = run(_CONFIG.value, workdir, _MODE.value)
    except user_errors() as err:
        fail(err)
    sys.exit(code)


if __name__ == "__main__":
    from vau_jax.host_memory import exec_with_hugepages

    exec_with_hugepages("vau_jax.main")  # first: 2 MB pages for XLA's buffers
    app.run(main, flags_parser=parse_flags)
