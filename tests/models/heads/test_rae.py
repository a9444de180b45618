"""RAE: PyTorch-equal adaptive pooling, prompt order, masking, temporal order, signed diffs."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import parameterized
from flax import linen as nn

from vau_jax.models.heads.rae import (
    RAE,
    RAEConfig,
    adaptive_avg_pool,
    adaptive_max_pool,
    added_params,
    num_prompts,
)

CFG = RAEConfig(llm_width=12, channels=(4, 6), num_base=3, grid=3)
CFG2 = dataclasses.replace(CFG, time_segments=2)  # same param shapes


@functools.cache
def _params(cfg, seed=0):
    """Random params of the right shapes (``eval_shape`` + numpy: no PRNG compile, fast)."""
    shapes = jax.eval_shape(RAE(cfg).init, jax.random.key(0), jnp.zeros((1, 2, 4, 4)))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(scale=0.5, size=s.shape), jnp.float32),
        nn.unbox(shapes["params"]),
    )


def _init(cfg=CFG, shape=(2, 6, 8, 8), seed=0):
    hm = jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)
    return _params(cfg, seed), hm


def _apply(cfg, params, hm, valid=None):
    return np.asarray(RAE(cfg).apply({"params": params}, hm, valid))


def test_shapes_names_and_prompt_count():
    boxed = jax.eval_shape(RAE(CFG).init, jax.random.key(0), jnp.zeros((1, 2, 4, 4)))["params"]
    assert boxed["conv_0"]["kernel"].names == ("conv", "conv", "conv", None)
    assert boxed["region_proj"]["kernel"].names == (None, "embed")
    assert boxed["base"].names == (None, "embed")
    params, hm = _init()
    assert sorted(params) == ["base", "conv_0", "conv_1", "global_proj", "region_proj"]
    assert params["conv_0"]["kernel"].shape == (3, 3, 1, 4)
    out = _apply(CFG, params, hm)
    assert num_prompts(CFG) == 3 + 9 + 1 == out.shape[1]
    assert out.shape == (2, 13, 12)
    assert _apply(CFG2, _params(CFG2), hm).shape == (2, num_prompts(CFG2), 12) == (2, 23, 12)
    with pytest.raises(ValueError, match="T>=2"):
        RAE(CFG).apply({"params": params}, hm[:, :1])


def _np_reference(params, hm):
    """One segment's prompts recomputed with torch: base, region (row-major), global."""
    x = torch.from_numpy(np.asarray(hm[:, 1:] - hm[:, :-1], np.float64))  # [B, T-1, h, w]
    b, n = x.shape[:2]
    f = x.reshape(b * n, 1, *x.shape[2:])
    for name in ("conv_0", "conv_1"):
        k = torch.from_numpy(np.asarray(params[name]["kernel"], np.float64)).permute(3, 2, 0, 1)
        bias = torch.from_numpy(np.asarray(params[name]["bias"], np.float64))
        f = torch.nn.functional.gelu(torch.nn.functional.conv2d(f, k, bias, padding=1))
    region = torch.nn.functional.adaptive_avg_pool2d(f, 3).flatten(2).transpose(1, 2)  # [N, 9, C]
    region = region.reshape(b, n, 9, -1).mean(1).numpy()  # row-major cells, mean over time
    glob = f.mean(dim=(2, 3)).reshape(b, n, -1).mean(1).numpy()  # [B, C]
    rp, gp = params["region_proj"], params["global_proj"]
    p_region = region @ np.asarray(rp["kernel"]) + np.asarray(rp["bias"])
    p_global = glob @ np.asarray(gp["kernel"]) + np.asarray(gp["bias"])
    base = np.broadcast_to(np.asarray(params["base"]), (b, *params["base"].shape))
    return np.concatenate([base, p_region, p_global[:, None]], axis=1)


class RAETest(chex.TestCase):
    """Pooling against PyTorch, prompts against the reference, masking, eagerly and under
    ``jax.jit`` (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("8x8", 8, 8), ("7x5", 7, 5), ("3x3", 3, 3), ("2x4", 2, 4))
    def test_adaptive_pool_equals_torch(self, *hw):
        x = np.random.default_rng(0).normal(size=(2, *hw, 4)).astype(np.float32)
        got = self.variant(adaptive_avg_pool, static_argnums=1)(jnp.asarray(x), 3)
        chex.assert_shape(got, (2, 3, 3, 4))
        ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 3)
        want = ref.permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(np.asarray(got), want, atol=6e-7)  # measured 1.2e-7

    @chex.variants(with_jit=True, without_jit=True)
    def test_order_matches_reference(self):
        params, hm = _init()
        out = self.variant(RAE(CFG).apply)({"params": params}, hm)
        chex.assert_shape(out, (2, num_prompts(CFG), CFG.llm_width))
        chex.assert_tree_all_finite(out)
        # measured max abs err 1.5e-7 to 4.3e-7 (eager and jit, 3 seeds)
        np.testing.assert_allclose(np.asarray(out), _np_reference(params, hm), atol=2e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_invalid_frames_do_not_count(self):
        apply = self.variant(lambda p, hm, valid=None: RAE(CFG).apply({"params": p}, hm, valid))
        params, hm = _init()
        valid = np.ones((2, 6), bool)
        valid[0, 4:] = False  # trailing padding
        valid[1, 2] = False  # a dropped frame in the middle
        out = np.asarray(apply(params, hm, jnp.asarray(valid)))
        noisy = hm.at[0, 4:].set(5.0).at[1, 2].set(-3.0)
        noisy_out = apply(params, noisy, jnp.asarray(valid))
        np.testing.assert_allclose(noisy_out, out, atol=1e-6)  # measured 0 (f32 floor)
        # where the padding sits does not matter: the same 4 frames padded at the front
        front = jnp.concatenate([hm[:, 4:], hm[:, :4]], axis=1)
        valid_front = jnp.asarray([[False, False, True, True, True, True]] * 2)
        np.testing.assert_allclose(apply(params, front, valid_front)[0], out[0], atol=1e-6)
        assert not np.allclose(apply(params, hm), out, atol=1e-4)
        none_valid = apply(params, hm, jnp.zeros((2, 6), bool))
        chex.assert_shape(none_valid, out.shape)
        chex.assert_tree_all_finite(none_valid)


def _from_diffs(first, diffs):
    """Heatmaps [T, h, w] with H[0] = first and H[t+1] - H[t] = diffs[t]."""
    return np.concatenate([first[None], first[None] + np.cumsum(diffs, 0)])


def test_time_segments_keep_the_order_of_motion():
    rng = np.random.default_rng(1)
    first = rng.uniform(size=(8, 8))
    a, b, c = rng.normal(scale=0.3, size=(3, 8, 8))
    # 4 valid differences (the last frame is padding): motion a early vs late
    hm = jnp.asarray(np.stack([_from_diffs(first, d) for d in ([a, a, b, b, c], [b, b, a, a, c])]))
    valid = jnp.asarray([[True] * 5 + [False]] * 2)
    early, late = _apply(CFG, _params(CFG), hm, valid)
    # measured max abs err 6e-8 to 2.4e-7 here and below
    np.testing.assert_allclose(early, late, atol=1.2e-6)  # S=1: a mean over time
    e, lt = _apply(CFG2, _params(CFG2), hm, valid)
    seg0, seg1 = slice(3, 13), slice(13, 23)
    assert not np.allclose(e, lt, atol=1e-3)
    np.testing.assert_allclose(e[seg0], lt[seg1], atol=1.2e-6)  # segments swapped
    np.testing.assert_allclose(e[seg1], lt[seg0], atol=1.2e-6)


def test_uneven_segments():
    """5 differences in 3 segments: sizes 2, 2, 1 (rank r -> floor(3r/5))."""
    cfg3 = dataclasses.replace(CFG, time_segments=3)
    params, hm = _init(cfg3)
    out = _apply(cfg3, params, hm)
    for seg, (lo, hi) in enumerate([(0, 3), (2, 5), (4, 6)]):
        valid = jnp.asarray(np.broadcast_to((np.arange(6) >= lo) & (np.arange(6) < hi), (2, 6)))
        ref = _apply(CFG, params, hm, valid)[:, 3:]  # that segment's differences alone, S=1
        got = out[:, 3 + 10 * seg : 13 + 10 * seg]
        np.testing.assert_allclose(got, ref, atol=1e-6)  # measured 0 (f32 floor)


def test_differences_are_signed():
    params, hm = _init()
    fwd, rev = _apply(CFG, params, hm), _apply(CFG, params, hm[:, ::-1])
    np.testing.assert_allclose(fwd[:, :3], rev[:, :3])  # base prompts
    assert np.abs(fwd[:, 3:] - rev[:, 3:]).max() > 1e-4


def test_gradients_reach_every_param():
    params, hm = _init(CFG2)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(2, num_prompts(CFG2), 12)), jnp.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(RAE(CFG2).apply({"params": p}, hm) * w)))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0), path


@pytest.mark.parametrize(
    "channels, segments, level, pool, space",
    [
        ((4, 6), 1, False, "mean", "mean"),
        ((5,), 3, False, "mean", "mean"),
        ((), 1, False, "mean", "mean"),
        ((4, 6), 2, True, "mean", "mean"),
        ((), 1, True, "mean", "mean"),
        ((4, 6), 2, False, "mean_max", "mean"),
        ((4, 6), 2, True, "mean_max", "mean_max"),
        ((5,), 1, False, "mean", "mean_max"),
    ],
)
def test_added_params_equals_real_count(channels, segments, level, pool, space):
    cfg = RAEConfig(
        llm_width=12,
        channels=channels,
        num_base=2,
        grid=3,
        time_segments=segments,
        level=level,
        time_pool=pool,
        space_pool=space,
    )
    shapes = jax.eval_shape(RAE(cfg).init, jax.random.key(0), jnp.zeros((1, 3, 6, 6)))
    assert added_params(cfg) == sum(x.size for x in jax.tree_util.tree_leaves(shapes))


def test_level_channel_sees_an_anomaly_that_stays_still():
    """X[t] alone is zero for a heatmap lit the same in every frame, so the paper's RAE gives
    it the prompts of an empty heatmap; with ``level`` the lit region changes them, and only
    the region prompts that cover it, plus the global one."""
    still = np.zeros((1, 5, 6, 6), np.float32)
    still[:, :, 0:2, 0:2] = 0.9  # top-left, the same in every frame
    still, empty = jnp.asarray(still), jnp.zeros((1, 5, 6, 6), jnp.float32)
    np.testing.assert_array_equal(
        _apply(CFG, _params(CFG), still), _apply(CFG, _params(CFG), empty)
    )
    cfg = dataclasses.replace(CFG, level=True)
    params = _params(cfg)
    assert params["conv_0"]["kernel"].shape == (3, 3, 2, 4)
    a, b = _apply(cfg, params, still), _apply(cfg, params, empty)
    changed = np.abs(a - b).max(-1)[0] > 1e-6  # per prompt: base 0-2, regions 3-11, global 12
    assert not changed[:3].any()  # base prompts do not read the heatmap
    assert changed[3] and changed[12]  # the top-left region and the global prompt
    assert not changed[3 + 8]  # the bottom-right region: 3x3 convs reach 2 patches, not 4


def _conv_features(params, hm):
    """RAE's conv features of the differences ``[B, T-1, h, w, C]``, recomputed with lax."""
    b, t, h, w = hm.shape
    x = np.asarray(hm[:, 1:] - hm[:, :-1])[..., None]  # [B, T-1, h, w, 1]
    f = jnp.asarray(x.reshape(-1, h, w, 1))
    i = 0
    while f"conv_{i}" in params:
        k, bias = params[f"conv_{i}"]["kernel"], params[f"conv_{i}"]["bias"]
        conv = jax.lax.conv_general_dilated(
            f, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        f = jax.nn.gelu(conv + bias, approximate=False)
        i += 1
    return np.asarray(f).reshape(b, t - 1, h, w, -1)


def test_mean_max_pools_each_segment_over_its_valid_differences():
    """``time_pool="mean_max"``: per segment, the projections read the mean and the maximum
    of the conv features over that segment's valid differences; padding takes no part."""
    cfg = dataclasses.replace(CFG2, time_pool="mean_max")
    params, hm = _init(cfg, shape=(2, 7, 8, 8))
    assert params["region_proj"]["kernel"].shape == (12, 12)  # 2 x 6 channels
    valid = np.ones((2, 7), bool)
    valid[0, 5:] = False  # 4 valid differences: segments {0, 1}, {2, 3}
    valid[1, 3] = False  # differences 2 and 3 invalid: 4 valid ones, {0, 1}, {4, 5}
    out = _apply(cfg, params, hm, jnp.asarray(valid))
    # the reference: the conv features recomputed with lax, pooled and projected in numpy
    f = _conv_features(params, hm)  # [B, T-1, h, w, C]
    region = np.asarray(adaptive_avg_pool(jnp.asarray(f), 3)).reshape(2, 6, 9, 6)
    feats = np.concatenate([region, f.mean((2, 3))[:, :, None]], axis=2)  # [B, T-1, 10, C]
    segments = {0: [[0, 1], [2, 3]], 1: [[0, 1], [4, 5]]}
    for bi, segs in segments.items():
        for si, idx in enumerate(segs):
            pooled = np.concatenate([feats[bi, idx].mean(0), feats[bi, idx].max(0)], -1)
            want_region = pooled[:9] @ np.asarray(params["region_proj"]["kernel"]) + np.asarray(
                params["region_proj"]["bias"]
            )
            want_global = pooled[9:] @ np.asarray(params["global_proj"]["kernel"]) + np.asarray(
                params["global_proj"]["bias"]
            )
            got = out[bi, 3 + 10 * si : 13 + 10 * si]
            # measured max abs err 4.8e-7 to 9.5e-7
            np.testing.assert_allclose(got[:9], want_region, atol=3e-6)
            np.testing.assert_allclose(got[9:], want_global, atol=3e-6)
    with pytest.raises(ValueError, match="time_pool 'median'"):
        RAEConfig(llm_width=4, time_pool="median")


@pytest.mark.parametrize("size, out", [((8, 8), 3), ((7, 5), 3), ((6, 6), 2), ((4, 9), 4)])
def test_adaptive_max_pool_matches_torch(size, out):
    x = np.random.default_rng(3).normal(size=(2, *size, 5)).astype(np.float32)
    got = np.asarray(adaptive_max_pool(jnp.asarray(x), out))
    ref = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), out)
    np.testing.assert_array_equal(got, ref.permute(0, 2, 3, 1).numpy())  # a max: exact


def test_space_mean_max_reads_each_region_peak():
    """``space_pool="mean_max"``: each region's (and the frame's) features are its mean beside
    its maximum over the patches (PyTorch's bins), then pooled over time and projected."""
    cfg = dataclasses.replace(CFG, space_pool="mean_max")
    params, hm = _init(cfg, shape=(2, 5, 8, 8))
    assert params["region_proj"]["kernel"].shape == (12, 12)  # 2 x 6 channels
    out = _apply(cfg, params, hm)
    assert out.shape == (2, num_prompts(cfg), 12)
    # the reference: conv features recomputed with lax, pooled and projected in numpy
    f = _conv_features(params, hm)
    bins = [(0, 3), (2, 6), (5, 8)]  # PyTorch's bins of 8 -> 3
    region = np.stack(
        [
            np.concatenate(
                [f[:, :, r0:r1, c0:c1].mean((2, 3)), f[:, :, r0:r1, c0:c1].max((2, 3))], -1
            )
            for r0, r1 in bins
            for c0, c1 in bins
        ],
        axis=2,
    ).mean(1)  # [B, 9, 2C], then the segment's mean over its 4 differences
    glob = np.concatenate([f.mean((2, 3)), f.max((2, 3))], -1).mean(1)  # [B, 2C]
    kr, br = np.asarray(params["region_proj"]["kernel"]), np.asarray(params["region_proj"]["bias"])
    kg, bg = np.asarray(params["global_proj"]["kernel"]), np.asarray(params["global_proj"]["bias"])
    # measured max abs err 1.9e-6 (regions) and 4.8e-7 (global)
    np.testing.assert_allclose(out[:, 3:12], region @ kr + br, atol=3e-6)
    np.testing.assert_allclose(out[:, 12], glob @ kg + bg, atol=3e-6)
    with pytest.raises(ValueError, match="space_pool 'max'"):
        RAEConfig(llm_width=4, space_pool="max")
