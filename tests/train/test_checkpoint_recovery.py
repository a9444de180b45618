"""A corrupt newest checkpoint: resume falls back to the previous good step, exactly.

The toy method (2 stages x 4 steps, a checkpoint every 2 steps) is interrupted before stage
2's step 3 (global step 7), leaving steps 2, 4 and 6. Step 6 is then damaged three ways:
a truncated data file, a missing data file, garbage bytes in place (same size: only the
state fingerprint can tell). The rerun warns once naming step 6, resumes from step 4, and
ends with the uninterrupted run's params and loss sequence.
"""

import logging
import os

import jax
import numpy as np
import pytest

from tests.train.test_trainer import _losses
from tests.train.toy_method import ToyMethod, config
from vau_jax.train.checkpoint import CheckpointCorruptError, Checkpointer, fingerprint
from vau_jax.train.trainer import Trainer

# A script entry that never fires: every run here sees the same (scripted) data iterator.
QUIET = {(5, 1): "none"}


def _train(workdir, script=QUIET):
    trainer = Trainer(ToyMethod(steps=4, script=script), config(), str(workdir))
    try:
        return jax.tree.map(np.asarray, trainer.train())
    finally:
        trainer.close()


def _interrupted(workdir):
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(workdir, {(1, 3): "crash"})
    return Checkpointer(os.path.join(workdir, "checkpoints"))


def _largest_data_file(step_dir):
    """The state's largest data file that a restore reads: orbax's merged OCDBT store
    ``state/d/`` (the per-process ``ocdbt.process_0/`` copies are not read once merged)."""
    folder = os.path.join(step_dir, "state", "d")
    return max((os.path.join(folder, n) for n in os.listdir(folder)), key=os.path.getsize)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garble(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 3)
        f.write(np.random.default_rng(0).integers(0, 256, size // 3, np.uint8).tobytes())


DAMAGE = {"truncated": _truncate, "missing": os.remove, "garbage": _garble}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("ref")
    return _train(work), _losses(work)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_step_falls_back_to_the_previous(tmp_path, reference, damage, caplog):
    ref_params, ref_losses = reference
    ckpt = _interrupted(tmp_path)
    assert ckpt.all_steps() == [2, 4, 6]
    DAMAGE[damage](_largest_data_file(os.path.join(ckpt.directory, "6")))
    ckpt.close()

    with caplog.at_level(logging.WARNING):
        params = _train(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "checkpoint step 6 " in warnings[0], warnings
    assert "resumes from step 4" in warnings[0]
    assert os.path.isdir(str(tmp_path / "checkpoints.bad" / "6"))  # set aside, not deleted
    assert _losses(tmp_path) == ref_losses
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
        np.testing.assert_array_equal(a, b)


def test_no_readable_step_stops_with_a_clear_error_and_moves_nothing(tmp_path):
    ckpt = _interrupted(tmp_path)
    for step in ckpt.all_steps():
        _garble(_largest_data_file(os.path.join(ckpt.directory, str(step))))
    ckpt.close()
    with pytest.raises(CheckpointCorruptError, match=r"no readable checkpoint \(step 6: .*step 2"):
        _train(tmp_path)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4", "6"]
    assert not (tmp_path / "checkpoints.bad").exists()
    with pytest.raises(CheckpointCorruptError):  # and again: never a silent fresh start
        _train(tmp_path)


def test_missing_state_manifest_is_reported(tmp_path, caplog):
    ckpt = _interrupted(tmp_path)
    os.remove(os.path.join(ckpt.directory, "6", "state", "manifest.ocdbt"))
    ckpt.close()
    with caplog.at_level(logging.WARNING):
        _train(tmp_path)
    assert sum("checkpoint step 6 " in r.getMessage() for r in caplog.records) == 1


def test_fingerprint_sees_one_flipped_bit_and_ignores_the_layout():
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    tree = {"a": x, "b": np.arange(3, dtype=np.int32), "k": np.ones((2,), np.uint32)}
    base = fingerprint(tree)
    assert len(base) == 3
    flipped = x.copy()
    flipped.view(np.uint32)[5, 3] ^= 1
    assert fingerprint({**tree, "a": flipped})[0] != base[0]
    assert fingerprint({**tree, "a": x.T.copy()})[0] != base[0]  # positions count
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
    assert fingerprint({**tree, "a": sharded}) == base
