"""Training-step speed at the tiny presets: ours (JAX) vs plain PyTorch of the same shapes.

    python bench/steps.py [--rows=vador2,vagpt1] [--repeats=7] [--threads=2] [--steps=10]

Rows (float32; PyTorch gets ``--threads`` threads, XLA uses the machine's cores, 2 here):

  vador2  VAD-LLaMA phase 2 (``configs/vadllama.py``): 8 videos x 16 clips x 8 frames x 17
          tokens (64 wide) through the frozen video Q-Former; the frozen ``ap_base`` picks
          the LTC lists (K=4, a scan over clips); LTC + AP trained on the paper MIL loss.
  vagpt1  VA-GPT stage 1 (``configs/vagpt.py``): 8 rows of 448 tokens; 16 frames x 64 patches
          through the text-conditioned Q-Former and projectors into the tiny LLaMA (4 layers,
          128 wide, vocabulary 512), all trained on the answer tokens' cross-entropy.

Ours is the trainer's step (:func:`vau_jax.aot.train_step`: the method's loss, optimizer and
freeze list, ``make_train_step``, state donated) on one device, the model built from the
config alone (no tiny CLIP, tokenizer or pretraining). PyTorch: ``torch.nn`` layers of the
same widths, heads and counts (HF ``LlamaForCausalLM``, SDPA attention), the same frozen
parts, loss and ``AdamW`` step with ``clip_grad_norm_(1.0)``. Weights are random and differ;
parameter counts (total, trainable) must agree within 2%. Our causal attention skips the key
blocks no query sees (HF's does not). Per row: ms per step (best of ``repeats`` calls of
``steps`` steps, the sides timed alternately), PyTorch / ours (>= 1: ours is as fast or
faster), our GFLOP/s (XLA cost analysis) as a fraction of the float32 matmul peak measured
in this run, and both sides' parameter counts, under the CPU model. Like ``python -m
vau_jax.main``, the script restarts once with glibc's 2 MB pages for large blocks
(:mod:`vau_jax.host_memory`; ``VAU_JAX_HUGEPAGES=0``: not), which both sides then use.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from torch import nn

from vau_jax import encoders, sharding
from vau_jax.aot import train_step
from vau_jax.cli import load_config_file
from vau_jax.convert import hf_llama
from vau_jax.methods.pretrain.vlm_parts import build_vlm, dummy_inputs
from vau_jax.methods.vadllama.method import vador_config, vador_loss
from vau_jax.methods.vagpt.aot import _batch as vagpt_batch
from vau_jax.methods.vagpt.method import instruction_loss
from vau_jax.models import registry, row_chunks
from vau_jax.models.heads.vador import VADor
from vau_jax.train.optimizer import make_optimizer
from vau_jax.train.state import init_train_state
from vau_jax.tree import path_str

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from models import machine_header, paired, selected_rows, xla_flops  # noqa: E402

ROWS = ("vador2", "vagpt1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Row:
    """Both sides of one row: ``ours(n)`` / ``theirs(n)`` run ``n`` training steps and return
    the last loss; ``flops`` of one step of ours (XLA); parameter counts ``(total, trainable)``."""

    name: str
    ours: Callable[[int], float]
    theirs: Callable[[int], float]
    flops: float
    ours_params: tuple[int, int]
    theirs_params: tuple[int, int]


def load_config(name: str) -> Any:
    """``configs/<name>.py``'s default (tiny) preset."""
    return load_config_file(os.path.join(ROOT, "configs", f"{name}.py"))


def random_params(abstract: Any, seed: int = 0) -> Any:
    """Host values for an abstract parameter tree: norm scales 1, biases 0, the rest
    N(0, 0.02) (``model.init`` compiles a random kernel per leaf: tens of seconds here)."""
    rng = np.random.default_rng(seed)

    def leaf(path: Any, x: Any) -> np.ndarray:
        name = path_str(path).rsplit("/", 1)[-1]
        if name in ("scale", "bias"):
            return np.full(x.shape, float(name == "scale"), x.dtype)
        return (0.02 * rng.standard_normal(x.shape)).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract)


def _ours(name: str, loss_fn: Any, opt: dict, model: Any, init_args: tuple, batch: dict) -> tuple:
    """The trainer's step of ``model`` on one device, with its state and ``batch`` there:
    ``(run(n) -> last loss, flops of a step, (total, trainable) params)``."""
    mesh = sharding.make_mesh({"data": -1}, devices=jax.devices()[:1])
    boxed = jax.eval_shape(model.init, jax.random.key(0), *init_args)["params"]
    abstract = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
    step = train_step(name, loss_fn, opt, boxed, abstract, mesh, sharding.DEFAULT_RULES)
    state_sharding = jax.tree.map(lambda x: x.sharding, step.args[0])
    params = random_params(flax.linen.unbox(boxed))
    box = [init_train_state(params, make_optimizer(opt, params), 0, state_sharding)]
    batch = {k: jax.device_put(v, step.args[1][k].sharding) for k, v in batch.items()}

    def run(n: int) -> float:
        with step.context():
            for _ in range(n):
                box[0], metrics = step.fn(box[0], batch)  # the old state is donated
            jax.block_until_ready(box[0])
        return float(metrics["loss"])

    # FLOPs of the plain program, attention over the whole batch (XLA's cost analysis counts
    # the body of row_chunks' loop once); a second step, so that the timed one keeps its trace
    plain = train_step(name, loss_fn, opt, boxed, abstract, mesh, sharding.DEFAULT_RULES)
    with plain.context(), row_chunks.whole_batch():
        flops = xla_flops(plain.fn, box[0], batch)
    return run, flops, (step.params, step.trainable_params)


def _theirs(model: nn.Module, loss_of: Callable[[], torch.Tensor], opt: dict) -> tuple:
    """The PyTorch step: ``(run(n) -> last loss, (total, trainable) params)``."""
    train = [p for p in model.parameters() if p.requires_grad]
    adamw = torch.optim.AdamW(train, lr=float(opt["lr"]), weight_decay=float(opt["weight_decay"]))
    clip = opt.get("grad_clip_norm", None)

    def run(n: int) -> float:
        for _ in range(n):
            adamw.zero_grad()
            loss = loss_of()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(train, float(clip))
            adamw.step()
        return float(loss.detach())

    return run, (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in train))


# --------------------------------------------------------------------- PyTorch modules


class Attention(nn.Module):
    """BERT attention block: q/k/v/o projections, ``LayerNorm(o(attention) + x)``."""

    def __init__(self, d: int, heads: int, kv_width: int, eps: float):
        super().__init__()
        self.h = heads
        self.q, self.o = nn.Linear(d, d), nn.Linear(d, d)
        self.k, self.v = nn.Linear(kv_width, d), nn.Linear(kv_width, d)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, kv, mask=None):  # x [B, N, D], kv [B, M, Dkv], mask [B, 1, 1, M]
        heads = lambda t: t.unflatten(-1, (self.h, -1)).transpose(1, 2)  # [B, H, N, Dh]
        out = F.scaled_dot_product_attention(
            heads(self.q(x)), heads(self.k(kv)), heads(self.v(kv)), attn_mask=mask
        )
        return self.norm(self.o(out.transpose(1, 2).flatten(2)) + x)


class FFN(nn.Module):
    """``LayerNorm(fc2(gelu(fc1(x))) + x)``."""

    def __init__(self, d: int, inner: int, eps: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)
        self.norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        return self.norm(self.fc2(F.gelu(self.fc1(x))) + x)


class TorchQFormer(nn.Module):
    """BLIP-2 Q-Former in ``vau_jax.models.qformer``'s layout: learned queries (+ text tokens
    when ``cfg.text_input``), cross-attention every ``cross_attention_frequency`` layers,
    separate query / text feed-forward blocks. Returns the queries ``[B, Nq, D]``."""

    def __init__(self, cfg: Any):
        super().__init__()
        d, eps, self.text = cfg.hidden_size, cfg.layer_norm_eps, cfg.text_input
        self.nq = cfg.num_query_tokens
        self.query_tokens = nn.Parameter(0.02 * torch.randn(1, self.nq, d))
        if self.text:
            self.word = nn.Embedding(cfg.vocab_size, d)
            self.pos = nn.Embedding(cfg.max_position_embeddings, d)
        self.norm = nn.LayerNorm(d, eps=eps)
        h, inner = cfg.num_attention_heads, cfg.intermediate_size
        self.layers = nn.ModuleList()
        for i in range(cfg.num_hidden_layers):
            layer = nn.ModuleDict({"self": Attention(d, h, d, eps), "ffn": FFN(d, inner, eps)})
            if i % cfg.cross_attention_frequency == 0:
                layer["cross"] = Attention(d, h, cfg.encoder_hidden_size, eps)
            if self.text:
                layer["ffn_text"] = FFN(d, inner, eps)
            self.layers.append(layer)

    def forward(self, image, ids=None, keep=None):  # image [B, M, De], ids / keep [B, T]
        b, nq = image.shape[0], self.nq
        x, mask = self.query_tokens.expand(b, -1, -1), None
        if self.text:
            x = torch.cat([x, self.word(ids) + self.pos(torch.arange(ids.shape[1]))], 1)
            mask = torch.cat([torch.ones(b, nq, dtype=torch.bool), keep], 1)[:, None, None]
        x = self.norm(x)
        for layer in self.layers:
            x = layer["self"](x, x, mask)
            q, t = x[:, :nq], x[:, nq:]
            q = layer["ffn"](layer["cross"](q, image) if "cross" in layer else q)
            x = torch.cat([q, layer["ffn_text"](t)], 1) if self.text else q
        return x[:, :nq]


def _mlp(d: int, hidden: int, out: int, norm: bool) -> nn.Module:
    """The AP (``norm``: Linear-LayerNorm-Linear) or an LTC soft weight (Linear-ReLU-Linear)."""
    return nn.Sequential(
        nn.Linear(d, hidden), nn.LayerNorm(hidden) if norm else nn.ReLU(), nn.Linear(hidden, out)
    )


def _insert(items, scores, x, s, m, lowest: bool) -> tuple:
    """Clip ``x`` [B, D] (score ``s``, valid ``m`` [B]) replaces the worst of ``items``
    [B, K, D] (``scores`` [B, K]) when better: lower (normal list) or higher (abnormal)."""
    j = scores.argmax(1) if lowest else scores.argmin(1)
    worst = scores.gather(1, j[:, None])[:, 0]
    hit = F.one_hot(j, scores.shape[1]).bool() & (m & (s < worst if lowest else s > worst))[:, None]
    return torch.where(hit[..., None], x[:, None], items), torch.where(hit, s[:, None], scores)


class TorchVADor(nn.Module):
    """Frame positions + video Q-Former -> clip features ``x``; the frozen ``ap_base`` picks
    the LTC lists (normal / abnormal / history, K slots, filled from past clips only, read by
    dot products); AP on ``x + W_n(n) + W_a(a) + W_h(h)``. Returns clip scores ``[B, C]``."""

    def __init__(self, vcfg: Any):
        super().__init__()
        d, h, self.cfg = vcfg.qformer.hidden_size, vcfg.ap_hidden, vcfg
        pos = 0.02 * torch.randn(vcfg.frames_per_clip, vcfg.vision_width)
        self.frame_position = nn.Parameter(pos)
        self.video_qformer = TorchQFormer(vcfg.qformer)
        self.ap, self.ap_base = _mlp(d, h, 2, True), _mlp(d, h, 2, True)
        self.w = nn.ModuleList(_mlp(d, vcfg.ltc.hidden, d, False) for _ in range(3))

    def forward(self, tokens, mask):  # tokens [B, C, F*M, Dv], mask [B, C]
        b, c, fm, dv = tokens.shape
        f, k = self.cfg.frames_per_clip, self.cfg.ltc.k
        t = tokens.reshape(b * c, f, fm // f, dv) + self.frame_position[None, :, None]
        x = self.video_qformer(t.reshape(b * c, fm, dv)).mean(1).reshape(b, c, -1)
        select = self.ap_base(x.detach()).softmax(-1)[..., 1]
        lists = [torch.zeros(b, k, x.shape[-1]) for _ in range(3)]  # normal, abnormal, history
        n_score, a_score = torch.full((b, k), torch.inf), torch.full((b, k), -torch.inf)
        h_valid, reads, past = torch.zeros(b, k, dtype=torch.bool), [], []
        for i in range(c):
            xi, si, mi = x[:, i], select[:, i], mask[:, i]
            valid = (n_score.isfinite(), a_score.isfinite(), h_valid)
            w = [torch.einsum("bkd,bd->bk", li, xi) * v for li, v in zip(lists, valid)]
            reads.append([torch.einsum("bk,bkd->bd", wi, li) for wi, li in zip(w, lists)])
            past.append(h_valid.any(1))
            lists[0], n_score = _insert(lists[0], n_score, xi, si, mi, lowest=True)
            lists[1], a_score = _insert(lists[1], a_score, xi, si, mi, lowest=False)
            shifted = torch.cat([lists[2][:, 1:], xi[:, None]], 1)
            lists[2] = torch.where(mi[:, None, None], shifted, lists[2])
            h_valid = torch.where(mi[:, None], F.pad(h_valid[:, 1:], (0, 1), value=True), h_valid)
        terms = sum(w(torch.stack([r[m] for r in reads], 1)) for m, w in enumerate(self.w))
        x_tilde = x + torch.where(torch.stack(past, 1)[..., None], terms, 0.0)
        return self.ap(x_tilde).softmax(-1)[..., 1]


def torch_mil_loss(scores: torch.Tensor, mask: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The ``"paper"`` MIL objective: BCE on each video's max clip score + BCE on its
    max-min margin (over videos with >= 2 valid clips)."""

    def bce(p, y, eps=1e-6):
        return -(y * torch.log(p + eps) + (1 - y) * torch.log(1 - p + eps))

    y, two = label.float(), mask.sum(1) >= 2
    top = torch.where(mask, scores, 0.0).amax(1)
    margin = torch.where(two, top - torch.where(mask, scores, 1.0).amin(1), 0.0)
    return bce(top, y).mean() + torch.where(two, bce(margin, y), 0.0).sum() / two.sum().clamp(min=1)


# ------------------------------------------------------------------------------ rows


def row_vador2() -> Row:
    """VAD-LLaMA phase 2 (module docstring)."""
    c = load_config("vadllama")
    # The frozen tiny CLIP's token width and count (class token + pooled patches), no weights.
    clip = registry.build(c.clip_pretrain.model)
    clip = encoders.from_module(clip, None, "sizes", outputs=("cls", "patches"), patch_pool=c.pool)
    qformer = registry.get_config(c.video_qformer)
    vcfg = vador_config(c, qformer, clip.width, clip.tokens_per_frame, c.frames_per_clip)
    b, nc, fm = int(c.batch_size), int(c.max_clips), vcfg.frames_per_clip * vcfg.tokens_per_frame
    rng = np.random.default_rng(0)
    batch = {  # aot.py's phase-2 batch
        "tokens": rng.normal(size=(b, nc, fm, vcfg.vision_width)).astype(np.float32),
        "mask": np.arange(nc)[None] < rng.integers(nc // 2, nc + 1, size=(b, 1)),  # padded
        "label": (np.arange(b) % 2).astype(np.int32),
    }
    opt, model = dict(c.phase2.optimizer), VADor(vcfg)
    dummy = (jnp.zeros((1, 2, fm, vcfg.vision_width)), jnp.ones((1, 2), bool))
    loss_fn = vador_loss(model, str(c.mil_loss), 2)
    ours, flops, ours_params = _ours("phase2", loss_fn, opt, model, dummy, batch)

    torch.manual_seed(0)
    ref = TorchVADor(vcfg)
    for part in (ref.video_qformer, ref.ap_base, ref.frame_position):  # phase 2's freeze list
        part.requires_grad_(False)
    tt, tm, tl = (torch.from_numpy(batch[k]) for k in ("tokens", "mask", "label"))
    theirs, theirs_params = _theirs(ref, lambda: torch_mil_loss(ref(tt, tm), tm, tl), opt)
    name = f"VADor phase 2, {b}x{nc} clips x {fm} tok"
    return Row(name, ours, theirs, flops, ours_params, theirs_params)


class TorchVideoLLM(nn.Module):
    """LLaMA-VID tokens (``vau_jax.models.vlm.VideoLLM``, linear projectors) spliced into an
    HF LLaMA's prompt; ``forward`` returns the answer tokens' mean cross-entropy."""

    def __init__(self, vcfg: Any):
        super().__init__()
        dq, dv, d = vcfg.qformer.hidden_size, vcfg.vision_width, vcfg.llm.hidden_size
        self.qformer, self.query_proj = TorchQFormer(vcfg.qformer), nn.Linear(dq, dv)
        self.context_proj, self.content_proj = nn.Linear(dv, d), nn.Linear(dv, d)
        hf = transformers.LlamaConfig(**hf_llama.config_to_hf(vcfg.llm))
        hf._attn_implementation = "sdpa"
        self.llm = transformers.LlamaForCausalLM(hf)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        bs, t, n, dv = b["visual"].shape
        x, ids = b["visual"].reshape(bs * t, n, dv), b["input_ids"].long()
        rep = functools.partial(torch.repeat_interleave, repeats=t, dim=0)
        q = self.query_proj(self.qformer(x, rep(b["query_ids"].long()), rep(b["query_mask"])))
        att = (q @ x.transpose(1, 2) / dv**0.5).softmax(-1)  # [B*T, Nq, N]
        ctx, content = self.context_proj((att @ x).mean(1)), self.content_proj(x.mean(1))
        tokens = torch.stack([ctx, content], 1).reshape(bs, 2 * t, -1)  # [B, 2T, D]
        vm = b["video_mask"]
        slot = (vm.long().cumsum(1) - 1).clamp(0, 2 * t - 1)
        vis = torch.gather(tokens, 1, slot[..., None].expand(-1, -1, tokens.shape[-1]))
        emb = torch.where(vm[..., None], vis, self.llm.model.embed_tokens(ids))
        logits = self.llm(inputs_embeds=emb, attention_mask=b["attention_mask"].long()).logits
        nll = -logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        m = b["loss_mask"][:, 1:].float()
        return (nll * m).sum() / m.sum().clamp(min=1.0)


def row_vagpt1() -> Row:
    """VA-GPT stage 1 (module docstring)."""
    c = load_config("vagpt")
    # The LLM and the Q-Former share the tiny tokenizer's clip_pretrain.vocab_size pieces
    # (pretrain/vlm_parts.py: tiny_llm; the tokenizer itself is not built here).
    vocab = int(c.clip_pretrain.vocab_size)
    llm_cfg = dataclasses.replace(registry.get_config(c.llm_preset), vocab_size=vocab)
    spec = vagpt_batch(c, int(c.batch_size), dino=False)  # aot.py's stage-1 batch
    b, t, n, dv = spec["visual"].shape
    length, lq = spec["input_ids"].shape[1], spec["query_ids"].shape[1]
    model = build_vlm(c, llm_cfg, dv, vocab)
    rng = np.random.default_rng(0)
    pos = np.arange(length)[None]
    valid = pos < rng.integers(length // 2, length + 1, size=(b, 1))  # right-padded rows
    start = valid.sum(1, keepdims=True)
    batch = {
        "input_ids": rng.integers(3, vocab, size=(b, length)).astype(np.int32),
        "attention_mask": valid,
        "video_mask": np.repeat((pos >= 1) & (pos < 1 + 2 * t), b, 0),  # 2 per frame
        "loss_mask": valid & (pos >= start - start // 3),  # the answer: the last third
        "visual": rng.normal(size=(b, t, n, dv)).astype(np.float32),
        "query_ids": rng.integers(3, vocab, size=(b, lq)).astype(np.int32),
        "query_mask": pos[:, :lq] < rng.integers(lq // 2, lq + 1, size=(b, 1)),
    }
    assert all(batch[k].shape == s.shape for k, s in spec.items())
    opt = dict(c.stage1.optimizer)
    opt["freeze"] = list(opt.get("freeze", ())) + ([] if c.train_llm else [r"^llm/"])
    loss_fn, dummy = instruction_loss(model, 1.0), dummy_inputs(c, n, dv)
    ours, flops, ours_params = _ours("stage1", loss_fn, opt, model, dummy, batch)

    torch.manual_seed(0)
    ref = TorchVideoLLM(model.config)
    if not c.train_llm:
        ref.llm.requires_grad_(False)
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    theirs, theirs_params = _theirs(ref, lambda: ref(tb), opt)
    name = f"VA-GPT stage 1, {b}x{length} tok, {t}x{n} patches"
    return Row(name, ours, theirs, flops, ours_params, theirs_params)


def check_params(row: Row, tolerance: float = 0.02) -> None:
    """Raises unless both sides' total and trainable parameter counts agree within
    ``tolerance`` (relative)."""
    for what, a, b in zip(("total", "trainable"), row.ours_params, row.theirs_params):
        if abs(a - b) > tolerance * max(a, b, 1):
            raise AssertionError(f"{row.name}: {what} parameters differ: ours {a:,}, PyTorch {b:,}")


def main() -> None:
    """Parses the flags, measures the peak, builds and times every row, prints the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {ROWS}")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed call")
    args = ap.parse_args()
    rows = selected_rows(args.rows, ROWS)
    peak = machine_header(args.threads, args.repeats)
    print(
        f"{'row':44s} {'ours ms':>8s} {'PT ms':>8s} {'PT/ours':>8s} {'GFLOP/s':>8s} "
        f"{'of peak':>8s} {'MFLOP':>8s}  params total/trainable (ours | PyTorch)"
    )
    for name in rows:
        r = globals()[f"row_{name}"]()
        check_params(r)
        k, part = args.steps, functools.partial
        r.ours(1), r.theirs(1)  # compile and warm up outside the clock
        t_ours, t_theirs = (t / k for t in paired(part(r.ours, k), part(r.theirs, k), args.repeats))
        gflops = r.flops / t_ours / 1e9
        counts = " | ".join(f"{a:,}/{b:,}" for a, b in (r.ours_params, r.theirs_params))
        print(
            f"{r.name:44s} {t_ours * 1e3:8.2f} {t_theirs * 1e3:8.2f} {t_theirs / t_ours:8.2f} "
            f"{gflops:8.1f} {gflops / peak:8.1%} {r.flops / 1e6:8.1f}  {counts}",
            flush=True,
        )


if __name__ == "__main__":
    from vau_jax.host_memory import exec_with_hugepages

    # As the main job's training runs: 2 MB pages for XLA's buffers (PyTorch's get them too).
    exec_with_hugepages(__file__)
    main()
