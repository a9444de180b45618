"""What every command-line tool shares: user errors are one line, ``error: ...``, exit code 2.

Every CLI (``main``, ``evaluate``, ``extract``, ``convert``, ``explain``, ``tvau_build``,
``aot``, the SynthVAD writer) answers a user error with one line on stderr and exit code 2:

* :func:`user_errors`: the exception types that mean "the input is wrong" (a malformed
  annotation file, an undecodable video, a run folder that cannot be used, a checkpoint that
  does not fit). They are printed as one line; anything else is a bug and keeps its traceback.
* :func:`report` / :func:`fail`: print the one line (:func:`error_text`: an ``OSError`` as
  ``PATH: reason``) and return / exit with 2; :class:`ArgumentParser` for argparse CLIs.
* :func:`parse_flags`: absl flag parsing for ``app.run(..., flags_parser=...)`` whose errors
  (unknown flag, bad value, missing required flag) are one reworded line instead of absl's
  ``FATAL Flags parsing error`` and usage dump (exit code 1).
* :func:`explain_flag_error`: ml_collections config flag errors reworded, a config key typo
  answered with the nearest valid keys, an unknown preset with the presets.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types printed as one ``error:`` line (imported lazily)."""
    from vau_jax.data.formats.record import FormatError
    from vau_jax.data.video import VideoDecodeError
    from vau_jax.inference import RunError
    from vau_jax.train.checkpoint import CheckpointCorruptError
    from vau_jax.train.lock import WorkdirBusyError
    from vau_jax.tree import CheckpointMismatchError

    return (
        FormatError,
        VideoDecodeError,
        RunError,
        CheckpointMismatchError,
        CheckpointCorruptError,
        WorkdirBusyError,
        ConfigError,
    )


class ConfigError(ValueError):
    """A config that cannot run (a bad value, a missing file it names)."""


def error_text(err: BaseException) -> str:
    """One line saying what is wrong: an ``OSError`` names its file, a flag error is
    reworded (:func:`flag_error_text`), anything else is its message."""
    from absl import flags

    if isinstance(err, flags.Error):
        return flag_error_text(err)
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])  # str(KeyError) adds quotes
    return str(err) or type(err).__name__


def report(message: str | BaseException, stream: Any = None) -> int:
    """Prints ``error: message`` (the first line, whitespace squeezed); returns 2."""
    if isinstance(message, BaseException):
        message = error_text(message)
    first = next((ln for ln in str(message).splitlines() if ln.strip()), "")
    print(f"error: {' '.join(first.split()) or 'unknown error'}", file=stream or sys.stderr)
    (stream or sys.stderr).flush()
    return 2


def fail(message: str | BaseException, stream: Any = None) -> NoReturn:
    """Prints ``error: message`` (one line) and exits with code 2."""
    raise SystemExit(report(message, stream))


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
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a directory, not a config file (configs/<method>.py)")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    spec = importlib.util.spec_from_file_location("_vau_jax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(preset or None)


def nearest_keys(config: Any, path: str, n: int = 3) -> list[str]:
    """Valid dotted keys closest to ``path``: by the whole path and by the last name, a key
    named by one ``_``-separated word of it (``lr_typo`` -> ``*.lr``), same parent first."""
    keys = list(_leaves(config))
    parent, _, name = path.rpartition(".")
    words = {w for w in name.split("_") if w}

    def score(key: str) -> float:
        key_parent, _, key_name = key.rpartition(".")
        s = max(
            difflib.SequenceMatcher(None, path, key).ratio(),
            difflib.SequenceMatcher(None, name, key_name).ratio() - 0.05,
            0.75 if key_name in words else 0.0,
        )
        return s + (0.1 if key_parent == parent else 0.0)

    ranked = sorted(keys, key=lambda k: (-score(k), k))
    near = [k for k in ranked if score(k) >= 0.6][:n]
    return near or [k for k in keys if k.rpartition(".")[0] == parent][:n]


def explain_flag_error(argv: Sequence[str], err: BaseException) -> str:
    """One line saying what is wrong with a command line that has a ``--config`` flag.

    A ``--config.a.b=value`` naming no key gets the nearest valid keys; a bad config file or
    preset gets the reason (an unknown preset lists the presets); anything else the flag
    library's message, reworded (:func:`flag_error_text`).
    """
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if config_arg is None:
        i = next((k for k, a in enumerate(argv) if a == "--config"), None)
        config_arg = argv[i + 1] if i is not None and i + 1 < len(argv) else None
    if config_arg is None:
        return error_text(err)
    try:
        base = load_config_file(config_arg)
    except ConfigError as e:
        return str(e)
    except ValueError as e:  # get_config's own check of its argument (an unknown preset)
        return f"{config_arg}: {e}"
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
    return error_text(err)


# absl's wording -> ours, by the exception's first line.
_FLAG_WORDING: tuple[tuple[str, str], ...] = (
    (r"^Unknown command line flag '([^']*)'$", r"unknown flag --\1 (--helpshort lists the flags)"),
    (r"^flag (--\S+?)=(.*?): invalid literal for int\(\).*$", r"\1=\2: not an integer"),
    (r"^flag (--\S+?)=(.*?): could not convert string to float.*$", r"\1=\2: not a number"),
    (
        r"^flag (--\S+?)=(.*?): \('Non-boolean argument to boolean flag'.*$",
        r"\1=\2: not true or false",
    ),
    (r"^flag (--\S+?)=None: Flag --\S+ must have a value other than None\.$", r"\1 is required"),
    (r"^flag (--\S+)", r"\1"),
    (r"^Missing value for flag (--\S+)$", r"\1 needs a value (\1=VALUE)"),
)


def flag_error_text(err: BaseException) -> str:
    """absl's flag error as one line: ``unknown flag --x; did you mean --y?``,
    ``--n=abc: not an integer``, ``--mode=fly: value should be one of <a|b>``..."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln.replace("FATAL Flags parsing error:", "").strip() for ln in lines]
    lines = [ln for ln in lines if ln]
    if not lines:
        return type(err).__name__
    required = [m.group(1) for ln in lines if (m := re.match(r"^flag (--\S+?)=None: Flag", ln))]
    if len(required) == len(lines) and len(required) > 1:
        return f"{', '.join(required)} are required"
    first = lines[0]
    m = re.match(r"^Unknown command line flag '([^']*)'\. Did you mean: (.*?) \?$", first)
    if m:
        near = " or ".join(f"--{n.strip()}" for n in m.group(2).split(","))
        return f"unknown flag --{m.group(1)}; did you mean {near}?"
    for pattern, repl in _FLAG_WORDING:
        if re.match(pattern, first):
            return re.sub(pattern, repl, first)
    return first


def parse_flags(
    argv: Sequence[str],
    required: Sequence[str] = (),
    config: str | None = None,
    flag_values: Any = None,
) -> list[str]:
    """absl flag parsing whose errors are one line (``error: ...``, exit code 2).

    ``required`` flags must be given; ``config`` names a ``config_flags`` flag that must be
    given and load (a key typo names the nearest valid keys, a bad preset or config file
    says why). Positional arguments after the program name are an error. Use as
    ``app.run(main, flags_parser=absl_parser(required=...))``, or call it directly with a
    module's own ``flag_values``.
    """
    from absl import flags

    values = flags.FLAGS if flag_values is None else flag_values
    argv = list(argv)
    try:
        rest = values(argv)
        wanted = ([config] if config else []) + list(required)
        missing = [
            f"--{n}=configs/<method>.py[:preset]" if n == config else f"--{n}"
            for n in wanted
            if values[n].value is None
        ]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise flags.IllegalFlagValueError(f"{', '.join(missing)} {verb} required")
        if config:
            values[config].value.get("method")  # a config file that failed to load raises here
        if len(rest) > 1:
            raise flags.Error(f"unexpected arguments: {' '.join(rest[1:])}")
        return rest
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001 - flag, config-file and override errors alike
        if config is None and not isinstance(err, flags.Error):
            raise  # a bug, not a bad command line
        fail(explain_flag_error(argv[1:], err) if config else error_text(err))


def absl_parser(
    required: Sequence[str] = (), config: str | None = None
) -> Callable[[list[str]], list[str]]:
    """The ``flags_parser`` of ``app.run`` for :func:`parse_flags`."""
    return lambda argv: parse_flags(argv, required=required, config=config)
