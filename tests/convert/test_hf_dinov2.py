"""DINOv2 / DINOv2-with-registers: parity with HF PyTorch, round trip, checkpoint errors."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.convert.hf_testing import perturb as _perturb  # noqa: E402
from tests.convert.hf_testing import save as _save  # noqa: E402
from vau_jax.convert import CheckpointMismatchError, export_hf, load_hf  # noqa: E402
from vau_jax.convert.common import read_safetensors_dir  # noqa: E402

# Max abs error over every output: measured 1.2e-6 to 1.8e-6 (3 seeds, AVX2 EPYC, float32).
TOL = 1e-5


def _max_errors(ours, theirs):
    """Max abs error per HF output (every tensor, every hidden state)."""
    errs = {}
    for key, ref in theirs.items():
        if ref is None:
            continue
        assert key in ours, f"missing output {key}"
        if isinstance(ref, tuple):
            assert len(ours[key]) == len(ref), (key, len(ours[key]), len(ref))
            for i, (a, b) in enumerate(zip(ours[key], ref)):
                assert np.shape(a) == tuple(b.shape), (key, i)
                errs[f"{key}[{i}]"] = float(np.max(np.abs(np.asarray(a) - b.numpy())))
        else:
            assert np.shape(ours[key]) == tuple(ref.shape), (key, np.shape(ours[key]), ref.shape)
            errs[key] = float(np.max(np.abs(np.asarray(ours[key]) - ref.numpy())))
    return errs


def _check(module, params, hf_model, pixels, **kwargs):
    hf_kwargs = {k: torch.from_numpy(np.asarray(v)) for k, v in kwargs.items()}
    with torch.no_grad():
        ref = hf_model(
            torch.from_numpy(pixels.transpose(0, 3, 1, 2)), output_hidden_states=True, **hf_kwargs
        )
    ours = module.apply({"params": params}, pixels, output_hidden_states=True, **kwargs)
    errs = _max_errors(ours, ref)
    print(pixels.shape, {k: f"{v:.2e}" for k, v in errs.items()})
    assert max(errs.values()) <= TOL, errs
    return errs


def _dinov2(**overrides):
    torch.manual_seed(0)
    cfg = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=28, patch_size=7
    )
    cfg.update(overrides)
    return _perturb(transformers.Dinov2Model(transformers.Dinov2Config(**cfg)), seed=1)


def _pixels(h, w, b=2, seed=0):
    return np.random.default_rng(seed).standard_normal((b, h, w, 3)).astype(np.float32)


@pytest.mark.parity
def test_dinov2_parity_config_and_other_resolutions(tmp_path):
    hf = _dinov2()
    module, params = load_hf(_save(hf, tmp_path))
    _check(module, params, hf, _pixels(28, 28))  # config grid 4x4
    _check(module, params, hf, _pixels(42, 35))  # 6x5: upsampled, non-square
    _check(module, params, hf, _pixels(21, 14))  # 3x2: downsampled, non-square
    _check(module, params, hf, _pixels(49, 49))  # 7x7 square


@pytest.mark.parity
def test_dinov2_mask_token_parity(tmp_path):
    hf = _dinov2()
    module, params = load_hf(_save(hf, tmp_path))
    mask = np.random.default_rng(3).random((2, 16)) < 0.4
    _check(module, params, hf, _pixels(28, 28), bool_masked_pos=mask)


@pytest.mark.parity
def test_dinov2_swiglu_parity(tmp_path):
    hf = _dinov2(use_swiglu_ffn=True, qkv_bias=False, layerscale_value=0.1)
    path = _save(hf, tmp_path)
    assert any("weights_in" in k for k in read_safetensors_dir(path))
    module, params = load_hf(path)
    _check(module, params, hf, _pixels(28, 28))
    _check(module, params, hf, _pixels(35, 21))


@pytest.mark.slow
@pytest.mark.parity
def test_dinov2_with_registers_parity(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        num_register_tokens=3,
    )
    hf = _perturb(transformers.Dinov2WithRegistersModel(cfg), seed=2)
    module, params = load_hf(_save(hf, tmp_path))
    assert module.config.num_register_tokens == 3 and module.config.interpolate_antialias
    _check(module, params, hf, _pixels(32, 32))
    _check(module, params, hf, _pixels(48, 40))  # 6x5 upsampled
    _check(module, params, hf, _pixels(24, 16))  # 3x2 downsampled (antialiased kernel)


@pytest.mark.parametrize("kind", ["plain", "swiglu", "registers"])
def test_round_trip_exact(tmp_path, kind):
    if kind == "registers":
        torch.manual_seed(0)
        cfg = transformers.Dinov2WithRegistersConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=16, patch_size=8
        )
        hf = _perturb(transformers.Dinov2WithRegistersModel(cfg), seed=0)
    else:
        hf = _dinov2(use_swiglu_ffn=kind == "swiglu")
    path = _save(hf, tmp_path)
    module, params = load_hf(path)
    original = read_safetensors_dir(path)
    exported = export_hf(module, params)
    assert sorted(exported) == sorted(original)
    for k in original:
        assert np.array_equal(exported[k], original[k]), k


def test_in_memory_key_layout_is_read(tmp_path):
    hf = _dinov2(use_swiglu_ffn=True)
    module, params = load_hf(_save(hf, tmp_path))
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}  # q_proj / gate_proj names
    from vau_jax.convert import hf_dinov2

    params2 = hf_dinov2.params_from_hf(sd, module.config)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, params2))


def test_wrong_shape_and_missing_key(tmp_path):
    hf = _dinov2()
    path = _save(hf, tmp_path)
    from vau_jax.convert import hf_dinov2
    from vau_jax.convert.common import read_hf_config

    cfg = hf_dinov2.config_from_hf(read_hf_config(path))
    sd = read_safetensors_dir(path)
    bad = dict(sd)
    key = "encoder.layer.1.mlp.fc1.weight"
    bad[key] = np.zeros((100, 32), np.float32)
    with pytest.raises(CheckpointMismatchError) as e:
        hf_dinov2.params_from_hf(bad, cfg, source="bad.safetensors")
    msg = str(e.value)
    assert key in msg and "(128, 32)" in msg and "(100, 32)" in msg and "bad.safetensors" in msg
    missing = dict(sd)
    del missing["embeddings.position_embeddings"]
    with pytest.raises(CheckpointMismatchError) as e:
        hf_dinov2.params_from_hf(missing, cfg)
    assert "embeddings.position_embeddings" in str(e.value) and "(1, 17, 32)" in str(e.value)


def test_config_round_trip():
    from vau_jax.convert import hf_dinov2
    from vau_jax.models import vit

    for name in ("dinov2-b/14", "dinov2-g/14", "tiny-dinov2"):
        cfg = vit.PRESETS[name]
        assert hf_dinov2.config_from_hf(hf_dinov2.config_to_hf(cfg)) == cfg
