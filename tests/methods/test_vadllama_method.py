"""End-to-end plumbing of the tiny VAD-LLaMA preset (tiny sizes: checks wiring, not quality)."""

import io
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))

import vadllama as vadllama_config  # noqa: E402

from tests.tiny_configs import tiny_vadllama  # noqa: E402
from vau_jax.methods import paper  # noqa: E402
from vau_jax.methods.runner import run_method  # noqa: E402
from vau_jax.methods.vadllama import VADLLaMA, clips_from_frames  # noqa: E402

_tiny = tiny_vadllama  # also used by test_vadllama_phase3.py


def test_clips_from_frames_padding_and_mask():
    tok = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    clips, mask = clips_from_frames(tok, 10, 4, 4)
    assert clips.shape == (4, 8, 3) and mask.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(clips[0].reshape(4, 2, 3), tok[:4])
    np.testing.assert_array_equal(clips[2, 4:], 0.0)  # frames 10, 11 do not exist
    with pytest.raises(ValueError, match="max_clips"):
        clips_from_frames(tok, 10, 2, 4)


@pytest.mark.slow
def test_tiny_run_writes_metrics_and_resumes(tmp_path):
    c = _tiny(str(tmp_path / "data"))
    workdir = str(tmp_path / "run")
    _, metrics = run_method(VADLLaMA(c), c, workdir, "train_and_eval")
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert saved == pytest.approx(metrics)
    for key in ("AUC_O", "AUC_A", "AUC_O_phase1", "AUC_A_phase1"):
        assert 0.0 <= saved[key] <= 1.0
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    # the pretrained tiny CLIP was built once, as a converted checkpoint
    built = [
        d
        for d in os.listdir(c.data_dir)
        if d.startswith("clip_pretrain_") and not d.endswith(".run")
    ]
    assert len(built) == 1 and os.path.isfile(os.path.join(c.data_dir, built[0], "config.json"))
    # rerunning finds the finished stages and only evaluates: same numbers
    _, again = run_method(VADLLaMA(c), c, workdir, "eval")
    assert again["AUC_O"] == pytest.approx(metrics["AUC_O"])
    # streaming the LTC over 1-clip chunks gives the same scores as whole videos
    method = VADLLaMA(c)
    assert method.encoder.input_mode == "background"  # the tower saw background-subtracted frames
    from vau_jax.train.trainer import Trainer

    t = Trainer(method, c, workdir)
    params = t.restore_params()
    t.close()
    full = method.clip_scores(params, "test")
    streamed = method.clip_scores(params, "test", chunk=1)
    for a, b in zip(full, streamed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_paper_preset_without_weights_says_what_to_convert():
    c = vadllama_config.get_config("paper")
    buf = io.StringIO()
    assert paper.explain_missing_weights(c, stream=buf) == 2
    text = buf.getvalue()
    assert (
        "python -m vau_jax.convert --src=" in text and "--config.paper_checkpoints.vision=" in text
    )
    assert "blip2" in text.lower()


def test_paper_preset_builds_full_size_under_eval_shape_with_shardings():
    import jax
    from flax import linen as nn

    from vau_jax import sharding
    from vau_jax.methods.vadllama import paper_abstract_params

    c = vadllama_config.get_config("paper")
    trees = paper_abstract_params(c)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    counts = {}
    for name, tree in trees.items():
        specs = sharding.param_shardings(tree, mesh)  # raises if a param has no logical names
        n_specs = len(
            jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
        )
        leaves = jax.tree.leaves(nn.unbox(tree))
        assert n_specs == len(leaves)
        counts[name] = sum(int(np.prod(x.shape)) for x in leaves)
    assert 0.98e9 < counts["vision"] < 0.99e9  # EVA-ViT-g/14 (39 blocks, 1408 wide)
    assert 1.8e8 < counts["image_qformer"] < 1.9e8  # BLIP-2 Q-Former
    # video Q-Former (12 layers, no text embeddings: 99.6M) + AP + LTC
    assert 0.99e8 < counts["vador"] < 1.01e8
