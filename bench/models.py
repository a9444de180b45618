"""Model speed: every shipped model vs its HF PyTorch reference, same weights, same inputs, one run.

    python bench/models.py [--rows=clip,dinov2,...] [--repeats=5] [--threads=2] [--dtype=float32] \
        [--torch_dtype=float32]

Rows (ours in float32 unless ``--dtype``; PyTorch gets ``--threads`` threads, XLA uses the
machine's cores, 2 here):

  clip         CLIP ViT-B/16 vision tower forward, batch 8, 224x224
  dinov2       DINOv2-B/14 forward at a non-square 224x336 (16x24 patches, interpolated
               position table), batch 4
  qformer      InstructBLIP Q-Former (BLIP-2 size: 12 layers, 768 wide, 32 queries) over
               8 frames of 257 EVA-g tokens (1408 wide) with a 32-token instruction
  prefill128 / prefill256 / prefill1024
               SmolLM2-135M-shaped LLaMA, prompt prefill alone into a fresh KV cache, next-
               token logits out (HF: ``model(ids, use_cache=True, logits_to_keep=1)``)
  decode1 / decode8
               64 greedy decode steps with the KV cache after a 32-token prompt, batch 1 / 8
               (ours: the step ``generate`` runs given ``decode_weights``, in one jitted
               ``fori_loop``: at batch 1 ``llama_decode.decode_step`` on the decoding layout
               ``llama_decode.prepare`` makes once, at batch 8 ``llama.decode_step`` on the
               model's own layout; HF: the same loop in Python over ``DynamicCache``, which
               is what ``generate`` runs, minus its bookkeeping). Decode rows also print the
               fraction of the memory-bandwidth limit (parameter bytes read per step / the
               read bandwidth measured in this run), the seconds ``prepare`` took
               (``prepare_s``, untimed in the row) and the step time on the other layout in
               the same run (``ms_per_step_model_layout`` / ``_decoding_layout``).

Every row prints best-of-``repeats`` seconds for each side (the two sides timed alternately,
so that a background burst on a shared machine slows both), the ratio PyTorch / ours
(>= 1: ours is as fast or faster), our GFLOP/s (FLOPs from XLA's cost analysis) as a fraction
of the float32 matmul peak measured in the same run, and a correctness check (max abs
difference, or equal greedy tokens). The CPU model (``lscpu``) heads the output.
Weights are random (HF init, converted with our converters): speed does not depend on them.

``--dtype=bfloat16`` runs our side in bf16 compute (the config's ``dtype``; parameters stay
float32, as the paper presets' mixed precision) and prints the bf16 matmul rate of both
libraries under the float32 peak. PyTorch stays float32: it is the reference of the check
column, which then shows the bf16 error (greedy decode tokens may part from float32 ones on a
near-tie), and the "ours s" columns of a float32 and a bfloat16 run give our bf16 / f32 speed.
"of peak" stays relative to the float32 peak. ``--torch_dtype=bfloat16`` (with
``--dtype=bfloat16``; the vision rows ``clip`` and ``dinov2`` only) runs PyTorch in bf16 too,
its model and pixels cast to bf16: a like-for-like bf16 comparison, the check column then
against PyTorch's bf16.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

#: Our compute dtype (``--dtype``): ``float32`` or ``bfloat16``; parameters stay float32.
DTYPE = "float32"
#: PyTorch's dtype in the vision rows (``--torch_dtype``): ``float32`` or ``bfloat16``.
TORCH_DTYPE = "float32"

ROWS = (
    "clip",
    "dinov2",
    "qformer",
    "prefill128",
    "prefill256",
    "prefill1024",
    "decode1",
    "decode8",
)


def cpu_model() -> str:
    """``lscpu``'s model name and core count (the CPU every number here belongs to)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = info.get("Model name", "unknown CPU").strip()
    flags = info.get("Flags", "")
    isa = (
        "AMX"
        if "amx" in flags
        else "AVX-512"
        if "avx512f" in flags
        else "AVX2"
        if "avx2" in flags
        else "?"
    )
    return f"{name}, {info.get('CPU(s)', '?').strip()} CPUs, {isa}"


def best(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up (compile) call, seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def paired(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Best wall times of both sides, timed alternately (ours, theirs, ours, ...) after one
    warm-up call each, so that both see the same machine state: on a shared machine a
    background burst then slows both sides instead of one."""
    ours()
    theirs()
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for fn, times in ((ours, t_ours), (theirs, t_theirs)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(t_ours), min(t_theirs)


def matmul_rates(repeats: int) -> dict[str, float]:
    """Best float32 GFLOP/s of a 2048^2 matmul in each library: ``{"jax", "torch"}``. On an
    Intel Xeon with AMX XLA's kernel reached ~0.85x PyTorch's (README, Benchmarks), which
    bounds every matmul-bound row there."""
    import jax
    import numpy as np
    import torch

    n = 2048
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    ja = jax.device_put(a)
    f = jax.jit(lambda x: x @ x)
    t_jax = best(lambda: f(ja).block_until_ready(), repeats)
    ta = torch.from_numpy(a)
    t_torch = best(lambda: ta @ ta, repeats)
    return {"jax": 2 * n**3 / t_jax / 1e9, "torch": 2 * n**3 / t_torch / 1e9}


def matmul_peak(repeats: int) -> float:
    """Best float32 GFLOP/s of a 2048^2 matmul in JAX or PyTorch (the machine's peak here)."""
    return max(matmul_rates(repeats).values())


def read_bandwidth(repeats: int) -> float:
    """Best read bandwidth, GB/s: summing 1 GiB of float32 in JAX, PyTorch or numpy."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    n = 256 * 2**20
    x = np.ones(n, np.float32)
    jx = jax.device_put(x)
    s = jax.jit(jnp.sum)
    tx = torch.from_numpy(x)
    t = min(
        best(lambda: s(jx).block_until_ready(), repeats),
        best(lambda: tx.sum(), repeats),
        best(lambda: x.sum(), repeats),
    )
    return x.nbytes / t / 1e9


def bf16_matmul_rates(repeats: int) -> tuple[float, float]:
    """GFLOP/s of a bfloat16 matmul: JAX at 2048^2 as our Dense layers run it on the CPU
    (float32 accumulation and output, ``models/dense_grad.py``), PyTorch at 512^2 (its bf16
    matmul on a CPU without bf16 units runs at a fraction of a GFLOP/s: 2048^2 would take
    minutes)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    a = np.random.default_rng(0).normal(size=(2048, 2048)).astype(np.float32)
    ja = jax.device_put(a).astype(jnp.bfloat16)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32).astype(x.dtype))
    t_jax = best(lambda: f(ja).block_until_ready(), repeats)
    ta = torch.from_numpy(a[:512, :512].copy()).to(torch.bfloat16)
    t_torch = best(lambda: ta @ ta, repeats)
    return 2 * 2048**3 / t_jax / 1e9, 2 * 512**3 / t_torch / 1e9


def in_dtype(module: Any) -> Any:
    """``module`` computing in :data:`DTYPE` (its config's ``dtype``; same parameters)."""
    if DTYPE == "float32":
        return module
    return module.clone(config=dataclasses.replace(module.config, dtype=DTYPE))


def xla_flops(jitted, *args) -> float:
    """FLOPs of one call from XLA's cost analysis."""
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def _max_diff(a, b) -> float:
    import numpy as np

    if hasattr(b, "detach"):  # a torch tensor, possibly bf16 (numpy has no bf16)
        b = b.detach().float().numpy()
    return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


# ------------------------------------------------------------------------------ encoders


def _vision_row(hf_model, hf_cfg, pixels, repeats: int, name: str, out_key: str) -> dict:
    import jax
    import torch

    from vau_jax.convert import load_hf_state_dict

    sd = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    module, params = load_hf_state_dict(sd, hf_cfg.to_dict(), source="bench")
    module = in_dtype(module)
    kw = {"interpolate_pos_encoding": True} if pixels.shape[1] != pixels.shape[2] else {}
    fwd = jax.jit(lambda p, px: module.apply({"params": p}, px, **kw)[out_key])
    params, jx = jax.device_put(params), jax.device_put(pixels)
    tx = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())
    if TORCH_DTYPE == "bfloat16":  # like-for-like bf16 (module docstring)
        hf_model, tx = hf_model.to(torch.bfloat16), tx.to(torch.bfloat16)
    with torch.inference_mode():
        t_jax, t_torch = paired(
            lambda: fwd(params, jx).block_until_ready(),
            lambda: hf_model(pixel_values=tx, **kw),
            repeats,
        )
        diff = _max_diff(fwd(params, jx), getattr(hf_model(pixel_values=tx, **kw), out_key))
    return {
        "row": name,
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": xla_flops(fwd, params, jx),
        "max_abs_diff": diff,
    }


VIT_B = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)


def _vit_b(kind: str, shape: tuple[int, ...], repeats: int, name: str, out_key: str) -> dict:
    """A ViT-B-sized HF vision model of ``kind`` (random init) against ours on ``shape``."""
    import numpy as np
    import torch
    import transformers

    if kind == "clip":
        cfg = transformers.CLIPVisionConfig(
            **VIT_B, image_size=224, patch_size=16, hidden_act="quick_gelu"
        )
        model_cls = transformers.CLIPVisionModel
    else:
        cfg = transformers.Dinov2Config(**VIT_B, image_size=518, patch_size=14)
        model_cls = transformers.Dinov2Model
    torch.manual_seed(0)
    ref = model_cls(cfg).eval()
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return _vision_row(ref, cfg, x, repeats, name, out_key)


def row_clip(repeats: int) -> dict:
    return _vit_b(
        "clip", (8, 224, 224, 3), repeats, "CLIP ViT-B/16 fwd, B=8, 224^2", "pooler_output"
    )


def row_dinov2(repeats: int) -> dict:
    return _vit_b(
        "dinov2", (4, 224, 336, 3), repeats, "DINOv2-B/14 fwd, B=4, 224x336", "last_hidden_state"
    )


def row_qformer(repeats: int) -> dict:
    import jax
    import numpy as np
    import torch
    import transformers

    from vau_jax.convert import load_hf_state_dict

    cfg = transformers.InstructBlipQFormerConfig(
        **VIT_B, encoder_hidden_size=1408, cross_attention_frequency=2
    )
    torch.manual_seed(0)
    ref = transformers.InstructBlipQFormerModel(cfg).eval()
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
    module = in_dtype(module)
    rng = np.random.default_rng(0)
    b, nq, t = 8, module.config.num_query_tokens, 32
    image = rng.normal(size=(b, 257, 1408)).astype(np.float32)
    ids = rng.integers(1, cfg.vocab_size, size=(b, t)).astype(np.int32)
    text_mask = np.ones((b, t), np.int32)
    query = np.broadcast_to(np.asarray(params["query_tokens"]), (b, nq, 768)).copy()
    fwd = jax.jit(
        lambda p, im, i, m: module.apply({"params": p}, im, input_ids=i, attention_mask=m)[
            "last_hidden_state"
        ]
    )
    params = jax.device_put(params)
    args = (params, image, ids, text_mask)
    full_mask = torch.ones(b, nq + t, dtype=torch.long)
    kw = dict(
        input_ids=torch.from_numpy(ids.astype(np.int64)),
        attention_mask=full_mask,
        query_embeds=torch.from_numpy(query),
        encoder_hidden_states=torch.from_numpy(image),
    )
    with torch.inference_mode():
        t_jax, t_torch = paired(lambda: fwd(*args).block_until_ready(), lambda: ref(**kw), repeats)
        diff = _max_diff(fwd(*args), ref(**kw).last_hidden_state)
    return {
        "row": f"InstructBLIP Q-Former fwd, {b} frames x 257 tok",
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": xla_flops(fwd, *args),
        "max_abs_diff": diff,
    }


# ----------------------------------------------------------------------------------- LLM


def _smollm2():
    """SmolLM2-135M-shaped HF LLaMA (random init) and our converted ``(module, params)``."""
    import jax
    import torch
    import transformers

    from vau_jax.convert import hf_llama, load_hf_state_dict
    from vau_jax.models import registry

    cfg = transformers.LlamaConfig(**hf_llama.config_to_hf(registry.get_config("smollm2-135m")))
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
    return cfg, ref, in_dtype(module), jax.device_put(params)


def row_prefill(n: int, repeats: int) -> dict:
    import jax
    import numpy as np
    import torch

    from vau_jax.models import llama

    cfg, ref, module, params = _smollm2()
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, size=(1, n)).astype(np.int32)
    cache = llama.init_cache(module.config, 1, n + 64)
    pre = jax.jit(lambda p, c, i: llama.prefill(module, p, c, input_ids=i, fresh=True))
    tid = torch.from_numpy(ids.astype(np.int64))
    with torch.inference_mode():
        t_jax, t_torch = paired(
            lambda: jax.block_until_ready(pre(params, cache, ids)),
            lambda: ref(tid, use_cache=True, logits_to_keep=1),
            repeats,
        )
        diff = _max_diff(pre(params, cache, ids)[0], ref(tid, logits_to_keep=1).logits[:, -1])
    return {
        "row": f"SmolLM2-135M prefill {n} tokens",
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": xla_flops(pre, params, cache, ids),
        "max_abs_diff": diff,
    }


def row_decode(batch: int, repeats: int, bandwidth: float, steps: int = 64) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from vau_jax.models import llama, llama_decode

    cfg, ref, module, params = _smollm2()
    prompt = 32
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, size=(batch, prompt))
    ids = ids.astype(np.int32)
    cache = llama.init_cache(module.config, batch, prompt + steps + 1)
    logits, cache = jax.jit(lambda p, c, i: llama.prefill(module, p, c, input_ids=i, fresh=True))(
        params, cache, ids
    )
    first = jnp.argmax(logits, -1).astype(jnp.int32)

    def loop(step):  # ``steps`` greedy steps; the tokens fed back are the outputs
        @jax.jit
        def decode(p, tok, c):
            def body(i, carry):
                tok, c, out = carry
                logits, c = step(p, tok, c)
                tok = jnp.argmax(logits, -1).astype(jnp.int32)
                return tok, c, out.at[:, i].set(tok)

            out = jnp.zeros((tok.shape[0], steps), jnp.int32)
            return jax.lax.fori_loop(0, steps, body, (tok, c, out))[2]

        return decode

    # ours: what ``generate`` runs given ``decode_weights``: one row decodes on the decoding
    # layout (``llama_decode``, made once as a user generating many tokens would; the time to
    # make it is printed), several rows on the model's own layout; the other layout's loop is
    # timed beside it
    t0 = time.perf_counter()
    weights = jax.block_until_ready(llama_decode.prepare(module.config, params))
    prepare_s = time.perf_counter() - t0  # includes its compilation
    t0 = time.perf_counter()
    jax.block_until_ready(llama_decode.prepare(module.config, params))
    prepare_s = min(prepare_s, time.perf_counter() - t0)
    rows_layout = loop(lambda w, tok, c: llama_decode.decode_step(module.config, w, tok, c))
    model_layout = loop(lambda p, tok, c: llama.decode_step(module, p, tok, c))
    if batch == 1:
        decode, ours_args = rows_layout, weights
        other, other_args, other_name = model_layout, params, "model"
    else:
        decode, ours_args = model_layout, params
        other, other_args, other_name = rows_layout, weights, "decoding"
    ours_other = np.asarray(other(other_args, first, cache))
    t_other = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        other(other_args, first, cache).block_until_ready()
        t_other = min(t_other, time.perf_counter() - t0)
    ours = np.asarray(decode(ours_args, first, cache))
    tid = torch.from_numpy(ids.astype(np.int64))

    def theirs() -> tuple[float, np.ndarray]:  # prefill untimed, then the timed decode loop
        with torch.inference_mode():
            out = ref(tid, use_cache=True, logits_to_keep=1)
            pkv, tok, toks = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True), []
            t0 = time.perf_counter()
            for _ in range(steps):
                out = ref(tok, past_key_values=pkv, use_cache=True)
                pkv, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                toks.append(tok)
            return time.perf_counter() - t0, torch.cat(toks, 1).numpy()

    runs: list[tuple[float, np.ndarray]] = []

    def theirs_timed() -> None:
        runs.append(theirs())

    # the HF side times its own loop (its prefill is outside the clock); ours is the call
    t_jax, _ = paired(
        lambda: decode(ours_args, first, cache).block_until_ready(), theirs_timed, repeats
    )
    t_torch = min(t for t, _ in runs[1:])  # runs[0] was the warm-up
    same = bool(np.array_equal(ours, runs[0][1])) and bool(np.array_equal(ours, ours_other))
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    per_step = t_jax / steps
    return {
        "row": f"SmolLM2-135M greedy decode, batch {batch}",
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": 2.0 * n_params * batch * steps,
        "greedy_tokens_equal": same,
        "ms_per_step": round(per_step * 1e3, 2),
        "of_bandwidth_limit": round(weight_bytes / bandwidth / 1e9 / per_step, 3),
        "prepare_s": round(prepare_s, 3),
        f"ms_per_step_{other_name}_layout": round(t_other / steps * 1e3, 2),
    }


def selected_rows(spec: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated ``--rows`` value as a list; unknown names exit with one line."""
    rows = [r for r in spec.split(",") if r]
    unknown = sorted(set(rows) - set(known))
    if unknown:
        raise SystemExit(f"error: unknown rows {unknown}; known: {', '.join(known)}")
    return rows


def machine_header(threads: int, repeats: int) -> float:
    """Sets PyTorch's thread count, prints the CPU model and the float32 matmul peak measured
    now; returns the peak (GFLOP/s)."""
    import torch

    torch.set_num_threads(threads)
    print(f"CPU: {cpu_model()}; PyTorch threads: {threads}")
    # glibc.malloc.hugetlb=1 when the program restarted for huge pages (vau_jax.host_memory)
    print(f"GLIBC_TUNABLES: {os.environ.get('GLIBC_TUNABLES') or '(none)'}")
    rates = matmul_rates(repeats)
    peak = max(rates.values())
    print(
        f"float32 matmul peak (2048^2, best of JAX/PyTorch): {peak:.1f} GFLOP/s "
        f"(JAX {rates['jax']:.1f}, PyTorch {rates['torch']:.1f})"
    )
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {ROWS}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16"), help="our compute dtype"
    )
    ap.add_argument(
        "--torch_dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="PyTorch's dtype in the clip / dinov2 rows",
    )
    args = ap.parse_args()
    global DTYPE, TORCH_DTYPE
    DTYPE, TORCH_DTYPE = args.dtype, args.torch_dtype
    rows = selected_rows(args.rows, ROWS)
    if TORCH_DTYPE != "float32" and (DTYPE == "float32" or set(rows) - {"clip", "dinov2"}):
        raise SystemExit(
            "error: --torch_dtype=bfloat16 needs --dtype=bfloat16 and --rows within clip,dinov2"
        )
    peak = machine_header(args.threads, args.repeats)
    if DTYPE != "float32":
        jax_bf16, torch_bf16 = bf16_matmul_rates(args.repeats)
        print(
            f"ours in {DTYPE} compute (PyTorch {TORCH_DTYPE}); bfloat16 matmul: "
            f"JAX {jax_bf16:.1f} GFLOP/s (2048^2), PyTorch {torch_bf16:.2f} GFLOP/s (512^2)"
        )
    bandwidth = 0.0
    if any(r.startswith("decode") for r in rows):
        bandwidth = read_bandwidth(args.repeats)
        print(f"read bandwidth (sum of 1 GiB, best of JAX/PyTorch/numpy): {bandwidth:.1f} GB/s")
    print(
        f"{'row':44s} {'ours s':>8s} {'PyTorch s':>10s} {'PT/ours':>8s} {'GFLOP/s':>8s} {'of peak':>8s}  check"
    )
    for name in rows:
        if name.startswith("prefill"):
            r = row_prefill(int(name[len("prefill") :]), args.repeats)
        elif name.startswith("decode"):
            r = row_decode(int(name[len("decode") :]), args.repeats, bandwidth)
        else:
            r = globals()[f"row_{name}"](args.repeats)
        gflops = r["flops"] / r["jax_s"] / 1e9
        check = {k: v for k, v in r.items() if k not in ("row", "jax_s", "torch_s", "flops")}
        print(
            f"{r['row']:44s} {r['jax_s']:8.3f} {r['torch_s']:10.3f} "
            f"{r['torch_s'] / r['jax_s']:8.2f} {gflops:8.1f} {gflops / peak:8.1%}  {check}",
            flush=True,
        )


if __name__ == "__main__":
    main()
