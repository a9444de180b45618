"""BLIP-2 vision tower (EVA-ViT): parity with HF PyTorch, round trip, checkpoint errors."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.convert.hf_testing import save as _save  # noqa: E402
from vau_jax.convert import (  # noqa: E402
    CheckpointMismatchError,
    export_hf,
    hf_blip2_vision,
    load_hf,
)
from vau_jax.convert.common import read_hf_config, read_safetensors_dir  # noqa: E402

# Max abs error over every output: measured 7.2e-7 to 9.5e-7 (3 seeds, AVX2 EPYC, float32).
TOL = 5e-6


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=28,
        patch_size=7,
    )
    cfg.update(overrides)
    hf = transformers.Blip2VisionModel(transformers.Blip2VisionConfig(**cfg))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            noise = 0.05 * torch.randn(p.shape, generator=g)
            if name.endswith("qkv.bias"):  # EVA has no key bias: keep that slice zero
                noise[p.shape[0] // 3 : 2 * p.shape[0] // 3] = 0
            p.add_(noise)
    return hf.eval()


def _errors(ours, ref):
    errs = {}
    for key, r in ref.items():
        if r is None:
            continue
        if isinstance(r, tuple):
            assert len(ours[key]) == len(r)
            for i, (a, b) in enumerate(zip(ours[key], r)):
                errs[f"{key}[{i}]"] = float(np.max(np.abs(np.asarray(a) - b.numpy())))
        else:
            assert np.shape(ours[key]) == tuple(r.shape)
            errs[key] = float(np.max(np.abs(np.asarray(ours[key]) - r.numpy())))
    print({k: f"{v:.1e}" for k, v in errs.items()})
    return errs


@pytest.mark.parity
@pytest.mark.parametrize(
    "overrides", [{}, {"qkv_bias": False, "num_hidden_layers": 3, "hidden_act": "quick_gelu"}]
)
@pytest.mark.slow
def test_blip2_vision_parity(tmp_path, overrides):
    hf = _model(**overrides)
    module, params = load_hf(_save(hf, tmp_path))
    assert module.config.variant == "eva"

    def fwd(p, x, interp):
        return module.apply(
            {"params": p}, x, output_hidden_states=True, interpolate_pos_encoding=interp
        )

    rng = np.random.default_rng(0)
    for (h, w), interp in [((28, 28), False), ((42, 35), True), ((21, 21), False)]:
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
        with torch.no_grad():
            ref = hf(
                torch.from_numpy(x.transpose(0, 3, 1, 2)),
                output_hidden_states=True,
                interpolate_pos_encoding=interp,
            )
        errs = _errors(fwd(params, x, interp), ref)
        assert len(errs) == 2 + module.config.num_hidden_layers + 1
        assert max(errs.values()) <= TOL, errs


def test_round_trip_exact(tmp_path):
    path = _save(_model(), tmp_path)
    module, params = load_hf(path)
    assert set(params["encoder"]["layers_0"]["self_attn"]) == {
        "qkv",
        "q_bias",
        "v_bias",
        "projection",
    }
    original = read_safetensors_dir(path)
    exported = export_hf(module, params)
    assert sorted(exported) == sorted(original)
    for k in original:
        assert np.array_equal(exported[k], original[k]), k
    assert (
        hf_blip2_vision.config_from_hf(hf_blip2_vision.config_to_hf(module.config)) == module.config
    )


def test_checkpoint_errors(tmp_path):
    path = _save(_model(), tmp_path)
    cfg = hf_blip2_vision.config_from_hf(read_hf_config(path))
    sd = read_safetensors_dir(path)
    key = "encoder.layers.0.self_attn.qkv.weight"
    with pytest.raises(CheckpointMismatchError) as e:
        hf_blip2_vision.params_from_hf(
            {**sd, key: np.zeros((96, 33), np.float32)}, cfg, source="x.safetensors"
        )
    assert key in str(e.value) and "(96, 32)" in str(e.value) and "(96, 33)" in str(e.value)
    with pytest.raises(CheckpointMismatchError) as e:
        hf_blip2_vision.params_from_hf(
            {k: v for k, v in sd.items() if k != "post_layernorm.bias"}, cfg
        )
    assert "post_layernorm.bias" in str(e.value) and "(32,)" in str(e.value)
    bias_key = "encoder.layers.1.self_attn.qkv.bias"
    nonzero_k = sd[bias_key].copy()
    nonzero_k[40] = 1.0
    with pytest.raises(CheckpointMismatchError, match="key slice"):
        hf_blip2_vision.params_from_hf({**sd, bias_key: nonzero_k}, cfg)


def test_full_blip2_folder_gives_its_vision_tower(tmp_path):
    """``load_full_model`` reads only ``vision_model.*`` of a full BLIP-2 folder (the paper
    presets' ``vision`` role): the same params as the bare tower's folder."""
    torch.manual_seed(3)
    from tests.convert.hf_testing import TINY_OPT

    opt = dict(TINY_OPT)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    full = transformers.Blip2Model(
        transformers.Blip2Config(
            vision_config={**tower, "image_size": 28, "patch_size": 7},
            qformer_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
            ),
            text_config=opt,
            num_query_tokens=4,
        )
    ).eval()
    module, params = hf_blip2_vision.load_full_model(_save(full, tmp_path / "full"))
    _, bare = load_hf(_save(full.vision_model, tmp_path / "bare"))
    assert module.config.num_hidden_layers == 2 and module.config.image_size == 28
    flat = export_hf(module, params)
    ref = export_hf(module, bare)
    assert flat.keys() == ref.keys()
    for k in flat:
        np.testing.assert_array_equal(flat[k], ref[k], err_msg=k)
    with pytest.raises(ValueError, match="not a full"):
        hf_blip2_vision.load_full_model(str(tmp_path / "bare"))
