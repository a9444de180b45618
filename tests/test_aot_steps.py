"""Every paper preset's ahead-of-time steps build and lower from the config alone (abstract
inputs, no weights) on the forced CPU devices: what ``vau_jax.aot`` compiles for TPUs
(``tests/test_aot.py``, which needs libtpu). Parameter counts are the full-size trees'."""

import os
import sys

import jax
import pytest

from vau_jax import aot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))

VICUNA_7B = 6_738_415_616


def _lowered(name: str, **overrides):
    import importlib

    config = importlib.import_module(name).get_config("paper")
    for k, v in overrides.items():
        config[k] = v
    mesh = aot.mesh_on(config, jax.devices())
    steps = aot.method_steps(config, mesh)
    for step in steps:
        with step.context():
            text = step.fn.lower(*step.args).as_text()
        assert "sharding" in text, step.name  # the shardings reached the program
    return {s.name: s for s in steps}


@pytest.mark.slow
def test_vagpt_paper_steps_lower():
    steps = _lowered("vagpt")
    assert list(steps) == ["stage1", "stage2", "generate"]
    s1 = steps["stage1"]
    # LLaMA-VID: Vicuna-7B + Q-Former + projectors, all trained in stages 1-2
    assert s1.params > VICUNA_7B and s1.trainable_params == s1.params
    assert steps["stage2"].trainable_params == s1.params and steps["generate"].params == s1.params
    # the global batch of 128 rows of 2048 tokens, 16 micro-batches
    assert s1.args[1]["input_ids"].shape == (128, 2048)
    assert s1.args[1]["visual"].shape == (128, 32, 256, 1408)


@pytest.mark.slow
def test_vadllama_paper_phase3_steps_lower():
    steps = _lowered("vadllama")
    assert list(steps) == ["phase1", "phase2", "score", "phase3", "phase3_generate"]
    p3 = steps["phase3"]
    assert p3.params > VICUNA_7B
    # only the adaptor, Linear([x, x~] = 2 x 768 -> 4096) with its bias, learns
    assert p3.trainable_params == 2 * 768 * 4096 + 4096
    assert p3.args[1]["input_ids"].shape == (2, 512)  # §4.2: batch 2; max_txt_len 512


@pytest.mark.slow
def test_tvau_paper_steps_lower():
    steps = _lowered("tvau")
    assert list(steps) == ["ahd", "rae_narration", "rae_anomaly", "generate"]
    # AHD and RAE, the only trained parts (the numbers of the paper preset's README row)
    assert steps["ahd"].trainable_params == 9_445_381
    assert steps["rae_anomaly"].trainable_params == 1_196_800
    assert steps["ahd"].params > VICUNA_7B  # the frozen LVLM is in the tree, not trained
