"""Rendering in worker processes: the worker count, and trees identical for any count."""

import hashlib
import os

import pytest

from vau_jax.data.synthvad import SynthConfig
from vau_jax.data.synthvad.layouts import write_layout
from vau_jax.data.synthvad.parallel import map_videos, render_workers
from vau_jax.data.synthvad.source import render_split_video

TINY = SynthConfig(min_seconds=1.0, max_seconds=2.0, anomaly_prob=0.6)


def test_render_workers_reads_the_environment(monkeypatch):
    monkeypatch.delenv("VAU_JAX_RENDER_WORKERS", raising=False)
    assert render_workers(8) == 1  # a few videos: no pool
    assert 1 <= render_workers(400) <= 8
    monkeypatch.setenv("VAU_JAX_RENDER_WORKERS", "3")
    assert render_workers(8) == 3
    for bad in ("two", "0"):
        monkeypatch.setenv("VAU_JAX_RENDER_WORKERS", bad)
        with pytest.raises(ValueError, match="VAU_JAX_RENDER_WORKERS"):
            render_workers(400)


def test_map_videos_keeps_the_order_of_the_split():
    ids = [v.video_id for v in map_videos(render_split_video, "test", 5, TINY, workers=2)]
    assert ids == [render_split_video("test", i, TINY).video_id for i in range(5)]
    assert len(set(ids)) == 5


def _tree(root: str) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_layout_written_by_worker_processes_is_byte_identical(tmp_path):
    # write_layout renders in a process pool while it encodes: every file (videos, masks,
    # tracks, meta.json) must equal the one-process tree's, over splits written in order.
    splits = {"train": 3, "test": 2, "validation": 1}
    trees = []
    for workers in (1, 2):
        root = str(tmp_path / f"workers{workers}")
        write_layout(root, "ubnormal", splits, TINY, workers=workers)
        trees.append(_tree(root))
    assert len(trees[0]) > 6 and trees[0] == trees[1]
