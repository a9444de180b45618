"""configs/common.py: the scripts' ``--set key=value`` overrides."""

import os
import sys

import ml_collections
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "configs"))

from common import apply_overrides  # noqa: E402


def _config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {
            "seed": 0,
            "lr": 1e-3,
            "name": "tiny",
            "ahd": {"background": False, "taps": (1, 2, 4), "sigmas": (0.0, 0.5), "empty": ()},
        }
    )


def test_each_value_takes_the_type_of_the_field_it_replaces():
    c = _config()
    apply_overrides(c, ["seed=3", "lr=0.5", "name=paper", "ahd.background=True"])
    assert (c.seed, c.lr, c.name, c.ahd.background) == (3, 0.5, "paper", True)
    assert type(c.seed) is int and type(c.lr) is float
    apply_overrides(c, ["ahd.background=False"])
    assert c.ahd.background is False


def test_tuples_take_comma_lists_of_their_first_items_type():
    c = _config()
    apply_overrides(c, ["ahd.taps=1,2,3,4", "ahd.sigmas=0.25,1", "ahd.empty=5,6"])
    assert c.ahd.taps == (1, 2, 3, 4) and all(type(x) is int for x in c.ahd.taps)
    assert c.ahd.sigmas == (0.25, 1.0) and all(type(x) is float for x in c.ahd.sigmas)
    assert c.ahd.empty == (5, 6)  # an empty tuple's items are ints
    apply_overrides(c, ["ahd.taps="])
    assert c.ahd.taps == ()


def test_a_bad_value_or_key_raises():
    c = _config()
    with pytest.raises(ValueError):
        apply_overrides(c, ["ahd.taps=1,x"])
    with pytest.raises(ValueError):
        apply_overrides(c, ["seed=one"])
    with pytest.raises(KeyError):
        apply_overrides(c, ["ahd.missing=1"])
