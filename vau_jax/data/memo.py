"""A memo of per-video arrays bounded in bytes, for grain sources that read videos at random.

Training pipelines draw examples in a shuffled order across all videos, so a source that
decodes a video's features per example reads each video many times per epoch. Keeping the
decoded (and standardised) arrays makes the reads once per video while they fit; past the
budget the oldest entries go first, so memory stays bounded on real datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


class ByteBudgetMemo:
    """``memo(key, make)``: ``make()``'s result for ``key``, computed once and kept while the
    kept values total at most ``budget`` bytes (oldest dropped first; a value larger than the
    whole budget is kept alone until the next one). Values are numpy arrays or tuples/dicts of
    them (their ``nbytes`` summed), made read-only: every caller shares them. Pickles empty
    (grain worker processes refill their own).

    Args:
      budget: the most bytes kept (default 1 GiB).
    """

    def __init__(self, budget: int = 1 << 30):
        self.budget = int(budget)
        self._values: dict[Hashable, Any] = {}
        self._sizes: dict[Hashable, int] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def __call__(self, key: Hashable, make: Callable[[], Any]) -> Any:
        if key in self._values:
            return self._values[key]
        value = make()
        _freeze(value)
        size = _nbytes(value)
        while self._values and self.nbytes + size > self.budget:
            old = next(iter(self._values))
            del self._values[old]
            self.nbytes -= self._sizes.pop(old)
        self._values[key], self._sizes[key] = value, size
        self.nbytes += size
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"budget": self.budget, "_values": {}, "_sizes": {}, "nbytes": 0}


def _nbytes(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return int(np.asarray(value).nbytes)


def _freeze(value: Any) -> None:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            _freeze(v)
    elif isinstance(value, np.ndarray):
        value.setflags(write=False)
