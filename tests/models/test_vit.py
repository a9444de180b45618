"""VisionTransformer unit tests: bicubic resampling vs torch, shapes, dtypes, error messages."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax.convert.common import abstract_params
from vau_jax.models import vit


def _params(module, *args, seed=0):
    """Random params from the abstract shapes (no jitted init: XLA's RNG compile is slow)."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        base = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
        return jnp.asarray(base + 0.05 * rng.standard_normal(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_params(module, *args))


@pytest.mark.parity
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize(
    "n_in,n_out", [(4, 6), (4, 3), (16, 37), (16, 5), (7, 7), (37, 16), (3, 1)]
)
def test_bicubic_matrix_matches_torch(antialias, n_in, n_out):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((1, 2, n_in, n_in)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x),
        size=(n_out, n_in),
        mode="bicubic",
        align_corners=False,
        antialias=antialias,
    ).numpy()
    w = vit.bicubic_matrix(n_in, n_out, antialias)
    ours = np.einsum("oh,bchw->bcow", w, x)
    # measured max abs err 3.2e-6 to 4.1e-6 (3 seeds, |x| <= 3.9); the old atol=3e-6, rtol=1e-5
    # left 1.2x of headroom
    np.testing.assert_allclose(ours, ref, atol=2e-5, rtol=0)


def test_resize_pos_grid_identity_and_shape():
    table = jnp.asarray(np.random.default_rng(1).standard_normal((4, 4, 8)), jnp.float32)
    np.testing.assert_allclose(vit.resize_pos_grid(table, (4, 4), False), table, atol=1e-6)
    chex.assert_shape(vit.resize_pos_grid(table, (6, 3), True), (6, 3, 8))


@pytest.mark.parametrize("name", ["tiny-clip-vit", "tiny-dinov2", "tiny-eva-vit"])
def test_tiny_forward_shapes(name):
    cfg = vit.PRESETS[name]
    module = vit.module_from_config(cfg)
    x = jnp.asarray(
        np.random.default_rng(0).standard_normal((2, cfg.image_size, cfg.image_size, 3)),
        jnp.float32,
    )
    params = _params(module, x)
    out = jax.jit(lambda p, x: module.apply({"params": p}, x, output_hidden_states=True))(params, x)
    n = cfg.grid**2 + 1 + cfg.num_register_tokens
    chex.assert_shape(out["last_hidden_state"], (2, n, cfg.hidden_size))
    chex.assert_shape(out["pooler_output"], (2, cfg.hidden_size))
    assert len(out["hidden_states"]) == cfg.num_hidden_layers + 1
    chex.assert_tree_all_finite(out)
    # DINOv2 & EVA norm the whole sequence (as HF); CLIP leaves it unnormed.
    last, top = np.asarray(out["last_hidden_state"]), np.asarray(out["hidden_states"][-1])
    if cfg.variant == "clip":
        np.testing.assert_array_equal(last, top)
    else:
        ln = params["layernorm" if cfg.variant == "dinov2" else "post_layernorm"]
        mu, var = top.mean(-1, keepdims=True), top.var(-1, keepdims=True)
        ref = (top - mu) / np.sqrt(var + cfg.layer_norm_eps) * ln["scale"] + ln["bias"]
        np.testing.assert_allclose(last, ref, atol=2.5e-6)  # measured 4.8e-7


def test_dinov2_registers_and_masking():
    cfg = dataclasses.replace(vit.PRESETS["tiny-dinov2"], num_register_tokens=2)
    module = vit.module_from_config(cfg)
    x = jnp.ones((1, 56, 56, 3))
    params = _params(module, x)
    assert params["embeddings"]["register_tokens"].shape == (1, 2, 64)
    out = module.apply({"params": params}, x)
    chex.assert_shape(out["last_hidden_state"], (1, 1 + 2 + 16, 64))
    mask = jnp.zeros((1, 16), bool).at[0, 3].set(True)
    masked = module.apply({"params": params}, x, bool_masked_pos=mask)["last_hidden_state"]
    assert not np.allclose(masked, out["last_hidden_state"])
    no_mask_cfg = dataclasses.replace(cfg, use_mask_token=False)
    m2 = vit.module_from_config(no_mask_cfg)
    p2 = _params(m2, x)
    with pytest.raises(ValueError, match="mask token"):
        m2.apply({"params": p2}, x, bool_masked_pos=mask)


def test_bfloat16_compute_close_to_float32():
    cfg = vit.PRESETS["tiny-clip-vit"]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 64, 64, 3)), jnp.float32)
    m32 = vit.module_from_config(cfg)
    params = _params(m32, x)
    m16 = vit.module_from_config(dataclasses.replace(cfg, dtype="bfloat16"))
    o32 = m32.apply({"params": params}, x)["pooler_output"]
    o16 = m16.apply({"params": params}, x)["pooler_output"]
    assert o16.dtype == jnp.bfloat16
    assert jax.tree.all(jax.tree.map(lambda a: a.dtype == jnp.float32, params))
    err = np.max(np.abs(np.asarray(o16, np.float32) - np.asarray(o32)))
    assert 0 < err <= 0.025 * np.max(np.abs(o32)), err  # measured 7.1e-3 to 8.4e-3 of max|o32|


def test_clip_rejects_other_resolution_without_interpolation():
    cfg = vit.PRESETS["tiny-clip-vit"]
    module = vit.module_from_config(cfg)
    params = _params(module, jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match=r"\(48\*64\)"):
        module.apply({"params": params}, jnp.zeros((1, 48, 64, 3)))
    out = module.apply({"params": params}, jnp.zeros((1, 48, 64, 3)), interpolate_pos_encoding=True)
    chex.assert_shape(out["last_hidden_state"], (1, 6 * 8 + 1, 64))


def test_config_validation():
    with pytest.raises(ValueError, match="variant"):
        vit.ViTConfig(variant="swin")
    with pytest.raises(ValueError, match="divisible"):
        vit.ViTConfig(hidden_size=30, num_attention_heads=4)
    assert vit.PRESETS["dinov2-g/14"].mlp_width == 4096
    assert vit.PRESETS["dinov2-b/14"].mlp_width == 3072


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-clip-vit", "tiny-dinov2", "tiny-eva-vit"])
def test_sharded_forward_matches_single_device(name):
    """Params sharded over a (data, fsdp, tensor) = (2, 2, 2) mesh by their logical names."""
    from flax import linen as nn

    from vau_jax import sharding

    cfg = dataclasses.replace(
        vit.PRESETS[name], num_register_tokens=2 if name == "tiny-dinov2" else 0
    )
    module = vit.module_from_config(cfg)
    x = jnp.asarray(
        np.random.default_rng(0).standard_normal((4, cfg.image_size, cfg.image_size, 3)),
        jnp.float32,
    )
    params = _params(module, x)
    ref = module.apply({"params": params}, x, output_hidden_states=True)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    boxed = jax.eval_shape(lambda: module.init(jax.random.key(0), x))["params"]
    sharded = sharding.shard_params(params, boxed, mesh)
    assert any(
        len(a.sharding.device_set) > 1 and not a.sharding.is_fully_replicated
        for a in jax.tree.leaves(sharded)
    )
    fwd = jax.jit(lambda p, x: module.apply({"params": p}, x, output_hidden_states=True))
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
        out = fwd(sharded, jax.device_put(x, sharding.data_sharding(mesh, 4)))
    chex.assert_trees_all_close(out, ref, atol=1e-5)  # measured 3.6e-6 to 5.5e-6
