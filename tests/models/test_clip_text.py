"""CLIP text tower and CLIPModel unit tests (pooling rule, causality, padding, logits)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax.convert.common import abstract_params
from vau_jax.models import clip_text


def _params(module, *args, seed=0):
    """Random params from the abstract shapes (no jitted init: XLA's RNG compile is slow)."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        base = 1.0 if getattr(path[-1], "key", None) == "scale" else 0.0
        return jnp.asarray(base + 0.05 * rng.standard_normal(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, abstract_params(module, *args))


CFG = clip_text.PRESETS["tiny-clip-text"]


def test_eos_positions_rule():
    ids = jnp.array([[5, 999, 1, 1], [7, 8, 999, 999], [3, 2, 9, 4]])
    # Current rule: first occurrence of eos (0 when absent).
    np.testing.assert_array_equal(clip_text.eos_positions(ids, 999), [1, 2, 0])
    # Legacy eos_token_id == 2: argmax of the ids.
    np.testing.assert_array_equal(clip_text.eos_positions(ids, 2), [1, 2, 2])


@pytest.fixture(scope="module")
def text_model():
    module = clip_text.module_from_config(CFG)
    ids = jnp.array([[998, 10, 11, 12, 999, 1, 1, 1]])
    params = _params(module, ids)
    return module, params


def test_causal_and_padding(text_model):
    module, params = text_model
    ids = jnp.array([[998, 10, 11, 12, 999, 1, 1, 1]])
    mask = jnp.array([[1, 1, 1, 1, 1, 0, 0, 0]])
    out = module.apply({"params": params}, ids, mask, output_hidden_states=True)
    chex.assert_shape(out["last_hidden_state"], (1, 8, CFG.hidden_size))
    assert len(out["hidden_states"]) == CFG.num_hidden_layers + 1
    np.testing.assert_array_equal(out["pooler_output"], out["last_hidden_state"][:, 4])
    # Changing a later token never changes earlier states (causal).
    ids2 = ids.at[0, 3].set(50)
    out2 = module.apply({"params": params}, ids2, mask)
    np.testing.assert_allclose(
        out2["last_hidden_state"][:, :3], out["last_hidden_state"][:, :3], atol=1e-6
    )
    assert not np.allclose(out2["last_hidden_state"][:, 3], out["last_hidden_state"][:, 3])
    # Padded tokens are invisible to the real ones.
    ids3 = ids.at[0, 6].set(77)
    out3 = module.apply({"params": params}, ids3, mask)
    np.testing.assert_allclose(out3["pooler_output"], out["pooler_output"], atol=1e-6)


def test_too_long_sequence_is_refused(text_model):
    module, params = text_model
    with pytest.raises(ValueError, match="max_position_embeddings"):
        module.apply({"params": params}, jnp.ones((1, CFG.max_position_embeddings + 1), jnp.int32))


@pytest.mark.slow
def test_clip_model_logits():
    cfg = clip_text.PRESETS["tiny-clip"]
    module = clip_text.module_from_config(cfg)
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(2, 900, size=(3, 8))).at[:, -1].set(999)
    pixels = jnp.asarray(rng.standard_normal((2, 64, 64, 3)), jnp.float32)
    params = _params(module, ids, pixels)
    out = module.apply({"params": params}, ids, pixels)
    chex.assert_shape(out["logits_per_image"], (2, 3))
    np.testing.assert_allclose(out["logits_per_text"], out["logits_per_image"].T)
    norms = np.linalg.norm(out["image_embeds"], axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=5e-7)  # measured 0 to 6.0e-8
    cos = np.asarray(out["image_embeds"]) @ np.asarray(out["text_embeds"]).T
    # absolute: a logit near 0 fails any rtol (1.2e-4 relative at 2e-8 absolute, seed 1);
    # measured max abs err 3.0e-8 to 8.9e-8 over 3 seeds (|logit| <= 0.2)
    np.testing.assert_allclose(
        out["logits_per_image"], cos * np.exp(params["logit_scale"]), atol=4e-7, rtol=0
    )
    img = module.apply({"params": params}, pixels, method=module.get_image_features)[
        "pooler_output"
    ]
    txt = module.apply({"params": params}, ids, method=module.get_text_features)["pooler_output"]
    np.testing.assert_allclose(
        img / np.linalg.norm(img, axis=-1, keepdims=True), out["image_embeds"], atol=3e-7
    )  # measured 0 to 6.0e-8
    np.testing.assert_allclose(txt, out["text_model_output"]["pooler_output"], atol=1e-6)
    assert set(params) == {
        "text_model",
        "vision_model",
        "visual_projection",
        "text_projection",
        "logit_scale",
    }


def test_configs_are_hashable_and_json():
    import json

    for cfg in clip_text.PRESETS.values():
        hash(cfg)
        fields = json.loads(json.dumps(dataclasses.asdict(cfg)))
        assert type(cfg)(**fields) == cfg  # nested sub-configs come back from plain dicts
