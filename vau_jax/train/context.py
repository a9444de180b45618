"""The contexts a jitted step is traced and run in.

:func:`activation_context` makes the models' activation constraints real. Models constrain
activations with logical names (``vau_jax.models.layers.constrain(x, ("batch", "length",
"embed"))`` = ``nn.with_logical_constraint``); that is a *no-op* unless, while the function is
traced, a mesh is set with ``jax.set_mesh`` (flax reads ``jax.sharding.get_abstract_mesh()``;
the deprecated ``with mesh:`` does not set it) and logical-axis rules are set with
``nn.logical_axis_rules``. Inside the context each constrained activation is laid out as the
rules say (``batch -> ("data", "fsdp")`` ...). Trace *and* call a jitted function inside the
same context: flax's rules are not part of jit's cache key. The trainer runs every step in it
(``Trainer.context()``); methods reuse it for their jitted evaluation code::

    with activation_context(mesh, rules):
        logits = jitted_apply(params, batch)

:func:`no_host_sync` forbids device->host transfers (``jax.transfer_guard_device_to_host``),
explicit ones included: the trainer runs its steps that neither log nor checkpoint in it, so a
stray ``float(loss)`` on such a step is an error on GPU/TPU instead of a silent stall. (On
XLA:CPU a device->host read is zero-copy and the guard does not fire; the tests emulate it.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
from flax import linen as nn

from vau_jax.sharding import Rules

#: The ``jax.transfer_guard_device_to_host`` level of :func:`no_host_sync`.
NO_SYNC_LEVEL = "disallow_explicit"


@contextlib.contextmanager
def activation_context(mesh: jax.sharding.Mesh, rules: Rules) -> Iterator[None]:
    """Sets ``mesh`` (``jax.set_mesh``) and the logical-axis ``rules`` for tracing and running."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(tuple(rules)):
        yield


def no_host_sync() -> contextlib.AbstractContextManager:
    """Disallows every device->host transfer (implicit and explicit) in this thread."""
    return jax.transfer_guard_device_to_host(NO_SYNC_LEVEL)
