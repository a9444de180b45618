"""SETS: distances vs numpy, selection vs argsort, known motion, resize, jit shapes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from vau_jax.models.heads.sets import (
    frame_distances,
    gather_tokens,
    keep_mask,
    num_keep,
    resize_grid,
    select_indices,
    sets_select,
)


def _np_distances(f):
    d = np.abs(f[:, 1:] - f[:, :-1]).sum(-1)  # [B, T-1, N]
    return np.concatenate([d[:, :1], d], axis=1)


class SetsTest(chex.TestCase):
    """The pure SETS functions against numpy, eagerly and under ``jax.jit`` (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_frame_distances_match_numpy(self):
        distances = self.variant(frame_distances)
        f = np.random.default_rng(0).normal(size=(2, 5, 9, 7)).astype(np.float32)
        d = distances(jnp.asarray(f))
        chex.assert_shape(d, (2, 5, 9))
        chex.assert_type(d, jnp.float32)
        d = np.asarray(d)
        # measured 0 (eager and jit, 3 seeds): an f32 floor, relative too (|d| reaches 15)
        np.testing.assert_allclose(d, _np_distances(f), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(d[:, 0], d[:, 1])  # frame 0 uses frame 1 as its reference
        one = distances(jnp.asarray(f[:, :1]))  # T == 1 -> zeros
        chex.assert_shape(one, (2, 1, 9))
        assert not np.asarray(one).any()

    @chex.variants(with_jit=True, without_jit=True)
    def test_select_indices_match_argsort_and_are_sorted(self):
        d = np.random.default_rng(1).uniform(size=(3, 4, 50)).astype(np.float32)  # no ties
        idx = self.variant(select_indices, static_argnums=1)(jnp.asarray(d), 17)
        chex.assert_shape(idx, (3, 4, 17))
        chex.assert_type(idx, jnp.int32)
        idx = np.asarray(idx)
        ref = np.sort(np.argsort(-d, axis=-1)[..., :17], axis=-1)
        np.testing.assert_array_equal(idx, ref)
        assert (np.diff(idx, axis=-1) > 0).all()

    @chex.variants(with_jit=True, without_jit=True)
    def test_known_motion_selects_moving_patches(self):
        b, t, n, c = 2, 4, 16, 8
        f = np.ones((b, t, n, c), np.float32)
        moving = {0: [3, 5, 10, 12], 1: [0, 1, 14, 15]}
        for bi, patches in moving.items():
            for ti in range(t):
                f[bi, ti, patches] += ti * np.arange(1, c + 1)  # changes every frame
        clip = np.random.default_rng(2).normal(size=(b, t, n, 6)).astype(np.float32)
        select = self.variant(sets_select, static_argnames="keep_ratio")
        sel, idx = select(jnp.asarray(f), jnp.asarray(clip), keep_ratio=0.25)
        chex.assert_shape(sel, (b, t, 4, 6))
        chex.assert_shape(idx, (b, t, 4))
        for bi, patches in moving.items():
            np.testing.assert_array_equal(np.asarray(idx[bi]), np.tile(patches, (t, 1)))
            np.testing.assert_array_equal(np.asarray(sel[bi]), clip[bi][:, patches])
        mask = np.asarray(keep_mask(idx, n))
        assert mask.shape == (b, t, n) and mask.sum(-1).tolist() == [[4] * t] * b
        assert mask[0, :, 3].all() and not mask[0, :, 4].any()

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("keep_50", 0.5), ("keep_30", 0.3), ("keep_7", 0.07), ("keep_all", 1.0)
    )
    def test_static_shapes_and_numpy_selection(self, ratio):
        b, t, n, d = 2, 3, 49, 12
        dino = jax.random.normal(jax.random.key(0), (b, t, 16, 5))  # 4x4 grid, resized to 7x7
        clip = jax.random.normal(jax.random.key(1), (b, t, n, d))
        select = self.variant(sets_select, static_argnames=("keep_ratio", "dino_hw", "clip_hw"))
        sel, idx = select(dino, clip, keep_ratio=ratio)
        k = max(1, round(ratio * n))
        chex.assert_shape(sel, (b, t, k, d))
        chex.assert_shape(idx, (b, t, k))
        chex.assert_tree_all_finite(sel)
        # numpy top-k of the (eager) resized distances, lower index first on ties, sorted
        dist = np.asarray(resize_grid(frame_distances(dino), (4, 4), (7, 7)))
        ref = np.sort(np.argsort(-dist, axis=-1, kind="stable")[..., :k], axis=-1)
        np.testing.assert_array_equal(np.asarray(idx), ref)
        want = np.take_along_axis(np.asarray(clip), ref[..., None], axis=2)
        np.testing.assert_array_equal(np.asarray(sel), want)


def test_ties_prefer_lower_index():
    d = jnp.asarray([[[0.0, 2.0, 1.0, 2.0, 2.0, 0.0]]])
    np.testing.assert_array_equal(np.asarray(select_indices(d, 2)), [[[1, 3]]])


def test_keep_all_returns_input_in_order():
    dino = jax.random.normal(jax.random.key(0), (1, 3, 9, 4))
    clip = jax.random.normal(jax.random.key(1), (1, 3, 9, 5))
    sel, idx = sets_select(dino, clip, 1.0)
    np.testing.assert_array_equal(np.asarray(sel), np.asarray(clip))
    np.testing.assert_array_equal(np.asarray(idx), np.broadcast_to(np.arange(9), (1, 3, 9)))


def test_resize_hot_patch_maps_to_block():
    d = np.zeros((1, 2, 16), np.float32)
    d[:, :, 1 * 4 + 2] = 1.0  # hot patch at (row 1, col 2) of a 4x4 grid
    up = resize_grid(jnp.asarray(d), (4, 4), (8, 8))
    assert up.shape == (1, 2, 64)
    top = np.asarray(select_indices(up, 4))
    block = sorted(r * 8 + c for r in (2, 3) for c in (4, 5))
    np.testing.assert_array_equal(top, np.broadcast_to(block, (1, 2, 4)))
    same = resize_grid(jnp.asarray(d), (4, 4), (4, 4))
    np.testing.assert_array_equal(np.asarray(same), d)
    down = resize_grid(up, (8, 8), (4, 4))  # antialiased shrink keeps the hot patch on top
    assert down.shape == (1, 2, 16) and np.asarray(down).argmax(-1).tolist() == [[6, 6]]
    wide = resize_grid(jnp.zeros((1, 1, 6)), (2, 3), (4, 6))  # non-square grids
    assert wide.shape == (1, 1, 24)


def test_sets_select_with_different_grids_follows_dino_motion():
    dino = np.zeros((1, 2, 16, 3), np.float32)
    dino[:, 1, 5] = 1.0  # patch (1, 1) of the 4x4 DINOv2 grid moves
    clip = jnp.arange(64 * 2, dtype=jnp.float32).reshape(1, 1, 64, 2).repeat(2, axis=1)
    _, idx = sets_select(jnp.asarray(dino), clip, 4 / 64)
    block = sorted(r * 8 + c for r in (2, 3) for c in (2, 3))
    np.testing.assert_array_equal(np.asarray(idx), np.broadcast_to(block, (1, 2, 4)))


def test_gather_tokens():
    tokens = jnp.arange(2 * 3 * 5 * 2).reshape(2, 3, 5, 2)
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 5, (2, 3, 4)), jnp.int32)
    out = np.asarray(gather_tokens(tokens, idx))
    ref = np.take_along_axis(np.asarray(tokens), np.asarray(idx)[..., None], axis=2)
    np.testing.assert_array_equal(out, ref)


def test_num_keep_and_bad_ratios():
    assert num_keep(576, 0.5) == 288 and num_keep(10, 0.01) == 1 and num_keep(7, 1.0) == 7
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="keep_ratio"):
            num_keep(16, bad)
    with pytest.raises(ValueError, match="keep_ratio"):
        sets_select(jnp.zeros((1, 2, 4, 3)), jnp.zeros((1, 2, 4, 3)), 0.0)


def test_non_square_grid_needs_explicit_hw():
    dino, clip = jnp.zeros((1, 2, 6, 3)), jnp.zeros((1, 2, 6, 4))
    with pytest.raises(ValueError, match="not a square grid"):
        sets_select(dino, clip, 0.5)
    sel, _ = sets_select(dino, clip, 0.5, dino_hw=(2, 3), clip_hw=(2, 3))
    assert sel.shape == (1, 2, 3, 4)


def test_vmaps_over_videos():
    dino = jax.random.normal(jax.random.key(0), (3, 1, 4, 9, 5))  # [V, B, T, N, C]
    clip = jax.random.normal(jax.random.key(1), (3, 1, 4, 9, 6))
    fn = jax.vmap(functools.partial(sets_select, keep_ratio=0.5))
    sel, idx = fn(dino, clip)
    assert sel.shape == (3, 1, 4, 4, 6) and idx.shape == (3, 1, 4, 4)
