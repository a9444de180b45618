"""Where batch-1 decoding's time goes: SmolLM2-135M's matrix-vector products alone.

    python bench/gemv.py [--repeats=9] [--layers=30]

One decoding step at batch 1 reads every weight once, so ``bench/models.py`` scores its
``decode1`` row against the read bandwidth (summing 1 GiB). This script times the step's
products without anything else, on the decoding layout ``models/llama_decode.py`` builds
(``[out, in]`` rows; q/k/v and gate/up fused: 960x576, 576x576, 3072x576 and 576x1536 per
block, then the tied 49152x576 head), each product's input depending on the previous
product's output, as in the step:

- ``chain``: the ``--layers`` blocks' four products, jitted as one function (JAX);
- ``head``: the tied head alone (JAX);
- ``torch chain``: the same chain through ``torch.nn.functional.linear`` (PyTorch,
  ``--threads`` threads), the reference's own one-row product;
- ``sum``: the best of JAX / PyTorch / numpy summing 1 GiB (``bench/models.py``), the
  limit ``decode1`` is scored against.

Printed per line: ms (best of ``--repeats``), GB/s of weights read, its fraction of ``sum``,
µs per product, and the CPU model. If the chain plus the head already take most of a
``decode1`` step, the step's distance to the bandwidth limit is the products' own, not the
other ops'.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import best, cpu_model, read_bandwidth  # noqa: E402

#: One SmolLM2-135M block's products on the decoding layout, ``(out, in)``.
BLOCK = ((960, 576), (576, 576), (3072, 576), (576, 1536))
#: The tied embedding / head, ``(vocabulary, width)``.
HEAD = (49152, 576)


def weights(shapes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Random float32 ``[out, in]`` matrices of ``shapes`` (scaled so a chain stays finite)."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s, np.float32) * 0.01) for s in shapes]


def jax_chain(mats: list[np.ndarray]) -> Callable[[], float]:
    """A jitted chain of one-row products over ``mats`` (each ``x[:, :in] @ W.T``, the next
    input shifted by the previous output, so no product can start early); returns a
    callable that runs it once and returns a float."""
    import jax
    import jax.numpy as jnp

    ws = [jax.device_put(w) for w in mats]
    width = max(w.shape[1] for w in mats)

    @jax.jit
    def run(ws, x):
        acc = jnp.zeros((), jnp.float32)
        for w in ws:
            y = jnp.einsum("bi,oi->bo", x[:, : w.shape[1]], w)
            acc = acc + y[0, 0]
            x = x + acc * 1e-9
        return acc

    x = jnp.ones((1, width), jnp.float32)
    return lambda: float(run(ws, x))


def torch_chain(mats: list[np.ndarray]) -> Callable[[], float]:
    """:func:`jax_chain` in PyTorch (``F.linear`` per product, no autograd)."""
    import torch
    import torch.nn.functional as F

    ws = [torch.from_numpy(w) for w in mats]
    width = max(w.shape[1] for w in mats)
    x0 = torch.ones(1, width)

    def run() -> float:
        with torch.no_grad():
            x, acc = x0, torch.zeros(())
            for w in ws:
                y = F.linear(x[:, : w.shape[1]], w)
                acc = acc + y[0, 0]
                x = x + acc * 1e-9
            return float(acc)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(cpu_model())
    chain = weights(list(BLOCK) * args.layers)
    head = weights([HEAD], seed=1)
    limit = read_bandwidth(args.repeats)
    print(f"sum of 1 GiB (best of JAX / PyTorch / numpy): {limit:.1f} GB/s")
    rows = (
        ("chain (JAX)", jax_chain(chain), chain),
        ("head (JAX)", jax_chain(head), head),
        ("chain (PyTorch)", torch_chain(chain), chain),
    )
    for label, fn, mats in rows:
        t = best(fn, args.repeats)
        nbytes = sum(w.nbytes for w in mats)
        rate = nbytes / t / 1e9
        print(
            f"{label}: {len(mats)} products, {nbytes / 1e6:.0f} MB, {t * 1e3:.2f} ms, "
            f"{rate:.1f} GB/s = {rate / limit:.1%} of the sum, {t / len(mats) * 1e6:.1f} us each"
        )


if __name__ == "__main__":
    main()
