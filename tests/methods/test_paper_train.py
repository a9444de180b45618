"""The paper presets train: the ``:paper`` code path end to end, at toy sizes.

Scaled-down HF checkpoints of the paper architectures are built with ``transformers`` from
tiny random configs (the same model families as the paper roles), saved with
``save_pretrained`` as the HF downloads are, and converted by running the very commands
``vau_jax.main`` prints for the missing roles (``python -m vau_jax.convert`` and the
``python -c`` loader / prepare lines, executed in-process). SynthVAD is written in the
UCF-Crime layout (FFV1), and ``vau_jax.main.run`` trains and evaluates each ``:paper``
preset with only sizes overridden (steps, batch, frames, frame size, lengths, mesh, folders)
on the 8 forced CPU devices, on a mesh that shards. On a pod only the sizes differ.

Roles: VAD-LLaMA: EVA (read out of a full ``Blip2Model`` folder), the BLIP-2 image Q-Former
(read from the same folder), Video-LLaMA's video Q-Former (a LAVIS ``.pth`` in Video-LLaMA's
key layout, built with the PyTorch reference of ``tests/convert/test_lavis_checkpoints.py``),
a ``LlamaForCausalLM`` for phase 3. VA-GPT: LLaMA-VID's roles: the EVA tower (a full
``Blip2Model`` folder), ``Dinov2Model``, and a LLaMA-VID release (``pytorch_model-*.bin``
shards + index + ``config.json`` in LLaMA-VID's key layout: a ``LlamaForCausalLM`` with the
reference ``vlm_att_*`` / ``mm_projector`` modules, the LLM's byte-level BPE
``tokenizer.json`` trained on the SynthVAD corpus, and the WordPiece ``qformer_tokenizer/``
the printed ``huggingface-cli`` line would fetch). T-VAU: an HF ``CLIPModel`` (vision and
text towers, a byte-level BPE CLIP tokenizer) for AHD, and VA-GPT's EVA and LLaMA-VID roles for
its frozen LVLM; SynthVAD in the UBnormal layout (object masks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shlex
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))

import tvau as tvau_config  # noqa: E402
import vadllama as vadllama_config  # noqa: E402
import vagpt as vagpt_config  # noqa: E402

from vau_jax import main as vau_main  # noqa: E402
from vau_jax.methods import paper  # noqa: E402

pytestmark = pytest.mark.slow

SYNTH = dict(height=64, width=64, fps=8.0, min_seconds=3.0, max_seconds=3.0)
IMAGE = dict(image_size=32, patch_size=8)  # 4 x 4 patch grid at frame_size 32
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
QFORMER = dict(  # the image Q-Former; the video Q-Former shares its width (Video-LLaMA)
    hidden_size=64,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    cross_attention_frequency=1,
    max_position_embeddings=64,
)
# The trained models (Video-LLaMA's video Q-Former, LLaMA-VID's Q-Former, the LLaMAs) have one
# layer: on XLA:CPU every layer adds seconds to each training step's compilation, and the
# stacking of layers is covered by the converters' parity tests. LAVIS BERT Q-Formers have
# 64-wide heads (the converters read heads = width / 64).
BERT = dict(d=64, heads=1, f=64, n=1, freq=1, positions=64)
QFORMER_VOCAB = 256
LLM = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


# ------------------------------------------------------------------ HF folders and tokenizers


def _corpus() -> list[str]:
    from vau_jax.data import synthvad
    from vau_jax.data.corpus import synthvad_corpus
    from vau_jax.data.templates import SYSTEM_PROMPT

    cfg = dataclasses.replace(synthvad.SynthConfig(), height=64, width=64)
    return synthvad_corpus(6, cfg) + [SYSTEM_PROMPT, "USER: ASSISTANT:"]


def _llm_tokenizer(lines: list[str]) -> object:
    """A byte-level BPE ``tokenizer.json`` (any text encodes) with LLaMA's special ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=LLM["vocab_size"],
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _bert_tokenizer(lines: list[str]) -> object:
    """A WordPiece ``tokenizer.json`` sized to the Q-Former's vocabulary (BERT's layout)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=QFORMER_VOCAB, special_tokens=special, show_progress=False
    )
    tk.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _save(model: object, path: str) -> None:
    model.eval().save_pretrained(path, safe_serialization=True)


def _llm_folder(folder: str, llm_tok: object) -> object:
    llm = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLM))
    _save(llm, folder)
    llm_tok.save_pretrained(folder)
    return llm


def _hf_vadllama(hf: str) -> None:
    """``hf/<role>`` as downloaded: BLIP-2 (EVA + image Q-Former), Video-LLaMA's ``.pth``
    and the phase-3 LLaMA."""
    from tests.convert.test_lavis_checkpoints import VideoLlamaVideoBranch

    torch.manual_seed(0)
    from tests.convert.hf_testing import TINY_OPT

    opt = dict(TINY_OPT)
    blip2 = transformers.Blip2Model(
        transformers.Blip2Config(
            vision_config={**TOWER, **IMAGE},
            qformer_config={**QFORMER, "encoder_hidden_size": TOWER["hidden_size"]},
            text_config=opt,
            num_query_tokens=8,
        )
    )
    for role in ("vision", "image_qformer"):  # one repository serves both roles
        _save(blip2, os.path.join(hf, role))
    video = VideoLlamaVideoBranch(d=QFORMER["hidden_size"], max_frame_pos=32, nq=8)
    os.makedirs(os.path.join(hf, "video_qformer"))
    torch.save(
        {"model": video.state_dict(), "epoch": 1},
        os.path.join(hf, "video_qformer", "finetune-vicuna7b-v2.pth"),
    )
    _llm_folder(os.path.join(hf, "llm"), _llm_tokenizer(_corpus()))


def _hf_vagpt(hf: str) -> None:
    """``hf/<role>`` as downloaded: a BLIP-2 (its EVA tower), DINOv2, and a LLaMA-VID
    release with its tokenizer (+ the BERT tokenizer in ``qformer_tokenizer/``)."""
    from tests.convert.test_lavis_checkpoints import LlamaVidMultimodal

    torch.manual_seed(1)
    lines = _corpus()
    llm_tok, bert_tok = _llm_tokenizer(lines), _bert_tokenizer(lines)
    blip2 = transformers.Blip2Model(
        transformers.Blip2Config(
            vision_config={**TOWER, **IMAGE},
            qformer_config={**QFORMER, "encoder_hidden_size": TOWER["hidden_size"]},
            text_config={"model_type": "opt", "vocab_size": 64, "hidden_size": 32,
                         "ffn_dim": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                         "word_embed_proj_dim": 32, "max_position_embeddings": 64},
            num_query_tokens=8,
        )
    )  # fmt: skip
    _save(blip2, os.path.join(hf, "vision"))
    dino = transformers.Dinov2Config(
        hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, **IMAGE
    )
    _save(transformers.Dinov2Model(dino), os.path.join(hf, "patch_encoder"))
    folder = os.path.join(hf, "vlm")
    llm = _llm_folder(folder, llm_tok)  # safetensors: replaced by the .bin release below
    for name in os.listdir(folder):
        if name.endswith((".safetensors", ".safetensors.index.json")):
            os.remove(os.path.join(folder, name))
    mm = LlamaVidMultimodal(
        dv=TOWER["hidden_size"], d_llm=LLM["hidden_size"], nq=8, vocab=QFORMER_VOCAB, **BERT
    )
    sd = dict(llm.state_dict())
    sd.update({f"model.{k}": v for k, v in mm.state_dict().items()})
    keys = sorted(sd)
    shards = {f"pytorch_model-0000{i + 1}-of-00002.bin": keys[i::2] for i in range(2)}
    for name, part in shards.items():
        torch.save({k: sd[k].contiguous() for k in part}, os.path.join(folder, name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"weight_map": weight_map}, f)
    config = {k: v for k, v in llm.config.to_dict().items() if k != "model_type"}
    config.update(
        model_type="llava",
        mm_hidden_size=TOWER["hidden_size"],
        mm_projector_type="mlp2x_gelu",
        bert_type="qformer_pretrain",
        num_query=8,
        compress_type="mean",
    )
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    # what the printed `huggingface-cli download google-bert/bert-base-uncased` line fetches
    bert_tok.save_pretrained(os.path.join(folder, "qformer_tokenizer"))


def _clip_tokenizer(lines: list[str]) -> object:
    """A byte-level BPE CLIP tokenizer (``<|startoftext|>`` / ``<|endoftext|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def _hf_tvau(hf: str) -> None:
    """``hf/clip``: an HF ``CLIPModel`` (4-block vision tower, text tower) and its tokenizer;
    ``hf/vision`` and ``hf/vlm``: VA-GPT's EVA and LLaMA-VID roles (the frozen LVLM)."""
    _hf_vagpt(hf)
    torch.manual_seed(2)
    tok = _clip_tokenizer(_corpus() + list(tvau_config.get_config("paper").abnormal_prompts))
    ids = {k: tok.convert_tokens_to_ids(t) for k, t in (("bos", "<|startoftext|>"),
                                                          ("eos", "<|endoftext|>"))}  # fmt: skip
    clip = transformers.CLIPModel(
        transformers.CLIPConfig(
            vision_config={**TOWER, **IMAGE, "num_hidden_layers": 4, "hidden_act": "gelu"},
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 4,
                "max_position_embeddings": 24,
                "bos_token_id": ids["bos"],
                "eos_token_id": ids["eos"],
                "pad_token_id": ids["eos"],
            },
            projection_dim=16,
        )
    )
    _save(clip, os.path.join(hf, "clip"))
    tok.save_pretrained(os.path.join(hf, "clip"))


# ------------------------------------------------------------- the printed commands, run


def _printed_commands(config: object) -> list[str]:
    """The conversion lines ``vau_jax.main`` prints for a preset with no checkpoint."""
    buf = io.StringIO()
    assert paper.explain_missing_weights(config, stream=buf) == 2
    lines = [line.strip() for line in buf.getvalue().splitlines()]
    return [line for line in lines if line.startswith("python ")]


def _run(line: str) -> None:
    """One printed ``python -m vau_jax.convert ...`` / ``python -c "..."`` line, in-process."""
    argv = shlex.split(line)
    if argv[:3] == ["python", "-m", "vau_jax.convert"]:
        from vau_jax.convert.__main__ import convert

        args = dict(a.split("=", 1) for a in argv[3:])
        convert(args["--src"], args["--dst"])
    elif argv[:2] == ["python", "-c"] and len(argv) == 3:
        exec(compile(argv[2], "<printed command>", "exec"), {})
    else:
        raise AssertionError(f"unexpected printed command: {line}")


@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _converted(method: str, make_hf, root: str) -> dict[str, str]:
    """Builds ``root/hf/<role>`` and runs the printed commands in ``root``; returns role ->
    the converted folder (absolute)."""
    modules = {"vagpt": vagpt_config, "vadllama": vadllama_config, "tvau": tvau_config}
    config = modules[method].get_config("paper")
    os.makedirs(root)
    with _cwd(root):
        make_hf("hf")
        for line in _printed_commands(config):
            _run(line)
    return {role: os.path.join(root, "checkpoints", role) for role in config.paper_checkpoints}


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> str:
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.data.synthvad.layouts import write_layout

    root = str(tmp_path_factory.mktemp("paper") / "ucf_crime")
    meta = write_layout(root, "ucf_crime", {"train": 6, "test": 4}, SynthConfig(**SYNTH), "ffv1")
    test = [v for v in meta["videos"] if v["split"] == "test"]
    assert {bool(v["intervals_seconds"]) for v in test} == {True, False}  # both AUCs defined
    return root


def _paper_config(module: object, checkpoints: dict[str, str], tmp: str, ucf: str) -> object:
    """The ``:paper`` preset, locked (so only existing fields are overridden), pointed at the
    converted checkpoints and the data folders."""
    c = module.get_config("paper")
    c.lock()
    for role, path in checkpoints.items():
        c.paper_checkpoints[role] = path
    c.data_dir = os.path.join(tmp, "data")
    c.dataset_dir = ucf
    c.frame_size = IMAGE["image_size"]
    c.report_videos = 1
    return c


def _check_run(workdir: str, data_dir: str, stores: list[str], steps: list[int]) -> dict:
    """Features extracted, one checkpoint at the end of every stage, ``metrics.json``."""
    names = os.listdir(os.path.join(data_dir, "features"))
    for store in stores:
        assert any(n.startswith(store) for n in names), (store, names)
    saved = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert set(steps) <= set(saved), saved
    with open(os.path.join(workdir, "metrics.json")) as f:
        return json.load(f)


# --------------------------------------------------------------------------------- tests


def test_vadllama_paper_preset_trains_from_converted_checkpoints(tmp_path, ucf_root, caplog):
    ck = _converted("vadllama", _hf_vadllama, str(tmp_path / "weights"))
    c = _paper_config(vadllama_config, ck, str(tmp_path), ucf_root)
    c.frames_per_clip = 8
    c.batch_size = 4
    c.encoder_batch = 16
    c.phase1.steps = c.phase2.steps = 2
    c.phase1.optimizer.warmup_steps = c.phase2.optimizer.warmup_steps = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 2
    p3 = c.phase3  # the paper's phase 3 (Vicuna role, batch 2, UCA captions), 2 steps
    p3.steps, p3.optimizer.warmup_steps = 2, 1
    p3.eval_batch_size, p3.llm_pretrain.max_answer = 4, 12

    # A missing role still stops before any work, with its conversion command.
    c.paper_checkpoints.video_qformer = ""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert vau_main.run(c, str(tmp_path / "none"), "train_and_eval") == 2
    assert "--config.paper_checkpoints.video_qformer=" in err.getvalue()
    assert not os.path.exists(tmp_path / "none")
    c.paper_checkpoints.video_qformer = ck["video_qformer"]

    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="absl"):
        assert vau_main.run(c, workdir, "train_and_eval") == 0
    # phase 1 starts from Video-LLaMA's video Q-Former and frame positions, nothing re-made
    assert "loaded pretrained ['video_qformer']" in caplog.text
    assert "loaded pretrained frame positions (8, 64)" in caplog.text
    assert "fresh initialisation" not in caplog.text
    m = _check_run(workdir, c.data_dir, ["ucf_crime-vadllama-"], [2, 4])
    for key in ("AUC_O", "AUC_A", "AUC_O_phase1", "AUC_A_phase1"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    assert m["test_videos"] == 4
    # the VE stayed frozen through phases 1 and 2: the final video Q-Former is the converted one
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.inference import load_run

    run = load_run(workdir)
    _, converted = load_converted(ck["video_qformer"])
    final = jax.device_get(run.params["video_qformer"])
    jax.tree.map(np.testing.assert_array_equal, final, converted["qformer"])
    assert 0.0 <= m["phase3_yes_no_accuracy"] <= 1.0, m


def test_vagpt_paper_preset_trains_from_converted_checkpoints(tmp_path, ucf_root, caplog):
    ck = _converted("vagpt", _hf_vagpt, str(tmp_path / "weights"))
    assert os.path.isfile(os.path.join(ck["vlm"], "tokenizer.json"))
    assert os.path.isfile(os.path.join(ck["vlm"], "qformer_tokenizer", "tokenizer.json"))
    c = _paper_config(vagpt_config, ck, str(tmp_path), ucf_root)
    c.frames_per_video = 4
    c.max_length = 480  # the longest row: ~410 tokens
    c.max_query_length = 32
    c.batch_size = 8
    c.questions_per_test_video = 1
    c.tetg.steps, c.tetg.batch_size = 4, 8
    c.stage1.steps = c.stage2.steps = 2
    c.stage1.grad_accum_steps = c.stage2.grad_accum_steps = 1  # the paper's 16 need >= 16 rows
    c.stage1.optimizer.warmup_steps = c.stage2.optimizer.warmup_steps = 1
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 4, 1
    c.cross_domain.num_test_videos = 4

    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="absl"):
        assert vau_main.run(c, workdir, "train_and_eval") == 0
    # stage 1 starts from every part of the converted LLaMA-VID; nothing is re-initialised
    parts = ["content_proj", "context_proj", "key_proj", "llm", "qformer", "qformer_ln"]
    assert f"loaded pretrained {sorted(parts + ['query_proj'])}" in caplog.text
    assert "fresh initialisation" not in caplog.text
    stores = [f"ucf_crime-vagpt-{name}-" for name in ("cls", "visual", "dino")]
    m = _check_run(workdir, c.data_dir, stores, [2, 4])
    assert os.path.isfile(os.path.join(workdir, "metrics_stage1.json"))
    for key in ("total_acc", "temporal_acc", "tetg_frame_auc", "total_acc_stage1"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    assert m["questions"] == 4


def test_tvau_paper_preset_trains_from_converted_checkpoints(tmp_path, caplog):
    """AHD on the converted CLIP's taps and prompt embeddings, RAE on the frozen converted
    LLaMA-VID reading its own EVA tokens; SynthVAD in the UBnormal layout."""
    from vau_jax.data.synthvad import SynthConfig
    from vau_jax.data.synthvad.layouts import write_layout

    ck = _converted("tvau", _hf_tvau, str(tmp_path / "weights"))
    assert sorted(ck) == ["clip", "vision", "vlm"]
    assert os.path.isfile(os.path.join(ck["clip"], "tokenizer.json"))
    root = str(tmp_path / "ubnormal")
    meta = write_layout(
        root, "ubnormal", {"train": 4, "test": 3, "validation": 2}, SynthConfig(**SYNTH), "ffv1"
    )
    for split in ("train", "test"):
        got = {bool(v["intervals_seconds"]) for v in meta["videos"] if v["split"] == split}
        assert got == {True, False}, split  # masks to learn from, both AUC classes
    c = _paper_config(tvau_config, ck, str(tmp_path), root)
    c.taps = ()  # the paper's 1/8/16/32 of 32, proportionally: 1/2/4 on the 4-block tower
    c.frames_per_video = 4
    c.ahd.frames_per_video = c.ahd.anomalous_frames = 4
    c.ahd.batch_size = c.rae.batch_size = 8  # the 8 data x fsdp devices
    c.rae_narration.grad_accum_steps = c.rae_anomaly.grad_accum_steps = 1
    c.rae.channels = (8, 8)
    for stage in (c.ahd_stage, c.rae_narration, c.rae_anomaly):
        stage.steps, stage.optimizer.warmup_steps = 2, 1
    c.rae_max_length = 480
    c.max_query_length = 32
    c.max_answer_tokens = 6
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 4, 1

    workdir = str(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger="absl"):
        assert vau_main.run(c, workdir, "train_and_eval") == 0
    assert "loaded pretrained ['vlm']" in caplog.text
    assert "fresh initialisation" not in caplog.text
    stores = ["ubnormal-tvau-", "ubnormal-tvau-visual-"]  # CLIP taps; the LVLM's EVA tokens
    m = _check_run(workdir, c.data_dir, stores, [4, 6])  # the last 2 of 3 stage ends are kept
    for key in ("micro_auc", "macro_auc", "rbdc", "tbdc", "bleu4_target", "yesno_acc"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    n_test = sum(v["n_frames"] for v in meta["videos"] if v["split"] == "test")
    assert m["test_frames"] == n_test
    # the LVLM stayed frozen: its final weights are the converted LLaMA-VID's
    from vau_jax.convert.checkpoint import load_converted
    from vau_jax.inference import load_run

    run = load_run(workdir)
    _, converted = load_converted(ck["vlm"])
    final = jax.device_get(run.params["vlm"])
    # (the preset scans the LLM's blocks: the converted ones restacked to compare)
    from vau_jax.models.llama_layout import match_layer_layout

    assert "layers" in final["llm"]["model"]
    want = match_layer_layout(converted["llm"], final["llm"])
    jax.tree.map(np.testing.assert_array_equal, final["llm"], want)
    jax.tree.map(np.testing.assert_array_equal, final["qformer"], converted["qformer"])
