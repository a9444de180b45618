"""Written SynthVAD dataset trees, shared by the layout reader tests (one write per session)."""

import shutil

import pytest

from vau_jax.data.synthvad import SynthConfig
from vau_jax.data.synthvad.layouts import write_layout

LAYOUT_CONFIG = SynthConfig(min_seconds=3, max_seconds=3, anomaly_prob=0.6)
LAYOUT_SPLITS = {"train": 5, "test": 5}


@pytest.fixture(scope="session")
def layout_tree(tmp_path_factory):
    """``layout_tree(layout, codec="h264") -> root`` of a written tree (read-only: share it)."""
    cache: dict[tuple[str, str], str] = {}

    def get(layout: str, codec: str = "h264") -> str:
        if (layout, codec) not in cache:
            root = tmp_path_factory.mktemp(f"{layout}_{codec}") / "root"
            write_layout(str(root), layout, LAYOUT_SPLITS, LAYOUT_CONFIG, codec=codec)
            cache[layout, codec] = str(root)
        return cache[layout, codec]

    return get


@pytest.fixture
def tree_copy(layout_tree, tmp_path):
    """``tree_copy(layout) -> root`` of a private copy of a written tree, free to break."""

    def get(layout: str) -> str:
        dst = tmp_path / layout
        shutil.copytree(layout_tree(layout), dst)
        return str(dst)

    return get
