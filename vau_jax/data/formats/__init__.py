"""Readers of the real datasets' annotation formats into one :class:`VideoRecord` type.

Every reader returns ``list[VideoRecord]`` and raises :class:`FormatError` (a ``ValueError``)
with ``file:line: reason`` on malformed input. Frames are 0-based, intervals half-open.
``read_layout(dataset, root)`` reads a whole dataset root in its published layout into
``{"train": [...], "test": [...]}`` (:mod:`vau_jax.data.formats.layouts`).
"""

from vau_jax.data.formats.features import load_features, read_features
from vau_jax.data.formats.folder import read_folder_csv
from vau_jax.data.formats.hivau import read_hivau
from vau_jax.data.formats.layouts import DATASETS, read_layout
from vau_jax.data.formats.record import NORMAL, FormatError, VideoRecord
from vau_jax.data.formats.shanghaitech import read_shanghaitech
from vau_jax.data.formats.tad import read_tad
from vau_jax.data.formats.ubnormal import read_ubnormal
from vau_jax.data.formats.uca import read_uca, read_uca_json, read_uca_txt
from vau_jax.data.formats.ucf_crime import read_ucf_crime
from vau_jax.data.formats.umil import read_umil, read_vadllama_json
from vau_jax.data.formats.xd_violence import read_xd_violence

__all__ = [
    "DATASETS",
    "NORMAL",
    "FormatError",
    "VideoRecord",
    "load_features",
    "read_features",
    "read_folder_csv",
    "read_hivau",
    "read_layout",
    "read_shanghaitech",
    "read_tad",
    "read_uca",
    "read_uca_json",
    "read_uca_txt",
    "read_ubnormal",
    "read_ucf_crime",
    "read_umil",
    "read_vadllama_json",
    "read_xd_violence",
]
