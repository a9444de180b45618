"""vau_jax.tree: the neutral tree helpers (and the re-exports convert/ keeps)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vau_jax import tree


def test_flatten_unflatten_round_trip():
    nested = {"img": {"fc": {"kernel": 1, "bias": 2}}, "head": {"kernel": 3}}
    flat = tree.flatten(nested)
    assert flat == {"img/fc/kernel": 1, "img/fc/bias": 2, "head/kernel": 3}
    assert tree.unflatten(flat) == nested
    assert tree.flatten(nested, sep=".")["img.fc.bias"] == 2
    assert tree.unflatten({"a.b": 1}, sep=".") == {"a": {"b": 1}}


def _paths(t):
    return [tree.path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(t)[0]]


def test_path_str_names_every_key_kind():
    assert _paths({"llm": [{"w": 1}]}) == ["llm/0/w"]  # DictKey, SequenceKey
    state = optax.adam(1e-3).init({"enc": {"kernel": jnp.zeros(2)}})  # GetAttrKey too
    assert "0/mu/enc/kernel" in _paths(state)


def test_to_numpy_tree_copies_to_host():
    out = tree.to_numpy_tree({"a": jnp.arange(3), "b": [jnp.ones(2)]})
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], np.ndarray)
    np.testing.assert_array_equal(out["a"], [0, 1, 2])


def test_mismatch_error_is_a_value_error_and_shared_with_convert():
    from vau_jax.convert import common

    assert issubclass(tree.CheckpointMismatchError, ValueError)
    assert common.CheckpointMismatchError is tree.CheckpointMismatchError
    assert common.flatten is tree.flatten and common.unflatten is tree.unflatten
    with pytest.raises(ValueError):
        raise tree.CheckpointMismatchError("x")
