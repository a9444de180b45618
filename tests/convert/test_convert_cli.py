"""``python -m vau_jax.convert``: HF folder -> orbax + JSON, loadable back, clear errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vau_jax.convert import load_hf  # noqa: E402
from vau_jax.convert.checkpoint import load_converted  # noqa: E402
from vau_jax.convert.common import CheckpointMismatchError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _tiny_clip(path):
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=50,
            max_position_embeddings=10,
            bos_token_id=48,
            eos_token_id=49,
            pad_token_id=1,
            projection_dim=16,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=16,
        ),
        projection_dim=16,
    )
    transformers.CLIPModel(cfg).eval().save_pretrained(path, safe_serialization=True)
    return str(path)


def _convert(src, dst):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "vau_jax.convert", f"--src={src}", f"--dst={dst}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_roundtrip_and_errors(tmp_path):
    src = _tiny_clip(tmp_path / "hf")
    dst = tmp_path / "converted"
    r = _convert(src, dst)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(dst)) == ["config.json", "params"]
    module, params = load_converted(str(dst))
    ref_module, ref_params = load_hf(src)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)
    ids = np.array([[48, 5, 6, 49, 1]], np.int32)
    px = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    a = module.apply({"params": params}, ids, px)["logits_per_image"]
    b = ref_module.apply({"params": ref_params}, ids, px)["logits_per_image"]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    again = _convert(src, dst)  # never overwrite a finished conversion
    assert again.returncode == 2 and "exists and is not empty" in again.stderr

    missing = _convert(str(tmp_path / "nope"), tmp_path / "x")
    assert missing.returncode == 2 and "nope" in missing.stderr

    # A config that no longer fits the stored tensors: error names key and both shapes.
    meta = json.loads((dst / "config.json").read_text())
    meta["config"]["projection_dim"] = 8
    (dst / "config.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointMismatchError, match=r"visual_projection/kernel.*\(32, 8\).*\(32, 16\)"
    ):
        load_converted(str(dst))
