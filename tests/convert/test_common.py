"""Checked assembly of converted params: errors name the key and both shapes."""

import jax
import numpy as np
import pytest

from vau_jax.convert.common import CheckpointMismatchError, assemble, flatten, unflatten


def _template():
    s = jax.ShapeDtypeStruct
    return {"enc": {"q_proj": {"kernel": s((4, 8), np.float32), "bias": s((8,), np.float32)}}}


def test_flatten_unflatten_roundtrip():
    tree = {"a": {"b": np.zeros(2), "c": {"d": np.ones(3)}}, "e": np.arange(4)}
    flat = flatten(tree)
    assert sorted(flat) == ["a/b", "a/c/d", "e"]
    back = unflatten(flat)
    assert jax.tree.all(jax.tree.map(np.array_equal, tree, back))


def test_assemble_ok():
    vals = {"enc/q_proj/kernel": np.ones((4, 8)), "enc/q_proj/bias": np.zeros(8)}
    out = assemble(_template(), vals, source="ckpt")
    assert out["enc"]["q_proj"]["kernel"].shape == (4, 8)


def test_assemble_wrong_shape_names_key_and_shapes():
    vals = {"enc/q_proj/kernel": np.ones((4, 7)), "enc/q_proj/bias": np.zeros(8)}
    with pytest.raises(CheckpointMismatchError) as e:
        assemble(_template(), vals, source="my_ckpt")
    msg = str(e.value)
    assert "my_ckpt" in msg and "enc/q_proj/kernel" in msg
    assert "(4, 8)" in msg and "(4, 7)" in msg


def test_assemble_missing_and_unexpected_keys():
    vals = {"enc/q_proj/kernel": np.ones((4, 8)), "enc/extra": np.zeros(3)}
    with pytest.raises(CheckpointMismatchError) as e:
        assemble(_template(), vals)
    msg = str(e.value)
    assert "missing key 'enc/q_proj/bias'" in msg and "(8,)" in msg
    assert "unexpected key 'enc/extra'" in msg
