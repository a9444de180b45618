"""VAD-LLaMA is weakly supervised end to end: the VADor's training batches carry the
video-level label only, and the frozen tiny CLIP under it pretrained on SynthVAD's own
``pretrain`` split, never on the train or test videos (DESIGN §5)."""

import os

import numpy as np
import pytest

from tests.tiny_configs import tiny_vadllama
from vau_jax import methods
from vau_jax.methods.vadllama import data as D

WEAK_KEYS = {"tokens", "mask", "label"}


def test_clip_source_drops_everything_but_the_video_label():
    rng = np.random.default_rng(0)
    recs = [
        {
            "cls": rng.normal(size=(t, 8)),
            "patches": rng.normal(size=(t, 4, 8)),
            "timestamps": np.arange(t) / 8.0,
            "indices": np.arange(t),
            "labels": np.r_[np.zeros(t - 3), np.ones(3)].astype(np.uint8),  # must not pass
        }
        for t in (12, 20)
    ]
    src = D.ClipSource(recs, [1, 0], frames_per_clip=4, max_clips=4)
    for i in range(len(src)):
        ex = src[i]
        assert set(ex) == WEAK_KEYS and ex["label"].shape == ()
        assert ex["mask"].shape == (4,) and ex["tokens"].shape == (4, 4 * 5, 8)


@pytest.mark.slow
def test_vador_training_batches_have_no_frame_level_key(vadllama_run):
    data_dir = os.path.join(os.path.dirname(vadllama_run), "data")
    method = methods.build(tiny_vadllama(data_dir), vadllama_run)
    method.prepare()
    c = method.config
    for stage in method.stages():  # phase 1 and phase 2
        it = stage.make_data()
        batch = next(it)
        # The pipeline's own padding flag aside, a batch holds the example keys only.
        assert set(batch) - {"example_mask"} == WEAK_KEYS, stage.name
        assert batch.get("example_mask", np.ones(c.batch_size)).shape == (c.batch_size,)
        assert batch["label"].shape == (c.batch_size,)
        assert set(np.unique(batch["label"])) <= {0, 1}
        assert batch["mask"].shape == (c.batch_size, c.max_clips)


@pytest.mark.slow
def test_tiny_clip_pretrained_on_the_pretrain_split_only(vadllama_run):
    data_dir = os.path.join(os.path.dirname(vadllama_run), "data")
    pairs = sorted(f for f in os.listdir(data_dir) if f.startswith("clip_pairs_"))
    trained_on = {f.split("_")[2] for f in pairs}
    assert "pretrain" in trained_on and "train" not in trained_on, pairs


@pytest.mark.slow
def test_phase1_trains_on_the_max_score_bce_phase2_adds_the_margin(vadllama_run):
    """§4.2: the VADor baseline trains with the MIL BCE, phase 2 with Eq. (1)'s two terms;
    ``mil_loss_phase1=""`` gives phase 1 ``mil_loss`` too."""
    import jax

    data_dir = os.path.join(os.path.dirname(vadllama_run), "data")
    c = tiny_vadllama(data_dir)
    assert c.mil_loss == "paper" and c.mil_loss_phase1 == "bce"
    method = methods.build(c, vadllama_run)
    method.prepare()
    params = method.init_params(jax.random.key(0))
    stages = method.stages()
    batch = next(stages[0].make_data())
    batch = {k: v for k, v in batch.items() if k != "example_mask"}
    aux = {s.name: s.loss_fn(params, batch, jax.random.key(0))[1] for s in stages}
    assert "mil_margin" not in aux["phase1"] and "mil_margin" in aux["phase2"]
    c.mil_loss_phase1 = ""
    method = methods.build(c, vadllama_run)
    method.prepare()
    _, aux1 = method.stages()[0].loss_fn(params, batch, jax.random.key(0))
    assert "mil_margin" in aux1
