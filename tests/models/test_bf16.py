"""bf16 compute against float32: the parity tolerances of every shipped model family.

Each model is built twice from the same config, ``dtype="float32"`` and ``dtype="bfloat16"``
(``param_dtype`` float32 in both: one float32 parameter tree, drawn once), and run on the same
inputs. The error measure is the relative RMS error ``||bf16 - f32|| / ||f32||`` over a whole
output (every element, in float64); for the training gradients the same over the flattened
tree, plus the cosine distance ``1 - cos`` and the loss's relative error.

Every bound is set from the error measured on this file's inputs (XLA:CPU, jax 0.10.2, tiny
presets, random weights like the models' init; the measured value is beside each bound). The
relative RMS errors are checked against a band ``[lo, hi]``:

* ``hi`` is 1.7-2.3x the measured error. It catches a coarser number format on the bf16 path
  (a float8 cast of the MLP activations: DINOv2's pooled output 1.5e-2, the gradients'
  ``1 - cos`` 1.7e-2 against a bound of 1e-4), not one more bf16 rounding: norm statistics in
  bf16 raise the errors by 5-35%, a bf16 softmax by ~0% (near-uniform attention at this init);
* ``lo`` is 0.3-0.45x the measured error and 2.4-3.1x above what float16 compute gives
  (10 mantissa bits against bf16's 7: 6.5e-4 to 1.3e-3 here; float32 gives 0): a model that
  ignores ``dtype`` or computes in another dtype fails it (checked with float16 in place of
  bfloat16: all six tests fail).

bf16 keeps 8 significant bits (unit roundoff 2^-9 = 2e-3), so a relative RMS error of 4-10e-3
after a few residual blocks is what correct bf16 compute with float32 softmax, norm statistics
and matmul accumulation gives. Encoder outputs stay bf16; the LLM's logits are cast to f32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vau_jax.models import llama, qformer, vit

# (lo, hi) on the relative RMS error; the measured value is in the comment.
VIT_BAND = {
    # tiny-clip-vit (4 layers), B=2 64x64: last_hidden_state 5.9e-3, pooler_output 7.1e-3
    "tiny-clip-vit": (2e-3, 1.2e-2),
    # tiny-dinov2 (2 layers), B=2 56x56: last_hidden_state 4.9e-3, pooler_output 5.1e-3
    "tiny-dinov2": (2e-3, 1.0e-2),
}
QFORMER_BAND = (2e-3, 1.0e-2)  # tiny-qformer, 6 image + 5 text tokens: 4.4e-3
# tiny-llama, B=2: logits of a 15-token forward 8.1e-3, of 8 cached decoding steps 8.3e-3
LOGITS_BAND = (3e-3, 1.5e-2)
# tiny-llama training: gradient tree 1.05e-2 (float16: 1.3e-3), 1 - cos of the flattened
# gradients 4.4e-5, |loss_bf16 - loss_f32| / loss_f32 7.2e-5 (4.5e-5 to 1.4e-4 over 6 seeds)
GRAD_BAND = (3e-3, 2.0e-2)
GRAD_MAX_COS_DIST = 1e-4
LOSS_MAX_REL = 2e-4


def _rel_rms(a: Any, b: Any) -> float:
    """``||a - b|| / ||b||`` over every element (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _check_band(name: str, err: float, band: tuple[float, float]) -> None:
    """``lo <= err <= hi``, the failure naming the output and which side was crossed."""
    lo, hi = band
    assert err <= hi, f"{name}: bf16 vs float32 relative RMS error {err:.2e} > {hi:.0e}"
    assert err >= lo, (
        f"{name}: bf16 vs float32 relative RMS error {err:.2e} < {lo:.0e}: "
        "the bf16 model does not seem to compute in bf16"
    )


def _flat(tree: Any) -> np.ndarray:
    """Every leaf of ``tree`` raveled into one float64 vector."""
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _host_params(shapes: Any, seed: int = 0) -> Any:
    """float32 parameters for a tree of shapes, drawn with numpy (compiling ``module.init``
    costs more than the whole comparison) like the models' own init: norm ``scale`` and
    DINOv2's ``lambda1`` ``1 + N(0, 0.1)``, every other leaf (biases too) ``N(0, 0.02)``."""
    rng = np.random.default_rng(seed)

    def draw(path: tuple, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        x = rng.normal(size=leaf.shape).astype(np.float32)
        return 1.0 + 0.1 * x if path[-1].key in ("scale", "lambda1") else 0.02 * x

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _pair(
    cfg: Any, build: Callable[[Any], nn.Module], *init_args: Any, **init_kwargs: Any
) -> tuple[nn.Module, nn.Module, Any]:
    """``(f32 module, bf16 module, float32 params)`` of ``cfg``, one parameter tree: the
    bf16-compute module still declares float32 parameters (the master copy), the same tree."""
    m32 = build(dataclasses.replace(cfg, dtype="float32"))
    m16 = build(dataclasses.replace(cfg, dtype="bfloat16"))
    key = jax.random.key(0)
    shapes32, shapes16 = (
        nn.unbox(jax.eval_shape(m.init, key, *init_args, **init_kwargs)["params"])
        for m in (m32, m16)
    )
    assert jax.tree.structure(shapes16) == jax.tree.structure(shapes32)
    assert {str(x.dtype) for x in jax.tree.leaves(shapes16)} == {"float32"}
    return m32, m16, _host_params(shapes32)


@pytest.mark.parametrize("preset", sorted(VIT_BAND))
def test_vit_bf16_matches_float32(preset: str) -> None:
    """CLIP and DINOv2 towers: token states and pooled output, both kept in bf16."""
    cfg = vit.PRESETS[preset]
    m32, m16, params = _pair(cfg, vit.module_from_config, *vit.dummy_inputs(cfg)[0])
    size = cfg.image_size
    px = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    fwd = jax.jit(lambda m, p, x: m.apply({"params": p}, x), static_argnums=0)
    ref, out = fwd(m32, params, px), fwd(m16, params, px)
    for key in ("last_hidden_state", "pooler_output"):
        assert out[key].dtype == jnp.bfloat16, (key, out[key].dtype)
        _check_band(f"{preset} {key}", _rel_rms(out[key], ref[key]), VIT_BAND[preset])


def test_qformer_bf16_matches_float32() -> None:
    """Q-Former with text input: the query and text states, kept in bf16."""
    cfg = qformer.PRESETS["tiny-qformer"]
    args, kwargs = qformer.dummy_inputs(cfg)
    m32, m16, params = _pair(cfg, qformer.module_from_config, *args, **kwargs)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 6, cfg.encoder_hidden_size)).astype(np.float32)  # [B, M, De]
    ids = rng.integers(1, cfg.vocab_size, size=(2, 5)).astype(np.int32)  # [B, T]
    fwd = jax.jit(
        lambda m, p, im, i: m.apply({"params": p}, im, input_ids=i)["last_hidden_state"],
        static_argnums=0,
    )
    ref, out = fwd(m32, params, image, ids), fwd(m16, params, image, ids)
    assert out.dtype == jnp.bfloat16
    _check_band("tiny-qformer last_hidden_state", _rel_rms(out, ref), QFORMER_BAND)


LLAMA = llama.PRESETS["tiny-llama"]


def _loss(
    params: Any, module: llama.LlamaForCausalLM, ids: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Mean next-token cross-entropy of ``ids [B, N]``, and the logits ``[B, N-1, V]``."""
    logits = module.apply({"params": params}, ids[:, :-1])["logits"]
    logp = jax.nn.log_softmax(logits, -1)
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1)), logits


_loss_and_grad = jax.jit(jax.value_and_grad(_loss, has_aux=True), static_argnums=1)
_step = jax.jit(llama.decode_step, static_argnums=0)


@pytest.fixture(scope="module")
def llama_pair() -> tuple[llama.LlamaForCausalLM, llama.LlamaForCausalLM, Any, np.ndarray]:
    """tiny-llama in float32 and bf16 compute, float32 params, ``ids [2, 16]``."""
    ids = np.random.default_rng(0).integers(3, LLAMA.vocab_size, size=(2, 16)).astype(np.int32)
    return (*_pair(LLAMA, llama.LlamaForCausalLM, jnp.zeros((1, 8), jnp.int32)), ids)


@pytest.fixture(scope="module")
def llama_train(llama_pair: tuple) -> dict[str, Any]:
    """``{dtype: ((loss, logits), grads)}``: one compile per dtype serves the forward-logits
    and the training checks."""
    m32, m16, params, ids = llama_pair
    return {
        "float32": _loss_and_grad(params, m32, ids),
        "bfloat16": _loss_and_grad(params, m16, ids),
    }


def test_llama_bf16_logits_match_float32(llama_train: dict[str, Any]) -> None:
    """Full (training-mode) forward: next-token logits at every position."""
    ref, out = llama_train["float32"][0][1], llama_train["bfloat16"][0][1]
    assert out.dtype == jnp.float32  # the LM head's output is cast to f32
    _check_band("tiny-llama logits", _rel_rms(out, ref), LOGITS_BAND)


def _decoded_logits(
    module: llama.LlamaForCausalLM, params: Any, ids: np.ndarray
) -> tuple[jax.Array, llama.Cache]:
    """``ids [B, T]`` fed one token at a time through the KV cache (teacher-forced)
    -> next-token logits ``[B, T, V]`` and the final cache."""
    cache = llama.init_cache(module.config, ids.shape[0], ids.shape[1])
    out = []
    for t in range(ids.shape[1]):
        logits, cache = _step(module, params, ids[:, t], cache)
        out.append(logits)
    return jnp.stack(out, axis=1), cache


@pytest.mark.slow
def test_llama_bf16_cached_decoding_matches_float32(llama_pair: tuple) -> None:
    """Cached decoding (each token written to the cache, attending every slot): the path the
    full forward above does not take. Teacher-forced: random weights give near-flat logits,
    so free greedy tokens would part on a near-tie."""
    m32, m16, params, ids = llama_pair
    ref, _ = _decoded_logits(m32, params, ids[:, :8])
    out, cache = _decoded_logits(m16, params, ids[:, :8])
    assert cache["k"].dtype == jnp.bfloat16  # the KV cache follows the compute dtype
    _check_band("tiny-llama cached decoding logits", _rel_rms(out, ref), LOGITS_BAND)


def test_llama_bf16_training_loss_and_gradients_match_float32(llama_train: dict[str, Any]) -> None:
    """One training step's loss and float32 parameter gradients under bf16 compute."""
    (loss32, _), g32 = llama_train["float32"]
    (loss16, _), g16 = llama_train["bfloat16"]
    assert {str(x.dtype) for x in jax.tree.leaves(g16)} == {"float32"}  # grads of f32 params
    rel = abs(float(loss16) - float(loss32)) / abs(float(loss32))
    assert rel <= LOSS_MAX_REL, f"loss: relative error {rel:.2e} > {LOSS_MAX_REL:.0e}"
    a, b = _flat(g16), _flat(g32)
    cos_dist = 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos_dist <= GRAD_MAX_COS_DIST, f"gradients: 1 - cos {cos_dist:.2e}"
    _check_band("tiny-llama gradients", _rel_rms(a, b), GRAD_BAND)
