"""LLaMA-VID and Video-LLaMA checkpoints: key layouts by round trip, numerics against PyTorch.

Neither project installs here (no network, no model hub), so there is no live reference. The
PyTorch modules below are written from their published code (``dvlab-research/LLaMA-VID``
``llamavid/model/llamavid_arch.py``: ``init_bert``, ``vlm_attention``, ``token_generation``;
``DAMO-NLP-SG/Video-LLaMA`` ``video_llama/models/video_llama.py``: ``init_video_Qformer``,
``encode_videoQformer_visual``) with the LAVIS BERT Q-Former both copy (query embeddings
prepended to the text, cross-attention every ``freq``-th layer for the query positions only,
separate query / text feed-forward blocks, post-LN). Module attribute names are the published
ones, so each ``state_dict()`` has the published key layout by construction. Each test:

* saves the state dict the way the project does (LLaMA-VID: two ``pytorch_model-*.bin``
  shards + ``pytorch_model.bin.index.json`` + ``config.json``; Video-LLaMA: a LAVIS
  ``{"model": ..., "config": ..., "epoch": ...}`` ``.pth``) and converts it with
  ``torch.load(weights_only=True)`` underneath;
* exports back and compares every tensor bit-exactly (round trip);
* compares the converted Flax module's outputs with the reference's (float32).
"""

from __future__ import annotations

import json
import math
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
nn = torch.nn

from vau_jax.convert import llamavid, video_llama  # noqa: E402
from vau_jax.convert.common import CheckpointMismatchError  # noqa: E402
from vau_jax.models.vlm import VideoLLM  # noqa: E402

# Measured max abs errors (float32, these sizes): LLaMA-VID context/content tokens 7.2e-7,
# logits 4.2e-7; Video-LLaMA video Q-Former 1.4e-6. The tolerance sits a few times above.
TOL = 5e-6


# ------------------------------------------------------------ LAVIS BERT Q-Former (PyTorch)


class BertSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, kv_width: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (
            nn.Linear(d, d),
            nn.Linear(kv_width, d),
            nn.Linear(kv_width, d),
        )

    def forward(self, x, kv, additive_mask):  # [B, N, D], [B, M, Dk], [B, 1, 1, M]
        b, n, d = x.shape

        def split(t):
            return t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(kv)), split(self.value(kv))
        att = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        if additive_mask is not None:
            att = att + additive_mask
        return (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)


class BertSelfOutput(nn.Module):
    def __init__(self, d_in: int, d: int):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(d_in, d), nn.LayerNorm(d, eps=1e-12)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nn.Module):
    def __init__(self, d: int, heads: int, kv_width: int):
        super().__init__()
        self.self = BertSelfAttention(d, heads, kv_width)
        self.output = BertSelfOutput(d, d)

    def forward(self, x, kv, mask):
        return self.output(self.self(x, kv, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, d: int, f: int):
        super().__init__()
        self.dense = nn.Linear(d, f)

    def forward(self, x):
        return nn.functional.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, i: int, d: int, heads: int, f: int, kv_width: int, freq: int, text: bool):
        super().__init__()
        self.attention = BertAttention(d, heads, d)
        self.has_cross = i % freq == 0
        if self.has_cross:
            self.crossattention = BertAttention(d, heads, kv_width)
        if text:  # Video-LLaMA sets these to None
            self.intermediate, self.output = BertIntermediate(d, f), BertSelfOutput(f, d)
        self.intermediate_query, self.output_query = BertIntermediate(d, f), BertSelfOutput(f, d)

    def forward(self, x, mask, image, nq):
        x = self.attention(x, x, mask)
        q, t = x[:, :nq], x[:, nq:]
        if self.has_cross:
            q = self.crossattention(q, image, None)
        q = self.output_query(self.intermediate_query(q), q)
        if t.shape[1]:
            t = self.output(self.intermediate(t), t)
        return torch.cat([q, t], 1)


class BertEmbeddings(nn.Module):
    def __init__(self, d: int, vocab: int, positions: int, text: bool):
        super().__init__()
        if text:
            self.word_embeddings = nn.Embedding(vocab, d)
            self.position_embeddings = nn.Embedding(positions, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.register_buffer("position_ids", torch.arange(positions).expand((1, -1)))

    def forward(self, input_ids, query_embeds):
        x = query_embeds
        if input_ids is not None:
            pos = self.position_ids[:, : input_ids.shape[1]]
            text = self.word_embeddings(input_ids) + self.position_embeddings(pos)
            x = torch.cat([query_embeds, text], 1)
        return self.LayerNorm(x)


class BertEncoder(nn.Module):
    def __init__(self, layers: list[BertLayer]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class BertModel(nn.Module):
    def __init__(self, d, heads, f, n, kv_width, freq, vocab=0, positions=16, text=False):
        super().__init__()
        self.embeddings = BertEmbeddings(d, vocab, positions, text)
        self.encoder = BertEncoder(
            [BertLayer(i, d, heads, f, kv_width, freq, text) for i in range(n)]
        )

    def forward(self, input_ids, query_embeds, attention_mask, encoder_hidden_states):
        x = self.embeddings(input_ids, query_embeds)
        mask = None
        if attention_mask is not None:  # BERT's extended additive mask
            mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.encoder.layer:
            x = layer(x, mask, encoder_hidden_states, query_embeds.shape[1])
        return x


class BertLMHeadModel(nn.Module):  # LAVIS's, with ``cls = None``
    def __init__(self, **kw):
        super().__init__()
        self.bert = BertModel(**kw)


def _perturb(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


# -------------------------------------------------------------------------- LLaMA-VID


class LlamaVidMultimodal(nn.Module):
    """The ``model.vlm_att_*`` / ``model.mm_projector`` modules of ``LLaMAVIDMetaModel``
    (``bert_type="qformer_pretrain"``, ``compress_type="mean"``, ``mlp2x_gelu``)."""

    def __init__(self, dv: int, d_llm: int, nq: int, **bert):
        super().__init__()
        d = bert["d"]
        self.vlm_att_encoder = BertLMHeadModel(kv_width=dv, text=True, **bert)
        self.vlm_att_query = nn.Parameter(0.02 * torch.randn(1, nq, d))
        self.vlm_att_projector = nn.Linear(d, dv)
        self.vlm_att_key_projector = nn.Linear(dv, dv)
        self.vlm_att_val_projector = nn.Linear(dv, d_llm)
        self.vlm_att_ln = nn.LayerNorm(dv)
        self.mm_projector = nn.Sequential(nn.Linear(dv, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))

    def tokens(self, image_features, input_ids, attention_masks):
        """``vlm_attention`` + ``token_generation`` (not long video): ``[N, 2, D_llm]``."""
        query_tokens = self.vlm_att_query.expand(image_features.shape[0], -1, -1)
        query_atts = torch.cat([torch.ones(query_tokens.shape[:-1]), attention_masks], 1)
        mm_img_in = self.vlm_att_ln(image_features)
        out = self.vlm_att_encoder.bert(input_ids, query_tokens, query_atts, mm_img_in)
        text_q = self.vlm_att_projector(out[:, : query_tokens.shape[1]])
        vis = image_features
        ctx = text_q @ self.vlm_att_key_projector(vis).transpose(-1, -2) / vis.shape[-1] ** 0.5
        ctx = self.vlm_att_val_projector((ctx.softmax(-1) @ vis).mean(1)[:, None])
        content = self.mm_projector(vis.mean(dim=1, keepdim=True))
        return torch.cat([ctx, content], 1)


LLM = dict(
    vocab_size=96,
    hidden_size=48,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
# BERT's head width is 64 (bert-base: 768 / 12): the converters read heads = width / 64.
BERT = dict(d=128, heads=2, f=48, n=3, freq=2, vocab=40, positions=16)


@pytest.fixture(scope="module")
def llamavid_release(tmp_path_factory):
    """A LLaMA-VID-layout release folder and its PyTorch reference modules."""
    torch.manual_seed(0)
    llm = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLM)).eval()
    mm = LlamaVidMultimodal(dv=24, d_llm=LLM["hidden_size"], nq=6, **BERT).eval()
    _perturb(llm, 1)
    _perturb(mm, 2)
    sd = {k: v.detach().clone() for k, v in llm.state_dict().items()}
    sd.update({f"model.{k}": v.detach().clone() for k, v in mm.state_dict().items()})
    sd["model.vision_tower.vision_tower.blocks.0.norm1.weight"] = torch.ones(24)  # skipped
    folder = tmp_path_factory.mktemp("llamavid")
    keys = sorted(sd)
    shards = {
        "pytorch_model-00001-of-00002.bin": keys[::2],
        "pytorch_model-00002-of-00002.bin": keys[1::2],
    }
    for name, part in shards.items():
        torch.save({k: sd[k] for k in part}, folder / name)
    weight_map = {k: name for name, part in shards.items() for k in part}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config = {
        **{k: v for k, v in llm.config.to_dict().items() if k != "model_type"},
        "model_type": "llava",
        "mm_hidden_size": 24,
        "mm_projector_type": "mlp2x_gelu",
        "bert_type": "qformer_pretrain",
        "num_query": 6,
        "compress_type": "mean",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder), sd, llm, mm


def test_llamavid_round_trip_is_bit_exact(llamavid_release):
    folder, sd, _, _ = llamavid_release
    module, params = llamavid.load_llamavid(folder)
    cfg = module.config
    assert cfg.key_proj and cfg.qformer_ln and cfg.context_hidden == 0
    assert cfg.projector_hidden == LLM["hidden_size"] and cfg.vision_width == 24
    q = cfg.qformer
    assert (q.num_hidden_layers, q.cross_attention_frequency, q.vocab_size) == (3, 2, 40)
    assert q.encoder_hidden_size == 24 and q.num_query_tokens == 6 and q.text_input
    back = llamavid.params_to_llamavid(params, cfg)
    skipped = {k for k in sd if k.startswith("model.vision_tower.") or k.endswith("position_ids")}
    assert set(back) == set(sd) - skipped
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)
    assert llamavid.config_to_llamavid(cfg)["mm_projector_type"] == "mlp2x_gelu"


@pytest.mark.slow
def test_llamavid_tokens_and_logits_match_pytorch(llamavid_release):
    folder, _, llm, mm = llamavid_release
    module, params = llamavid.load_llamavid(folder)
    g = torch.Generator().manual_seed(3)
    b, t, k = 2, 3, 8
    visual = torch.randn(b, t, k, 24, generator=g) * 2.0 + 0.5  # raw EVA-like tokens
    ids = torch.randint(1, BERT["vocab"], (b, 5), generator=g)
    qmask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():  # the instruction is repeated for every frame (image_counts path)
        ref = mm.tokens(
            visual.flatten(0, 1), ids.repeat_interleave(t, 0), qmask.repeat_interleave(t, 0)
        ).reshape(b, 2 * t, -1)
    ours = module.apply(
        {"params": params},
        jnp.asarray(visual.numpy()),
        jnp.asarray(ids.numpy()),
        jnp.asarray(qmask.numpy()),
        method=VideoLLM.visual_embeds,
    )
    err = float(np.max(np.abs(np.asarray(ours) - ref.numpy())))
    assert err < TOL, err

    # The whole model: the 2T tokens spliced into the prompt, logits of LLaMA.
    n = 12
    input_ids = torch.randint(3, LLM["vocab_size"], (b, n), generator=g)
    video = torch.zeros(b, n, dtype=torch.bool)
    video[:, 2 : 2 + 2 * t] = True
    with torch.no_grad():
        emb = llm.model.embed_tokens(input_ids)
        emb[video] = ref.reshape(-1, ref.shape[-1])
        ref_logits = llm(inputs_embeds=emb).logits.numpy()
    logits = module.apply(
        {"params": params},
        jnp.asarray(input_ids.numpy()),
        jnp.ones((b, n), bool),
        jnp.asarray(video.numpy()),
        jnp.asarray(visual.numpy()),
        jnp.asarray(ids.numpy()),
        jnp.asarray(qmask.numpy()),
    )["logits"]
    err = float(np.max(np.abs(np.asarray(logits) - ref_logits)))
    assert err < TOL, err


def test_llamavid_refuses_what_the_model_does_not_implement(llamavid_release):
    _, sd, _, _ = llamavid_release
    np_sd = {k: v.numpy() for k, v in sd.items()}
    base = {"bert_type": "qformer_pretrain", **LLM}
    with pytest.raises(ValueError, match="compress_type"):
        llamavid.config_from_llamavid(np_sd, {**base, "compress_type": "grid:4"})
    with pytest.raises(ValueError, match="bert_type"):
        llamavid.config_from_llamavid(np_sd, {**base, "bert_type": "raw_bert"})
    cfg = llamavid.config_from_llamavid(np_sd, base)
    bad = dict(np_sd)
    bad["model.vlm_att_extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointMismatchError, match="vlm_att_extra"):
        llamavid.params_from_llamavid(bad, cfg)
    bad = dict(np_sd)
    bad["model.vlm_att_key_projector.weight"] = np.zeros((24, 23), np.float32)
    with pytest.raises(CheckpointMismatchError, match="key_projector"):
        llamavid.params_from_llamavid(bad, cfg)


# ------------------------------------------------------------------------- Video-LLaMA


class VideoLlamaVideoBranch(nn.Module):
    """The video branch of ``VideoLLAMA`` after the (frozen) image Q-Former."""

    def __init__(self, d: int, max_frame_pos: int, nq: int):
        super().__init__()
        self.video_frame_position_embedding = nn.Embedding(max_frame_pos, d)
        self.video_Qformer = BertLMHeadModel(d=d, heads=d // 64, f=48, n=2, kv_width=d, freq=1)
        self.video_query_tokens = nn.Parameter(0.02 * torch.randn(1, nq, d))
        self.llama_proj = nn.Linear(d, 40)  # not read by the converter

    def forward(self, q_hidden_state):  # [B, T, Q, D] image-query states
        b, t = q_hidden_state.shape[:2]
        pos = self.video_frame_position_embedding(torch.arange(t)[None].expand(b, -1))
        frames = (pos[:, :, None] + q_hidden_state).flatten(1, 2)  # b (t q) h
        queries = self.video_query_tokens.expand(b, -1, -1)
        return self.video_Qformer.bert(None, queries, None, frames)


@pytest.fixture(scope="module")
def video_llama_release(tmp_path_factory):
    torch.manual_seed(4)
    ref = VideoLlamaVideoBranch(d=128, max_frame_pos=8, nq=5).eval()
    _perturb(ref, 5)
    sd = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    sd["audio_query_tokens"] = torch.zeros(1, 2, 128)  # other modules: not read
    path = tmp_path_factory.mktemp("video_llama") / "finetune-vicuna7b-v2.pth"
    torch.save({"model": sd, "config": {"run": {"lr": 1e-4}}, "epoch": 3}, path)
    return str(path), sd, ref


def test_video_llama_round_trip_is_bit_exact(video_llama_release):
    path, sd, _ = video_llama_release
    module, params = video_llama.load_video_qformer(os.path.dirname(path))
    cfg = module.config
    q = cfg.qformer
    assert cfg.max_frames == 8 and not q.text_input
    assert (q.num_hidden_layers, q.cross_attention_frequency, q.num_query_tokens) == (2, 1, 5)
    back = video_llama.params_to_video_llama(params, cfg)
    wanted = {
        k
        for k in sd
        if re.match(r"video_(Qformer|query_tokens|frame_position)", k)
        and not k.endswith("position_ids")
    }
    assert set(back) == wanted
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)


def test_video_llama_video_qformer_matches_pytorch(video_llama_release):
    path, _, ref = video_llama_release
    module, params = video_llama.load_video_qformer(path)
    x = torch.randn(2, 6, 4, 128, generator=torch.Generator().manual_seed(6))  # 6 frames, 4 q
    with torch.no_grad():
        want = ref(x).numpy()
    got = module.apply({"params": params}, jnp.asarray(x.numpy()))["last_hidden_state"]
    err = float(np.max(np.abs(np.asarray(got) - want)))
    assert err < TOL, err
    with pytest.raises(ValueError, match="max_frames"):
        module.apply({"params": params}, jnp.zeros((1, 9, 4, 128)))


def test_video_llama_needs_its_video_branch(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"llama_proj.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointMismatchError, match="video_frame_position_embedding"):
        video_llama.load_video_qformer(str(path))
