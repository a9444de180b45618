"""Hostile-file fuzzing: mutation strategies, a per-case time limit and the error contract.

The contract every reader of user files keeps (README, *Errors*): on any input it either
returns, or raises one of the documented ``ValueError`` subclasses (:data:`DOCUMENTED`) whose
message names the file, within a time limit, without allocating what a lying size field
claims. :func:`expect_documented` checks one call against it; anything else (``KeyError``,
``struct.error``, ``UnicodeDecodeError``, ``RecursionError``, ``MemoryError``, a plain
``ValueError``, a hang) fails the test with its traceback.

Strategies build hostile inputs from a valid file: :func:`mutated_bytes` (truncation, byte
flips, random windows, lying little-endian integers at chosen offsets), :func:`mutated_text`
(token edits with :data:`HOSTILE_TOKENS`, invalid UTF-8), :func:`mutated_json` (structural
edits with :data:`HOSTILE_JSON`). :func:`fuzz_settings` bounds every test: derandomized and
without a database (reproducible in CI); ``VAU_JAX_FUZZ_SCALE=K`` runs K times the examples
with fresh randomness, for a longer local hunt.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from vau_jax.data.formats.record import FormatError
from vau_jax.data.video import VideoDecodeError
from vau_jax.evaluate import InputError
from vau_jax.tree import CheckpointMismatchError

#: The error types a reader may raise on a hostile file (all ``ValueError`` subclasses).
DOCUMENTED: tuple[type[ValueError], ...] = (
    FormatError,
    VideoDecodeError,
    CheckpointMismatchError,
    InputError,
)
SCALE = int(os.environ.get("VAU_JAX_FUZZ_SCALE", "1"))
#: Seconds one case may run before it counts as a hang.
CASE_SECONDS = 10.0


class Hang(BaseException):
    """A case ran past its time limit (a ``BaseException``: no ``except Exception`` hides it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread when the body runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang(f"case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expect_documented(
    call: Callable[[], Any],
    names: str,
    *,
    allowed: tuple[type[BaseException], ...] = DOCUMENTED,
    seconds: float = CASE_SECONDS,
) -> BaseException | None:
    """Run ``call``; it may return, or raise one of ``allowed`` whose message contains
    ``names`` (the file). Returns the error (``None`` on success); anything else propagates."""
    with time_limit(seconds):
        try:
            call()
        except allowed as err:
            assert names in str(err), f"{type(err).__name__} does not name {names}: {err}"
            return err
    return None


def fuzz_settings(max_examples: int, deadline_ms: int | None = 5000) -> settings:
    """Bounded, reproducible hypothesis settings (see the module docstring for the scale)."""
    return settings(
        max_examples=max_examples * SCALE,
        deadline=None if deadline_ms is None else deadline_ms * max(1, SCALE),
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# ----------------------------------------------------------------------------- bytes

#: Values a lying size / count / length field takes.
LYING_INTS = (0, 1, 2, 7, 255, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 10**12, 2**63 - 1, 2**64 - 1)


@st.composite
def mutated_bytes(
    draw: st.DrawFn, valid: bytes, fields: Sequence[tuple[int, int]] = (), max_edits: int = 3
) -> bytes:
    """``valid`` after 1..``max_edits`` edits: truncation, byte flips, a random window, an
    inserted run, or a lying little-endian integer written at one of ``fields``
    (``(offset, width)``, width 4 or 8) or anywhere."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, max_edits))):
        n = len(data)
        op = draw(st.sampled_from(("truncate", "flip", "window", "insert", "lie", "lie")))
        if op == "truncate" or n == 0:
            data = data[: draw(st.integers(0, n))]
        elif op == "flip":
            i = draw(st.integers(0, n - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "window":
            i = draw(st.integers(0, n - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[i : i + len(chunk)] = chunk
        elif op == "insert":
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            if fields and draw(st.booleans()):
                offset, width = draw(st.sampled_from(list(fields)))
            else:
                offset, width = draw(st.integers(0, max(0, n - 1))), draw(st.sampled_from((4, 8)))
            value = draw(st.sampled_from(LYING_INTS) | st.integers(0, 2 ** (8 * width) - 1))
            value %= 2 ** (8 * width)
            packed = struct.pack("<I" if width == 4 else "<Q", value)
            data[offset : offset + width] = packed
    return bytes(data)


# ----------------------------------------------------------------------------- .npy


def npy_bytes(arr: np.ndarray) -> bytes:
    """The ``.npy`` file of ``arr``."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """A version-1 ``.npy`` header (no data) claiming ``descr`` / ``shape``."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape})
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


_DESCRS = ("<f4", "<f8", "|u1", "|b1", "<i8", "<c16", "<U3", "|O", "|V8", "<M8[s]", "bogus")


@st.composite
def hostile_npy(draw: st.DrawFn, valid: np.ndarray) -> bytes:
    """A valid array's ``.npy`` bytes mutated, or a header with a lying shape / odd dtype
    followed by a little data, or random bytes."""
    kind = draw(st.sampled_from(("mutate", "header", "random")))
    if kind == "mutate":
        return draw(mutated_bytes(npy_bytes(valid), fields=[(8, 2)]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    shape = tuple(draw(st.lists(st.sampled_from((0, 1, 3, 10**6, 10**12)), max_size=4)))
    header = npy_header(draw(st.sampled_from(_DESCRS)), shape, draw(st.booleans()))
    return header + draw(st.binary(max_size=64))


# ----------------------------------------------------------------------------- text

#: Tokens that break naive number / class / path parsing.
HOSTILE_TOKENS = (
    "",
    "-1",
    "-0",
    "0",
    "1",
    "-5",
    "--5",
    "1.5",
    "1e12",
    "1e999",
    "-1e999",
    "nan",
    "inf",
    "-inf",
    "9" * 30,
    "9" * 5000,
    "\u00b2",  # superscript two: str.isdigit() but not int()
    "\u0661\u0662",  # Arabic-Indic digits
    "\uff11",  # fullwidth one
    "0x10",
    "1_000",
    "\x00",
    "\ufeff",
    "\ud800",  # lone surrogate
    ",",
    "#",
    "##",
    "-1 -1",
    "normal",
    "Normal",
    "../x.mp4",
    "/abs.mp4",
    "a" * 300,
    "{",
    "[",
    "null",
    '"',
    "x" * 140_000,  # past csv's field limit
)
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(" ,#\t\n"),
    max_size=24,
)


@st.composite
def mutated_text(draw: st.DrawFn, valid: str, max_edits: int = 4) -> bytes:
    """UTF-8 bytes of ``valid`` after token edits (replace with a hostile or random token,
    delete, duplicate a line), then possibly truncation or an invalid UTF-8 byte."""
    lines = valid.splitlines()
    for _ in range(draw(st.integers(1, max_edits))):
        if not lines:
            lines = [""]
        li = draw(st.integers(0, len(lines) - 1))
        tokens = lines[li].split(" ")
        op = draw(st.sampled_from(("replace", "replace", "delete", "append", "dup_line", "line")))
        ti = draw(st.integers(0, len(tokens) - 1))
        if op == "replace":
            tokens[ti] = draw(st.sampled_from(HOSTILE_TOKENS) | _TEXT)
        elif op == "delete":
            del tokens[ti]
        elif op == "append":
            tokens.append(draw(st.sampled_from(HOSTILE_TOKENS) | _TEXT))
        elif op == "dup_line":
            lines.insert(li, lines[li])
        else:
            lines[li] = draw(_TEXT)
            continue
        lines[li] = " ".join(tokens)
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    tail = draw(st.sampled_from(("none", "none", "truncate", "bad_utf8", "bom")))
    if tail == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "bad_utf8":
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80"))) + data[i:]
    elif tail == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


def random_text_file() -> st.SearchStrategy[bytes]:
    """Random lines of hostile and random tokens, as UTF-8 bytes (or raw random bytes)."""
    line = st.lists(st.sampled_from(HOSTILE_TOKENS[:-1]) | _TEXT, max_size=8).map(" ".join)
    lines = st.lists(line, max_size=6).map(
        lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")
    )
    return lines | st.binary(max_size=200)


# ----------------------------------------------------------------------------- JSON

#: Values that break naive JSON field handling.
HOSTILE_JSON = (
    None,
    True,
    False,
    0,
    -1,
    1,
    1.5,
    -0.5,
    10**400,
    -(10**400),
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x",
    "\u00b2",
    "\ud800",
    "normal",
    [],
    {},
    [None],
    [1, 2],
    [1, 2, 3],
    [[0, 1]],
    ["a", "b"],
    {"a": 1},
    {"text": 1},
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _replace(obj: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        out = dict(obj)
        if delete and not rest:
            out.pop(head, None)
        else:
            out[head] = _replace(obj[head], rest, value, delete)
        return out
    out = list(obj)
    if delete and not rest:
        del out[head]
    else:
        out[head] = _replace(obj[head], rest, value, delete)
    return out


@st.composite
def mutated_json_value(draw: st.DrawFn, valid: Any, max_edits: int = 3) -> Any:
    """``valid`` (a JSON value) with 1..``max_edits`` nodes replaced by hostile values or
    deleted."""
    obj = valid
    for _ in range(draw(st.integers(1, max_edits))):
        path = draw(st.sampled_from(_paths(obj)))
        delete = bool(path) and draw(st.integers(0, 3)) == 0
        value = draw(st.sampled_from(HOSTILE_JSON) | _TEXT | st.integers() | st.floats())
        obj = _replace(obj, path, value, delete)
    return obj


@st.composite
def mutated_json(draw: st.DrawFn, valid: Any, lines: bool = False) -> bytes:
    """UTF-8 JSON text (JSON lines when ``lines``: ``valid`` is then the list of rows) after
    structural edits, and sometimes byte-level ones."""
    obj = draw(mutated_json_value(valid))
    if lines and isinstance(obj, list):
        text = "\n".join(json.dumps(row, ensure_ascii=False) for row in obj)
    else:
        text = json.dumps(obj, ensure_ascii=False)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutated_bytes(data))
    return data


#: A JSON text nested past Python's recursion limit (``json`` raises ``RecursionError``).
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
