"""ByteBudgetMemo: computed once per key, bounded in bytes, oldest out first, read-only."""

import pickle

import numpy as np
import pytest

from vau_jax.data.memo import ByteBudgetMemo


def test_memo_computes_once_and_drops_the_oldest_past_its_budget():
    made = []

    def make(k: int, n: int = 10):
        made.append(k)
        return np.full(n, k, np.float32)  # 4n bytes

    memo = ByteBudgetMemo(budget=100)
    for k in (0, 1, 0, 1):
        np.testing.assert_array_equal(memo(k, lambda k=k: make(k)), np.full(10, k))
    assert made == [0, 1] and memo.nbytes == 80
    memo(2, lambda: make(2))  # 120 bytes would pass the budget: 0 goes first
    assert 0 not in memo and 1 in memo and 2 in memo and memo.nbytes == 80
    memo(0, lambda: make(0))
    assert made == [0, 1, 2, 0] and 1 not in memo
    big = memo(9, lambda: make(9, 50))  # larger than the whole budget: kept alone
    assert big.shape == (50,) and len(memo) == 1 and memo.nbytes == 200


def test_memo_values_are_read_only_and_pickle_empty():
    memo = ByteBudgetMemo()
    pair = memo("k", lambda: {"a": np.zeros(3), "b": (np.ones(2), np.ones(1))})
    with pytest.raises(ValueError):
        pair["a"][0] = 1.0
    with pytest.raises(ValueError):
        pair["b"][0][0] = 1.0
    assert memo.nbytes == 3 * 8 + 2 * 8 + 8
    clone = pickle.loads(pickle.dumps(memo))
    assert len(clone) == 0 and clone.nbytes == 0 and clone.budget == memo.budget
