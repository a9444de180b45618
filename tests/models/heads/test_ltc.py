"""LTC lists against a reference written from the paper; past clips only; streaming == full."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import linen as nn

from vau_jax.models.heads.ltc import (
    LTC,
    AnomalyPredictor,
    LTCConfig,
    anomaly_scores,
    init_state,
    scan_lists,
)


def _reference(x, s, valid, k, mode):
    """The LTC lists and their reads, written from the paper's text (not from ltc.py).

    VAD-LLaMA (Lv & Sun), the sentences followed:

    - §3.1: "we collect the clip-level VE features with K lowest (highest) anomaly scores and
      stack them into a normal (abnormal) list."
    - §3.1: "These two lists are online updated and every new clip will be immediately
      evaluated based on its anomaly score to update the lists (or not)."
    - §1: "Given the “raw” features of the next clip, we integrate the current lists of
      normal and abnormal features by cross-attention and weighted-sum operations".
    - §3.2, Eq. (2): "(x_i × X^T) × X, X ∈ {N, A}" ... "the i-th VE feature is first
      multiplied with the LTC-listed features to generate attention weights, then the
      relative features are retrieved with these weights".
    - §3.2: "we add a list for storing the past K VE features, represented as H".
    - DESIGN §5: "Past clips only: clip i retrieves from lists built from clips < i, then is
      inserted."

    So clip ``i`` reads lists made of the valid clips ``j < i``: ``N`` the K lowest scores,
    ``A`` the K highest, ``H`` the K most recent; a list with nothing in it reads zeros (our
    decision, documented in ltc.py). The normalised reads are this library's options, not
    the paper's: ``softmax`` weights ``softmax_j(x_i·X_j/√D)``, ``cosine`` the mean over the
    list of ``cos(x_i, X_j) X_j``.

    Args: ``x`` [N, D], ``s`` [N], ``valid`` [N] bool, list length ``k``, read ``mode``.
    Returns: ``{"n", "a", "h": [N, D], "past": [N] bool}``.
    """
    n, d = x.shape
    out = {name: np.zeros((n, d)) for name in ("n", "a", "h")}
    out["past"] = np.zeros(n, bool)
    for i in range(n):
        past = [j for j in range(i) if valid[j]]  # the clips seen before clip i
        by_score = sorted(past, key=lambda j: s[j])
        lists = {"n": by_score[:k], "a": by_score[::-1][:k], "h": past[-k:]}
        out["past"][i] = bool(past)
        for name, idx in lists.items():
            if not idx:
                continue  # empty list: zeros
            items = x[idx]  # [L, D]
            dots = items @ x[i]  # attention weights of Eq. (2)
            if mode == "dot":
                w = dots
            elif mode == "softmax":
                z = dots / np.sqrt(d)
                w = np.exp(z - z.max())
                w = w / w.sum()
            else:
                cos = dots / (np.linalg.norm(items, axis=-1) * np.linalg.norm(x[i]) + 1e-6)
                w = cos / len(idx)
            out[name][i] = w @ items
    return out


def test_first_clip_reads_empty_lists():
    x = jax.random.normal(jax.random.key(0), (1, 3, 4))
    for mode in ("dot", "softmax", "cosine"):
        ctx, _ = scan_lists(
            x, jnp.zeros((1, 3)), jnp.ones((1, 3), bool), init_state(1, 2, 4), LTCConfig(4, 2)
        )
        for r in (ctx.normal, ctx.abnormal, ctx.history):
            np.testing.assert_array_equal(np.asarray(r[0, 0]), np.zeros(4))
        assert ctx.has_past.tolist() == [[False, True, True]], mode


@pytest.mark.parametrize("mode", ["dot", "softmax", "cosine"])
def test_empty_lists_give_finite_gradients(mode):
    m = LTC(LTCConfig(dim=4, k=2, retrieval=mode))
    x = jax.random.normal(jax.random.key(0), (1, 3, 4))
    mask = jnp.array([[False, True, True]])  # all-empty lists at clips 0 and 1
    params = m.init(jax.random.key(1), x, jnp.zeros((1, 3)), mask)["params"]
    g = jax.grad(lambda x: m.apply({"params": params}, x, jnp.zeros((1, 3)), mask)[0].sum())(x)
    assert bool(jnp.all(jnp.isfinite(g)))


def _module_and_params(k=4):
    cfg = LTCConfig(dim=8, k=k)
    m = LTC(cfg)
    x = jax.random.normal(jax.random.key(0), (2, 12, 8))
    s = jax.random.uniform(jax.random.key(1), (2, 12))
    mask = jnp.ones((2, 12), bool)
    params = m.init(jax.random.key(2), x, s, mask)["params"]
    # non-zero soft weights so the context actually changes the output
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)
    return m, params, x, s, mask


class LTCTest(chex.TestCase):
    """The lists against the paper reference and streaming == full, eagerly and under
    ``jax.jit`` (chex variants)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("dot", "dot"), ("softmax", "softmax"), ("cosine", "cosine"))
    def test_lists_match_the_paper_reference(self, mode):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 11, 6)).astype(np.float32)
        s = rng.uniform(size=(2, 11)).astype(np.float32)
        valid = np.ones((2, 11), bool)
        valid[1, [0, 4, 5, 9, 10]] = False  # padding anywhere: never inserted
        cfg = LTCConfig(dim=6, k=3, retrieval=mode)
        scan = self.variant(scan_lists, static_argnums=4)
        ctx, state = scan(
            jnp.asarray(x), jnp.asarray(s), jnp.asarray(valid), init_state(2, 3, 6), cfg
        )
        chex.assert_shape([ctx.normal, ctx.abnormal, ctx.history], (2, 11, 6))
        chex.assert_shape(ctx.has_past, (2, 11))
        chex.assert_tree_all_finite(ctx)
        chex.assert_shape([state.normal, state.abnormal, state.history], (2, 3, 6))
        for b in range(2):
            ref = _reference(x[b], s[b], valid[b], 3, mode)
            v = valid[b]  # padding clips' reads are not used
            # |read| <= 14 (1 ulp = 9.5e-7); measured max abs err 9.5e-7 to 1.4e-6
            for got, name in ((ctx.normal, "n"), (ctx.abnormal, "a"), (ctx.history, "h")):
                np.testing.assert_allclose(
                    np.asarray(got[b])[v], ref[name][v], atol=7e-6, rtol=0, err_msg=name
                )
            np.testing.assert_array_equal(np.asarray(ctx.has_past[b])[v], ref["past"][v])

    @chex.variants(with_jit=True, without_jit=True)
    def test_causal_and_streaming_equals_full(self):
        m, params, x, s, mask = _module_and_params()
        apply = self.variant(lambda p, *a: m.apply({"params": p}, *a))
        full, _ = apply(params, x, s, mask)
        chex.assert_shape(full, (2, 12, 8))
        chex.assert_tree_all_finite(full)
        x2 = x.at[:, 8:].set(100.0)
        s2 = s.at[:, 8:].set(0.5)
        changed, _ = apply(params, x2, s2, mask)
        # bit-exact: clips < 8 never see the changed ones (measured 0, eager and jit)
        np.testing.assert_array_equal(np.asarray(changed[:, :8]), np.asarray(full[:, :8]))
        assert not np.allclose(np.asarray(changed[:, 8:]), np.asarray(full[:, 8:]))
        # x̃_0 = x_0: the first clip has no past, so no context term (not W(0)).
        np.testing.assert_array_equal(np.asarray(full[:, 0]), np.asarray(x[:, 0]))
        assert not np.allclose(np.asarray(full[:, 1:]), np.asarray(x[:, 1:]))
        state = None
        outs = []
        for c in range(0, 12, 5):  # chunks of 5, 5, 2
            y, state = apply(params, x[:, c : c + 5], s[:, c : c + 5], mask[:, c : c + 5], state)
            outs.append(y)
        # |y| <= 14; measured max abs err 9.5e-7 (1 ulp there)
        np.testing.assert_allclose(
            np.asarray(jnp.concatenate(outs, 1)), np.asarray(full), atol=5e-6, rtol=0
        )
        chex.assert_shape(state.normal, (2, 4, 8))  # fixed-size carry, whatever the video length


def test_past_clips_only_a_clip_never_reads_itself():
    """Clip i's own score decides only where it is inserted: it moves clips > i, never i."""
    m, params, x, s, mask = _module_and_params()
    full, _ = m.apply({"params": params}, x, s, mask)
    for i in (0, 5, 11):
        for new in (0.0, 1.0):  # clip i enters the normal list, or the abnormal one
            moved, _ = m.apply({"params": params}, x, s.at[:, i].set(new), mask)
            np.testing.assert_array_equal(
                np.asarray(moved[:, : i + 1]), np.asarray(full[:, : i + 1])
            )
    moved, _ = m.apply({"params": params}, x, s.at[:, 5].set(-1.0), mask)  # lowest ever
    assert not np.allclose(np.asarray(moved[:, 6:]), np.asarray(full[:, 6:]))


def test_padding_clips_do_not_update_lists():
    m, params, x, s, mask = _module_and_params()
    mask = mask.at[:, 6:].set(False)
    _, st_masked = m.apply({"params": params}, x, s, mask)
    _, st_short = m.apply({"params": params}, x[:, :6], s[:, :6], mask[:, :6])
    jax.tree.map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        st_masked,
        st_short,
    )


def test_baseline_and_zero_init_identity():
    x = jax.random.normal(jax.random.key(0), (1, 5, 8))
    s, mask = jnp.zeros((1, 5)), jnp.ones((1, 5), bool)
    base = LTC(LTCConfig(dim=8, k=0))
    y, _ = base.apply(base.init(jax.random.key(0), x, s, mask), x, s, mask)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
    m = LTC(LTCConfig(dim=8, k=2))
    y, _ = m.apply(m.init(jax.random.key(0), x, s, mask), x, s, mask)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))  # W_* start at zero output


def test_anomaly_predictor_scores():
    ap = AnomalyPredictor()
    x = jax.random.normal(jax.random.key(0), (3, 7, 16))
    params = nn.unbox(ap.init(jax.random.key(1), x)["params"])
    assert params["fc1"]["kernel"].shape == (16, 64) and params["fc2"]["kernel"].shape == (64, 2)
    p = anomaly_scores(ap.apply({"params": params}, x))
    assert p.shape == (3, 7) and bool(jnp.all((p > 0) & (p < 1)))
