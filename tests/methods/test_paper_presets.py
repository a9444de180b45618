"""Paper presets of VA-GPT, VAD-LLaMA and T-VAU: full-size trees, shardings, and the
no-weights exit.

Everything is built under ``jax.eval_shape`` (no parameter memory). The meshes come from each
config's ``mesh`` field on the 8 CPU devices ``tests/conftest.py`` forces.
"""

import io
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import linen as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))

import tvau as tvau_config  # noqa: E402
import vadllama as vadllama_config  # noqa: E402
import vagpt as vagpt_config  # noqa: E402

from vau_jax import sharding  # noqa: E402
from vau_jax.methods import paper  # noqa: E402
from vau_jax.methods.paper import explain_missing_weights  # noqa: E402
from vau_jax.methods.tvau.paper import tvau_abstract_params  # noqa: E402
from vau_jax.methods.vadllama.paper import paper_abstract_params  # noqa: E402
from vau_jax.methods.vagpt.paper import vagpt_abstract_params  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Parameter counts of the public checkpoints (HF models, all tensors of each tower).
VICUNA_7B = 6_738_415_616
DINOV2_L14 = 304_368_640  # Dinov2Model incl. mask token
EVA_VIT_G14 = 985_897_344  # Blip2VisionModel (its all-zero key bias not stored)
# BLIP-2 / InstructBLIP Q-Former (BERT-base, 32 queries, text embeddings) on 1408-wide EVA
# tokens; LLaMA-VID's adds one word embedding ([DEC]: vocabulary 30,523).
BLIP2_QFORMER = 185_683_968
LLAMA_VID_QFORMER = BLIP2_QFORMER + 768
# Video-LLaMA's video Q-Former: HF Blip2QFormerModel(2 layers, cross-attention every layer,
# 768-wide inputs) = 18,905,088 on the meta device, + 32 x 768 video queries.
VIDEO_LLAMA_QFORMER = 18_929_664
# OpenCLIP ViT-H/14 (laion2B) as HF CLIPModel: vision 630,766,080 + text 352,984,064 +
# the two projections (1280 -> 1024, 1024 -> 1024) + the logit scale; OpenCLIP's 986.11M.
CLIP_VIT_H14 = 986_109_441
CONFIGS = {"vagpt": vagpt_config, "vadllama": vadllama_config, "tvau": tvau_config}


def _is_box(x):
    return isinstance(x, nn.LogicallyPartitioned)


def _is_sharding(x):
    return isinstance(x, jax.sharding.NamedSharding)


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(tree)))


def _shard_all(trees, mesh):
    """``{name: (boxes, shardings)}``; asserts every parameter leaf got a ``NamedSharding``."""
    out = {}
    for name, tree in trees.items():
        shardings = sharding.param_shardings(tree, mesh)  # raises on a param without names
        boxes = jax.tree.leaves(tree, is_leaf=_is_box)
        specs = jax.tree.leaves(shardings, is_leaf=_is_sharding)
        assert boxes and all(_is_box(b) for b in boxes), name
        assert len(specs) == len(boxes) == len(jax.tree.leaves(nn.unbox(tree))), name
        assert all(_is_sharding(s) and s.mesh is mesh for s in specs), name
        out[name] = (boxes, specs)
    return out


@pytest.fixture(scope="module")
def vagpt_paper():
    c = vagpt_config.get_config("paper")
    return c, vagpt_abstract_params(c)


def test_vagpt_paper_tree_layout_and_parameter_counts(vagpt_paper):
    """LLaMA-VID's roles: EVA-ViT-g, its Q-Former (+ ``vlm_att_ln``), projectors, Vicuna-7B."""
    c, trees = vagpt_paper
    assert set(trees) == {"vision", "patch_encoder", "vlm", "tetg"}
    vlm = trees["vlm"]
    assert set(vlm) == {
        "qformer",
        "qformer_ln",
        "query_proj",
        "key_proj",
        "context_proj",
        "content_proj",
        "llm",
    }
    assert _count(trees["vision"]) == EVA_VIT_G14
    assert _count(trees["patch_encoder"]) == DINOV2_L14
    assert _count(vlm["llm"]) == VICUNA_7B
    assert _count(vlm["qformer"]) == LLAMA_VID_QFORMER
    # text-conditioned Q-Former: BERT word embeddings (+[DEC]), cross-attention on EVA tokens
    q = nn.unbox(vlm["qformer"])
    assert q["embeddings"]["word_embeddings"]["embedding"].shape == (30523, 768)
    assert q["query_tokens"].shape == (1, 32, 768)
    kv = q["encoder"]["layer_0"]["crossattention"]["attention"]["key"]["kernel"]
    assert kv.shape == (1408, 768)
    assert "crossattention" not in q["encoder"]["layer_1"]  # every 2nd layer (init_bert)
    # LLaMA-VID's projectors (llamavid_arch.py initialize_attention_modules), Dv = 1408:
    # vlm_att_ln (LayerNorm), vlm_att_projector 768 -> Dv, vlm_att_key_projector Dv -> Dv,
    # vlm_att_val_projector Dv -> 4096 (one Linear), mm_projector mlp2x_gelu Dv -> 4096 -> 4096
    dv, h = 1408, c.projector_hidden
    assert h == 4096
    assert _count(vlm["qformer_ln"]) == 2 * dv
    assert _count(vlm["query_proj"]) == 768 * dv + dv
    assert _count(vlm["key_proj"]) == dv * dv + dv
    assert _count(vlm["context_proj"]) == dv * 4096 + 4096
    assert _count(vlm["content_proj"]) == (dv * h + h) + (h * 4096 + 4096)
    # TETG: 3-layer MLP on the 1408-wide EVA class token
    h1, h2 = c.tetg.hidden
    assert _count(trees["tetg"]) == (dv * h1 + h1) + (h1 * h2 + h2) + (h2 + 1)


def test_vagpt_paper_shardings_split_the_7b_llm_over_fsdp(vagpt_paper):
    c, trees = vagpt_paper
    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    mesh = sharding.mesh_from_config(c)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    shards = _shard_all(trees, mesh)
    boxes, specs = shards["vlm"]
    paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(trees["vlm"], _is_box)
    ]
    llm_bytes = split_bytes = 0
    for path, box, s in zip(paths, boxes, specs):
        if not path.startswith("['llm']"):
            continue
        shape = box.value.shape
        llm_bytes += int(np.prod(shape)) * 4
        if int(np.prod(shape)) >= 4096 * 4096:  # every projection, embed_tokens, lm_head
            assert "fsdp" in jax.tree.leaves(tuple(s.spec)), (path, s.spec)
            assert int(np.prod(s.shard_shape(shape))) * 8 == int(np.prod(shape)), path
            split_bytes += int(np.prod(shape)) * 4
    assert llm_bytes == VICUNA_7B * 4
    assert split_bytes / llm_bytes > 0.999  # all but the RMSNorm scales
    # the 32 blocks stacked by the preset's scan_layers: [32, 4096, 4096], the layer axis whole
    q = nn.unbox(trees["vlm"])["llm"]["model"]["layers"]["self_attn"]["q_proj"]["kernel"]
    q_spec = shards["vlm"][1][
        paths.index("['llm']['model']['layers']['self_attn']['q_proj']['kernel']")
    ]
    assert q.shape == (32, 4096, 4096) and q_spec.shard_shape(q.shape) == (32, 512, 4096)
    # frozen encoders are FSDP-split too (their width is the "embed" axis)
    boxes, specs = shards["vision"]
    assert sum(1 for s in specs if "fsdp" in jax.tree.leaves(tuple(s.spec))) > len(specs) // 2


def test_vadllama_paper_trees_counts_and_shardings():
    c = vadllama_config.get_config("paper")
    trees = paper_abstract_params(c)
    assert _count(trees["vision"]) == EVA_VIT_G14
    assert _count(trees["image_qformer"]) == BLIP2_QFORMER  # BLIP-2 Q-Former on EVA tokens
    vador = nn.unbox(trees["vador"])
    # Video-LLaMA's video Q-Former on the image Q-Former's 768-wide queries, its frame positions
    assert _count(vador["video_qformer"]) == VIDEO_LLAMA_QFORMER
    assert vador["frame_position"].shape == (c.frames_per_clip, 768)
    assert sorted(vador["video_qformer"]["encoder"]) == ["layer_0", "layer_1"]
    for layer in vador["video_qformer"]["encoder"].values():
        assert "crossattention" in layer and "intermediate" not in layer  # no text FFN
    mesh = sharding.mesh_from_config(c)
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    shards = _shard_all(trees, mesh)
    # fsdp=1, tensor=1: parameters are replicated, the batch goes over the 8-way data axis
    for _, specs in shards.values():
        assert all(all(a is None for a in s.spec) for s in specs)


def test_vadllama_paper_phases_freeze_the_video_encoder():
    """Phase 1 trains the AP alone on the frozen VE (video Q-Former + frame positions), phase 2
    AP + LTC: the trainer's regex freeze (zero updates, no optimizer state) leaves the rest."""
    from vau_jax.train.optimizer import make_optimizer

    c = vadllama_config.get_config("paper")
    params = nn.unbox(paper_abstract_params(c)["vador"])
    trained = {}
    for name in ("phase1", "phase2"):
        mask = make_optimizer(dict(c[name].optimizer), params).trainable
        trained[name] = sorted(k for k, v in mask.items() if any(jax.tree.leaves(v)))
    assert trained["phase1"] == ["ap"]
    assert trained["phase2"] == ["ap", "ltc"]
    p3 = c.phase3
    assert p3.enabled and p3.batch_size == 2 and p3.steps == 30000 and p3.captions == "uca"


def test_tvau_paper_trees_counts_and_shardings():
    """A 32-block CLIP-family tower with its text tower (OpenCLIP ViT-H/14), the frozen
    LLaMA-VID LVLM (EVA-ViT-g + Vicuna-7B), AHD on blocks 1/8/16/32, RAE to Vicuna's width;
    every leaf gets a NamedSharding on the preset's 8-device mesh."""
    from vau_jax.models.heads.ahd import proportional_taps
    from vau_jax.models.heads.rae import RAEConfig, added_params

    c = tvau_config.get_config("paper")
    trees = tvau_abstract_params(c)
    assert set(trees) == {"clip", "vision", "vlm", "ahd", "rae"}
    clip = nn.unbox(trees["clip"])
    assert len(clip["vision_model"]["encoder"]) == 32 and "text_model" in clip
    assert _count(trees["clip"]) == CLIP_VIT_H14
    assert _count(trees["vision"]) == EVA_VIT_G14
    assert _count(nn.unbox(trees["vlm"])["llm"]) == VICUNA_7B
    assert tuple(c.taps) == (1, 8, 16, 32) == proportional_taps(32)
    # AHD: per tap an MLP 1280 -> mlp_hidden -> 1024 (the text tower's joint width), one
    # weight per tap and the learned temperature
    h = c.ahd.mlp_hidden
    per_tap = (1280 * h + h) + (h * 1024 + 1024)
    assert _count(trees["ahd"]) == 4 * per_tap + 4 + 1
    # RAE reads the frames' own heatmap differences, pooled by means (T-VAU §3.2): none of
    # the tiny preset's readouts (heat level, maxima, segment peaks) is the paper's
    assert (c.rae.heat_frames, c.rae.level) == ("sampled", False)
    assert (c.rae.time_pool, c.rae.space_pool) == ("mean", "mean")
    assert c.rae.order == "after"  # ours, an order the paper does not give
    rae = RAEConfig(4096, tuple(c.rae.channels), c.rae.num_base, 3, c.rae.time_segments)
    assert _count(trees["rae"]) == added_params(rae)
    assert nn.unbox(trees["rae"])["base"].shape == (c.rae.num_base, 4096)
    mesh = sharding.mesh_from_config(c)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    shards = _shard_all(trees, mesh)
    for name in ("clip", "vision", "vlm"):  # frozen towers are FSDP-split too
        boxes, specs = shards[name]
        split = [b for b, s in zip(boxes, specs) if "fsdp" in jax.tree.leaves(tuple(s.spec))]
        assert sum(int(np.prod(b.value.shape)) for b in split) > 0.95 * _count(trees[name]), name


@pytest.mark.parametrize("method", ["vagpt", "vadllama", "tvau"])
def test_explain_missing_weights_names_every_role_and_command(method):
    c = CONFIGS[method].get_config("paper")
    roles = list(c.paper_checkpoints)
    assert roles and set(roles) <= set(paper.sources(method))
    buf = io.StringIO()
    assert explain_missing_weights(c, stream=buf) == 2
    text = buf.getvalue()
    for role in roles:
        assert f"--config.paper_checkpoints.{role}=checkpoints/{role}" in text
        assert f"--local-dir hf/{role}" in text
        assert f"hf/{role}" in text and f"checkpoints/{role}" in text
        repo = paper.sources(method)[role].repo
        assert f"huggingface-cli download {repo} " in text
    assert f"python -m vau_jax.main --config=configs/{method}.py:paper" in text


def test_explain_missing_weights_passes_when_every_role_is_converted(tmp_path):
    c = vagpt_config.get_config("paper")
    for role in c.paper_checkpoints:
        d = tmp_path / role
        d.mkdir()
        (d / "config.json").write_text("{}")
        c.paper_checkpoints[role] = str(d)
    assert explain_missing_weights(c, stream=io.StringIO()) == 0
    c.paper_checkpoints.llm = str(tmp_path / "nowhere")
    buf = io.StringIO()
    assert explain_missing_weights(c, stream=buf) == 2
    assert "Missing: llm." in buf.getvalue()


def test_printed_commands_read_full_models_and_pytorch_releases():
    """`python -m vau_jax.convert` only reads bare HF models; the EVA tower and the image
    Q-Former come out of full BLIP-2 folders, LLaMA-VID / Video-LLaMA out of their PyTorch
    releases (``.bin`` shards, a LAVIS ``.pth``), each through its loader."""
    vagpt, vad = paper.sources("vagpt"), paper.sources("vadllama")
    cmd = paper.convert_command(vagpt["vlm"], "hf/vlm", "checkpoints/vlm")
    assert cmd.startswith('python -c "from vau_jax.convert.llamavid import load_llamavid;')
    assert "load_llamavid('hf/vlm')" in cmd and "save_converted('checkpoints/vlm'" in cmd
    assert '"*.bin"' in " ".join(f'"{p}"' for p in vagpt["vlm"].include)
    for src in (vagpt["vision"], vad["vision"]):
        assert src.loader == "vau_jax.convert.hf_blip2_vision:load_full_model"
    assert vad["video_qformer"].loader == "vau_jax.convert.video_llama:load_video_qformer"
    plain = paper.convert_command(vagpt["patch_encoder"], "hf/p", "checkpoints/p")
    assert plain == "python -m vau_jax.convert --src=hf/p --dst=checkpoints/p"
    buf = io.StringIO()
    explain_missing_weights(vagpt_config.get_config("paper"), stream=buf)
    text = buf.getvalue()
    # the BERT tokenizer is fetched into the release folder, which is then converted as is
    assert "--local-dir hf/vlm/qformer_tokenizer" in text and "hf/vlm_bare" not in text
    assert '--include "*.json" "*.bin" "*.safetensors" "tokenizer.model"' in text


@pytest.mark.parametrize("method", ["vagpt", "vadllama", "tvau"])
def test_main_with_paper_preset_and_no_weights_exits_nonzero(method, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vau_jax.main",
            f"--config=configs/{method}.py:paper",
            f"--workdir={workdir}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]  # the commands:
    assert "huggingface-cli download" not in proc.stderr  # on stdout
    c = CONFIGS[method].get_config("paper")
    for role in c.paper_checkpoints:
        assert f"--config.paper_checkpoints.{role}=checkpoints/{role}" in err[0]
        assert f"--config.paper_checkpoints.{role}=checkpoints/{role}" in proc.stdout
    assert "python -m vau_jax.convert --src=" in proc.stdout
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))
