"""CLIP (vision, text, full model): parity with HF PyTorch, round trip, checkpoint errors."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.convert.hf_testing import perturb as _perturb  # noqa: E402
from tests.convert.hf_testing import save as _save  # noqa: E402
from vau_jax.convert import (  # noqa: E402
    CheckpointMismatchError,
    export_hf,
    hf_clip,
    load_hf,
    load_hf_state_dict,
)
from vau_jax.convert.common import read_hf_config, read_safetensors_dir  # noqa: E402

# Max abs error over every output, all tests here: measured 1.5e-6 to 3.1e-6 (3 seeds,
# AVX2 EPYC, float32); the tolerance sits ~5x above.
TOL = 1.5e-5
VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
    projection_dim=24,
)
TEXT = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=2,
    vocab_size=99,
    max_position_embeddings=12,
    bos_token_id=97,
    eos_token_id=98,
    pad_token_id=1,
    projection_dim=24,
)


def _errors(ours, ref, prefix=""):
    """Max abs error of every tensor HF returns (nested outputs and hidden-state tuples too)."""
    errs = {}
    for key, r in ref.items():
        if r is None:
            continue
        assert key in ours, f"missing output {prefix}{key}"
        if hasattr(r, "keys"):
            errs.update(_errors(ours[key], r, f"{prefix}{key}."))
        elif isinstance(r, tuple):
            assert len(ours[key]) == len(r), (key, len(ours[key]), len(r))
            for i, (a, b) in enumerate(zip(ours[key], r)):
                assert np.shape(a) == tuple(b.shape)
                errs[f"{prefix}{key}[{i}]"] = float(np.max(np.abs(np.asarray(a) - b.numpy())))
        else:
            assert np.shape(ours[key]) == tuple(r.shape), (key, np.shape(ours[key]), r.shape)
            errs[f"{prefix}{key}"] = float(
                np.max(np.abs(np.asarray(ours[key]) - r.detach().numpy()))
            )
    return errs


def _report(errs):
    print({k: f"{v:.1e}" for k, v in errs.items()})
    assert max(errs.values()) <= TOL, errs


def _pixels(h, w, b=2, seed=0):
    return np.random.default_rng(seed).standard_normal((b, h, w, 3)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(x.transpose(0, 3, 1, 2))


def _text_inputs(eos, b=3, n=10, seed=0):
    """Right-padded ids: random tokens, an EOS at each length, pad (1) after it."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, 90, size=(b, n))
    mask = np.zeros((b, n), np.int64)
    for i, length in enumerate([n, n - 3, 4][:b]):
        ids[i, length - 1] = eos
        ids[i, length:] = 1
        mask[i, :length] = 1
    return ids, mask


def _vision_model(cls, seed=0, **overrides):
    torch.manual_seed(seed)
    return _perturb(cls(transformers.CLIPVisionConfig(**{**VISION, **overrides})), seed + 1)


@pytest.mark.parity
def test_clip_vision_parity_and_interpolation(tmp_path):
    hf = _vision_model(transformers.CLIPVisionModel)
    module, params = load_hf(_save(hf, tmp_path))
    assert not module.config.with_projection

    def fwd(p, x):
        return module.apply(
            {"params": p}, x, output_hidden_states=True, interpolate_pos_encoding=True
        )

    for h, w in [(32, 32), (48, 40), (16, 24)]:
        x = _pixels(h, w)
        with torch.no_grad():
            ref = hf(
                _nchw(x), output_hidden_states=True, interpolate_pos_encoding=(h, w) != (32, 32)
            )
        _report(_errors(fwd(params, x), ref))
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        module.apply({"params": params}, _pixels(48, 40))


@pytest.mark.parity
def test_clip_vision_with_projection_parity(tmp_path):
    hf = _vision_model(transformers.CLIPVisionModelWithProjection, seed=3, hidden_act="gelu")
    path = _save(hf, tmp_path)
    assert all(
        k.startswith(("vision_model.", "visual_projection.")) for k in read_safetensors_dir(path)
    )
    module, params = load_hf(path)
    assert module.config.with_projection
    x = _pixels(32, 32, b=3)
    ours = module.apply({"params": params}, x, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(_nchw(x), output_hidden_states=True)
        pooled = hf.vision_model(_nchw(x)).pooler_output
    errs = _errors(ours, ref)
    errs["pooler_output"] = float(
        np.max(np.abs(np.asarray(ours["pooler_output"]) - pooled.numpy()))
    )
    _report(errs)


@pytest.mark.parity
@pytest.mark.parametrize("eos", [98, 2])
def test_clip_text_parity(tmp_path, eos):
    torch.manual_seed(0)
    cfg = transformers.CLIPTextConfig(**{**TEXT, "eos_token_id": eos})
    hf = _perturb(transformers.CLIPTextModel(cfg), 5)
    module, params = load_hf(_save(hf, tmp_path))
    assert module.config.eos_token_id == eos
    ids, mask = _text_inputs(eos if eos != 2 else 95)  # legacy rule: pooled at the largest id
    ours = module.apply({"params": params}, ids, mask, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True
        )
    _report(_errors(ours, ref))
    # Left padding: the padded query rows see no key at all.
    left_ids, left_mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
    ours = module.apply({"params": params}, left_ids, left_mask, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(
            torch.from_numpy(left_ids),
            attention_mask=torch.from_numpy(left_mask),
            output_hidden_states=True,
        )
    _report(_errors(ours, ref))


@pytest.mark.parity
def test_clip_text_with_projection_parity(tmp_path):
    torch.manual_seed(0)
    hf = _perturb(transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**TEXT)), 6)
    module, params = load_hf(_save(hf, tmp_path))
    ids, mask = _text_inputs(98, seed=1)
    ours = module.apply({"params": params}, ids, mask, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), output_hidden_states=True
        )
    _report(_errors(ours, ref))


def _clip_model(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=16)
    return _perturb(transformers.CLIPModel(cfg), seed + 7)


@pytest.mark.parity
def test_clip_model_parity(tmp_path):
    hf = _clip_model()
    module, params = load_hf(_save(hf, tmp_path))
    ids, mask = _text_inputs(98, seed=2)
    x = _pixels(32, 32, b=2)
    ours = module.apply({"params": params}, ids, x, mask, output_hidden_states=True)
    with torch.no_grad():
        ref = hf(
            input_ids=torch.from_numpy(ids),
            pixel_values=_nchw(x),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
        )
    errs = _errors(ours, ref)
    assert (
        "text_model_output.hidden_states[3]" in errs and "vision_model_output.pooler_output" in errs
    )
    errs["logit_scale"] = abs(float(ours["logit_scale"]) - float(hf.logit_scale.detach()))
    _report(errs)
    feats = module.apply({"params": params}, x, method=module.get_image_features)
    with torch.no_grad():
        ref_feats = hf.get_image_features(pixel_values=_nchw(x))
    _report(_errors(feats, ref_feats))


@pytest.mark.parametrize("kind", ["vision", "vision_proj", "text", "clip"])
def test_round_trip_exact(tmp_path, kind):
    if kind == "vision":
        hf = _vision_model(transformers.CLIPVisionModel)
    elif kind == "vision_proj":
        hf = _vision_model(transformers.CLIPVisionModelWithProjection)
    elif kind == "text":
        torch.manual_seed(0)
        hf = _perturb(transformers.CLIPTextModel(transformers.CLIPTextConfig(**TEXT)), 1)
    else:
        hf = _clip_model()
    path = _save(hf, tmp_path)
    module, params = load_hf(path)
    original = read_safetensors_dir(path)
    exported = export_hf(module, params)
    assert sorted(exported) == sorted(original)
    for k in original:
        assert np.array_equal(exported[k], original[k]), k
    cfg = module.config
    assert hf_clip.config_from_hf(hf_clip.config_to_hf(cfg)) == cfg


def test_prefixed_bare_vision_checkpoint(tmp_path):
    """Older HF wrote a bare CLIPVisionModel with the ``vision_model.`` prefix (+ position_ids)."""
    hf = _vision_model(transformers.CLIPVisionModel)
    path = _save(hf, tmp_path)
    sd = {f"vision_model.{k}": v for k, v in read_safetensors_dir(path).items()}
    sd["vision_model.embeddings.position_ids"] = np.arange(17)[None]
    module, params = load_hf_state_dict(sd, read_hf_config(path))
    _, params_bare = load_hf(path)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, params_bare))


def test_wrong_shape_and_missing_key(tmp_path):
    hf = _clip_model()
    path = _save(hf, tmp_path)
    cfg = hf_clip.config_from_hf(read_hf_config(path))
    sd = read_safetensors_dir(path)
    key = "vision_model.encoder.layers.1.self_attn.k_proj.weight"
    bad = {**sd, key: np.zeros((32, 31), np.float32)}
    with pytest.raises(CheckpointMismatchError) as e:
        hf_clip.params_from_hf(bad, cfg, source="bad_dir")
    msg = str(e.value)
    assert key in msg and "(32, 32)" in msg and "(32, 31)" in msg and "bad_dir" in msg
    missing = {k: v for k, v in sd.items() if k != "text_projection.weight"}
    with pytest.raises(CheckpointMismatchError) as e:
        hf_clip.params_from_hf(missing, cfg)
    assert "text_projection.weight" in str(e.value) and "(16, 32)" in str(e.value)
    extra = {**sd, "vision_model.extra.weight": np.zeros(3, np.float32)}
    with pytest.raises(CheckpointMismatchError, match="extra.weight"):
        hf_clip.params_from_hf(extra, cfg)
