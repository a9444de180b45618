"""Encoder / LLM speed: our JAX models vs the HF PyTorch references, same inputs, one run.

    python bench/encoders.py [--repeats=3] [--threads=2]

Rows:
  * CLIP ViT-B/16 vision tower forward, batch 8, 224x224, float32;
  * SmolLM2-135M-shaped LLaMA (random weights): prefill of 256 tokens + 64 cached greedy
    decode steps (HF ``generate(do_sample=False, min_new_tokens=64)``).
Both frameworks get the same weights (HF init converted with our converters); PyTorch gets
``threads`` threads, XLA uses every core of the machine (2 here). Printed per row: best-of-``repeats`` seconds for each, the PyTorch/JAX ratio
(> 1 means JAX is faster), the JAX GFLOP/s (XLA cost analysis) and its fraction of the
machine's float32 matmul peak measured in the same run (best of JAX and PyTorch on a
2048x2048 matmul).
"""

from __future__ import annotations

import argparse
import time


def _best(fn, repeats: int) -> float:
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak(repeats: int) -> float:
    """Best float32 GFLOP/s of a 2048^2 matmul in JAX or PyTorch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    n = 2048
    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    ja = jnp.asarray(a)
    f = jax.jit(lambda x: x @ x)
    t_jax = _best(lambda: f(ja).block_until_ready(), repeats)
    ta = torch.from_numpy(a)
    t_torch = _best(lambda: ta @ ta, repeats)
    return 2 * n**3 / min(t_jax, t_torch) / 1e9


def _flops(jitted, *args) -> float:
    cost = jitted.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def bench_clip(repeats: int) -> dict:
    import jax
    import numpy as np
    import torch
    import transformers

    from vau_jax.convert import load_hf_state_dict

    cfg = transformers.CLIPVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(0)
    ref = transformers.CLIPVisionModel(cfg).eval()
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
    x = np.random.default_rng(0).normal(size=(8, 224, 224, 3)).astype(np.float32)
    fwd = jax.jit(lambda p, px: module.apply({"params": p}, px)["pooler_output"])
    params, jx = jax.device_put(params), jax.device_put(x)
    t_jax = _best(lambda: fwd(params, jx).block_until_ready(), repeats)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        t_torch = _best(lambda: ref(pixel_values=tx).pooler_output, repeats)
        diff = float(
            np.max(np.abs(np.asarray(fwd(params, jx)) - ref(pixel_values=tx).pooler_output.numpy()))
        )
    return {
        "row": "CLIP ViT-B/16 fwd, B=8, 224^2",
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": _flops(fwd, params, jx),
        "max_abs_diff": diff,
    }


def bench_llama(repeats: int) -> dict:
    import jax
    import numpy as np
    import torch
    import transformers

    from vau_jax.convert import hf_llama, load_hf_state_dict
    from vau_jax.eval.generate import generate
    from vau_jax.models import llama, registry

    cfg = transformers.LlamaConfig(**hf_llama.config_to_hf(registry.get_config("smollm2-135m")))
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
    params = jax.device_put(params)
    prompt, new = 256, 64
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, size=(1, prompt)).astype(np.int32)

    def ours():
        toks, _ = generate(module, params, input_ids=ids, max_new_tokens=new, eos_id=None)
        return np.asarray(toks)

    t_jax = _best(ours, repeats)
    tid = torch.from_numpy(ids.astype(np.int64))
    with torch.inference_mode():

        def theirs():
            return ref.generate(
                tid,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=cfg.pad_token_id,
            )

        t_torch = _best(theirs, repeats)
        same = bool(np.array_equal(ours()[0], theirs()[0, prompt:].numpy()))
    # Prefill alone, for the FLOP count (decode steps are memory-bound; FLOPs ~ 2 * params).
    cache = llama.init_cache(module.config, 1, prompt + new)
    pre = jax.jit(lambda p, c, i: llama.prefill(module, p, c, input_ids=i)[0])
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    flops = _flops(pre, params, cache, ids) + 2.0 * n_params * new
    return {
        "row": "SmolLM2-135M prefill 256 + 64 decode",
        "jax_s": t_jax,
        "torch_s": t_torch,
        "flops": flops,
        "greedy_tokens_equal": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.repeats)
    print(f"machine float32 matmul peak (2048^2, best of JAX/PyTorch): {peak:.1f} GFLOP/s")
    print(
        f"{'row':40s} {'JAX s':>8s} {'PyTorch s':>10s} {'PT/JAX':>7s} {'GFLOP/s':>8s} {'of peak':>8s}  check"
    )
    for bench in (bench_clip, bench_llama):
        r = bench(args.repeats)
        gflops = r["flops"] / r["jax_s"] / 1e9
        check = {k: v for k, v in r.items() if k not in ("row", "jax_s", "torch_s", "flops")}
        print(
            f"{r['row']:40s} {r['jax_s']:8.3f} {r['torch_s']:10.3f} {r['torch_s'] / r['jax_s']:7.2f} "
            f"{gflops:8.1f} {gflops / peak:8.1%}  {check}"
        )


if __name__ == "__main__":
    main()
