"""A full disk during a checkpoint write: the run stops, earlier checkpoints survive and the
rerun resumes from them to the uninterrupted run's exact result.

The failing writer is orbax's own state handler, wrapped so that its third save writes its
files into the temporary step folder as usual and then fails with ``ENOSPC``.
"""

import errno

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.train.toy_method import ToyMethod, config
from vau_jax.train.checkpoint import Checkpointer
from vau_jax.train.trainer import Trainer


def _train(workdir, async_save):
    c = config()
    c.async_checkpointing = async_save
    trainer = Trainer(ToyMethod(steps=4), c, str(workdir))
    try:
        return jax.tree.map(np.asarray, trainer.train())
    finally:
        trainer.close()


@pytest.mark.slow
@pytest.mark.parametrize("async_save", [False, True])
def test_disk_full_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, async_save):
    ref = _train(tmp_path / "ref", async_save)
    handler = ocp.handlers.StandardCheckpointHandler
    real = handler.async_save
    calls = []

    async def failing(self, directory, *args, **kwargs):
        calls.append(str(directory))
        out = await real(self, directory, *args, **kwargs)
        if len(calls) == 3:
            if out:  # let the bytes land, then report the device as full
                for f in out:
                    f.result()
            raise OSError(errno.ENOSPC, "No space left on device (simulated)")
        return out

    monkeypatch.setattr(handler, "async_save", failing)
    work = tmp_path / "run"
    with pytest.raises(Exception) as info:
        _train(work, async_save)
    assert "No space left on device" in str(info.value) or isinstance(info.value, OSError)
    monkeypatch.setattr(handler, "async_save", real)

    ckpt = Checkpointer(str(work / "checkpoints"))
    assert ckpt.all_steps() == [2, 4]  # the third save (step 6) never became a checkpoint
    ckpt.close()
    resumed = _train(work, async_save)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)
