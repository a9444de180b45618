"""The compile counter the evaluation tests rely on sees a compilation, and only then."""

import jax
import jax.numpy as jnp

from tests.compiles import xla_compiles


def test_counts_fresh_compiles_and_not_cached_calls():
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    x, y = jnp.arange(5.0), jnp.arange(6.0)  # made outside the counted blocks
    with xla_compiles() as first:
        f(x).block_until_ready()
    with xla_compiles() as again:
        f(x).block_until_ready()
    with xla_compiles() as new_shape:
        f(y).block_until_ready()
    assert len(first) == 1 and first[0] > 0
    assert again == []
    assert len(new_shape) == 1
