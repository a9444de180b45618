"""``.npy`` files read defensively: the header is checked against the file before any load.

A hostile or damaged ``.npy`` can claim a shape of 10^12 elements in a 100-byte file;
``np.load`` would then try to allocate terabytes (``MemoryError``) and an ``mmap`` fails with
an ``OverflowError``, and a malformed header leaks ``SyntaxError`` / ``EOFError`` from
numpy's parser. :func:`read_npy_header` reads only the header and raises
:class:`~vau_jax.data.formats.record.FormatError` ``"{path}: reason"`` unless it describes a
non-object array whose bytes are all in the file; :func:`load_npy` then loads it (no
pickles, optionally memory-mapped).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from vau_jax.data.formats.record import FormatError


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says: ``shape``, ``dtype``, Fortran order, data ``offset``
    (bytes from the start of the file) and ``nbytes`` (the data size it implies)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int
    nbytes: int


def read_npy_header(path: str) -> NpyHeader:
    """The header of a ``.npy`` file, checked: a known version, a non-object dtype and no
    more data bytes than the file holds (a lying shape fails here, nothing allocated).

    Raises:
      FormatError: ``"{path}: cannot read as a .npy array: <reason>"``.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran_order, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran_order, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as err:  # numpy's header parser raises many types on garbage
            raise FormatError(
                f"{path}: cannot read as a .npy array: {type(err).__name__}: {err}"
            ) from None
        offset = f.tell()
    if dtype.hasobject:
        raise FormatError(f"{path}: cannot read as a .npy array: dtype {dtype} needs pickles")
    count = math.prod(int(d) for d in shape)
    nbytes = count * dtype.itemsize
    have = os.path.getsize(path) - offset
    if nbytes > have:
        raise FormatError(
            f"{path}: cannot read as a .npy array: the header claims shape {tuple(shape)} of "
            f"{dtype} ({nbytes} bytes) but the file holds {have} data bytes (truncated or lying)"
        )
    return NpyHeader(tuple(int(d) for d in shape), dtype, bool(fortran_order), offset, nbytes)


def load_npy(path: str, mmap: bool = False) -> np.ndarray:
    """The array of a ``.npy`` file after :func:`read_npy_header` (``allow_pickle=False``;
    ``mmap``: memory-mapped read-only). Raises :class:`FormatError` naming the file."""
    header = read_npy_header(path)
    try:
        return np.load(path, mmap_mode="r" if mmap and header.nbytes else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, OverflowError) as err:
        raise FormatError(f"{path}: cannot read as a .npy array: {err}") from None
