"""What every command-line tool shares: user errors are one line, ``error: ...``, exit code 2.

* :data:`USER_ERRORS`: the exception types that mean "the input is wrong" (a malformed
  annotation file, an undecodable video, a run folder that cannot be used, a checkpoint that
  does not fit). They are printed as one line; anything else is a bug and keeps its traceback.
* :func:`explain_flag_error`: absl / ml_collections flag errors reworded, a config key typo
  answered with the nearest valid keys.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types printed as one ``error:`` line (imported lazily)."""
    from vau_jax.data.formats.record import FormatError
    from vau_jax.data.video import VideoDecodeError
    from vau_jax.inference import RunError
    from vau_jax.tree import CheckpointMismatchError

    return (FormatError, VideoDecodeError, RunError, CheckpointMismatchError, ConfigError)


class ConfigError(ValueError):
    """A config that cannot run (a bad value, a missing file it names)."""


def fail(message: str, stream: Any = None) -> NoReturn:
    """Prints ``error: message`` (one line) and exits with code 2."""
    line = " ".join(str(message).split("\n")[0].split()) or "unknown error"
    print(f"error: {line}", file=stream or sys.stderr, flush=True)
    raise SystemExit(2)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors are one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def _leaves(config: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key path of a ConfigDict (inner dicts and their leaves)."""
    for key in config.keys():
        path = f"{prefix}{key}"
        yield path
        value = config[key]
        if hasattr(value, "keys") and callable(value.keys):
            yield from _leaves(value, path + ".")


def load_config_file(arg: str) -> Any:
    """``configs/x.py[:preset]`` -> its ``get_config(preset)`` (no overrides)."""
    path, _, preset = arg.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    spec = importlib.util.spec_from_file_location("_vau_jax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset or None)


def nearest_keys(config: Any, path: str, n: int = 3) -> list[str]:
    """Valid dotted keys closest to ``path`` (same parent first, then anywhere)."""
    keys = list(_leaves(config))
    parent = path.rpartition(".")[0]
    siblings = [k for k in keys if k.rpartition(".")[0] == parent]
    out = difflib.get_close_matches(path, siblings, n=n, cutoff=0.5)
    for k in difflib.get_close_matches(path, keys, n=n, cutoff=0.5):
        if k not in out:
            out.append(k)
    return out[:n] or siblings[:n]


def explain_flag_error(argv: Sequence[str], err: BaseException) -> str:
    """One line saying what is wrong with a ``main`` command line.

    A ``--config.a.b=value`` naming no key gets the nearest valid keys; a bad config file or
    preset gets the reason; anything else the first line of the flag library's message.
    """
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_arg is None:
        i = next((k for k, a in enumerate(argv) if a == "--config"), None)
        config_arg = argv[i + 1] if i is not None and i + 1 < len(argv) else None
    if config_arg is None:
        return "--config=configs/<method>.py[:preset] is required"
    try:
        base = load_config_file(config_arg)
    except ConfigError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - the config file's own error, reported in one line
        return f"{config_arg}: {type(e).__name__}: {e}"
    valid = set(_leaves(base))
    for a in argv:
        if a.startswith("--config.") and "=" in a:
            key = a[len("--config.") : a.index("=")]
            if key not in valid:
                near = nearest_keys(base, key)
                hint = f"; nearest valid keys: {', '.join(near)}" if near else ""
                return f"--config.{key}: no such config key in {config_arg}{hint}"
    text = str(err).replace("FATAL Flags parsing error:", "").strip()
    return text.split("\n")[0] or type(err).__name__
