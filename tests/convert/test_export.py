"""``python -m vau_jax.convert --export``: a trained run -> HF-layout safetensors + config.

Fast: the writer / loader on hand-made plans (bit-exact round trip, bf16 and scanned layers,
the partition check, a damaged file, atomic writes) and the user errors. Slow (the tiny runs
of ``tests/conftest.py``): every method's export reloads bit-exactly to ``load_run``'s
params, the HF folders load with ``load_hf`` and ``transformers`` (logits / hidden states
equal ours at tight tolerance), a phase-3 VAD-LLaMA checkpoint, the CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import linen as nn

from vau_jax.convert import export_parts as EP
from vau_jax.convert.export import (
    MANIFEST,
    export_run,
    load_export,
    read_manifest,
    write_export,
)
from vau_jax.convert.export_parts import Part, Plan, check_partition, same_bits
from vau_jax.inference import RunError
from vau_jax.models.llama import LlamaConfig, LlamaForCausalLM, dummy_inputs
from vau_jax.tree import CheckpointMismatchError, flatten, to_numpy_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_LLAMA = LlamaConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def _llama(cfg: LlamaConfig, seed: int = 0):
    """Random params of ``cfg`` (numpy), perturbed so no leaf is a constant."""
    args, kwargs = dummy_inputs(cfg)
    params = nn.unbox(LlamaForCausalLM(cfg).init(jax.random.key(seed), *args, **kwargs)["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda x: (np.asarray(x, np.float32) + 0.01 * rng.normal(size=x.shape)).astype(x.dtype),
        to_numpy_tree(params),
    )


def _assert_same_trees(want, got):
    assert sorted(want) == sorted(got)
    for name in want:
        fw, fg = flatten(want[name]), flatten(got[name])
        assert sorted(fw) == sorted(fg), name
        for k in fw:
            assert same_bits(fw[k], fg[k]), f"{name}/{k}"


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.strip().splitlines() if ln.strip()]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "vau_jax.convert", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ------------------------------------------------------------------------------ fast


def _hand_plan(scan: bool = False, dtype: str = "float32") -> Plan:
    """A VideoLLM-like tree: an HF LLaMA at ``llm`` and a head with a 0-d, an int and a
    float32 leaf beside it, in ``dtype``."""
    cfg = dataclasses.replace(TINY_LLAMA, scan_layers=scan, param_dtype=dtype)
    llm = _llama(cfg)
    head = {
        "proj": {
            "kernel": np.arange(6, dtype=np.float32).reshape(2, 3).astype(dtype),
            "bias": np.array([-0.0, 1.5, 2.0], np.float32),  # -0.0: bits, not just values
        },
        "scale": np.float32(0.25) * np.ones((), np.float32),
        "index": np.arange(4, dtype=np.int32),
    }
    tree = {"llm": llm, **head}
    parts = [
        Part("llm", "params", ("llm",), llm, cfg, hf=True),
        Part("head", "params", (), head, cfg, extra={"note": "any JSON"}),
    ]
    return Plan(parts, {"params": tree})


@pytest.mark.slow
@pytest.mark.parametrize("scan,dtype", [(False, "float32"), (True, "bfloat16")])
def test_hand_made_plan_round_trips_bit_exactly(tmp_path, scan, dtype):
    from vau_jax.convert import load_hf

    plan = _hand_plan(scan, dtype)
    dst = tmp_path / "export"
    manifest = write_export(str(dst), plan, {"method": "hand", "step": 3})
    assert sorted(os.listdir(dst)) == ["export.json", "head", "llm"]
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary folder left behind
    _assert_same_trees(plan.trees, load_export(str(dst)))
    assert read_manifest(str(dst)) == manifest
    llm, head = manifest["parts"]
    assert llm["format"] == "hf:llama" and head["format"] == "vau_jax"
    assert llm["dtype"] == dtype and head["dtype_exceptions"]  # the int32 / float32 leaves
    assert llm["params"] == sum(np.size(v) for v in flatten(plan.trees["params"]["llm"]).values())
    meta = json.loads((dst / "head" / "config.json").read_text())
    assert meta["library"] == "vau_jax" and meta["config_class"] == "LlamaConfig"
    from safetensors.numpy import load_file

    assert sorted(load_file(str(dst / "head" / "model.safetensors"))) == [
        "index",
        "proj.bias",
        "proj.kernel",
        "scale",
    ]
    # The HF folder on its own: load_hf gives the per-layer layout of the same weights.
    _, params = load_hf(str(dst / "llm"))
    want = flatten(plan.trees["params"]["llm"])
    for k, v in flatten(params).items():
        if scan and "/layers_" in k:
            i = int(k.split("/layers_")[1].split("/")[0])
            ref = want[k.replace(f"/layers_{i}/", "/layers/")][i]
        else:
            ref = want[k]
        np.testing.assert_array_equal(np.asarray(v, np.float32), np.asarray(ref, np.float32))


def test_partition_check_names_missing_and_doubled_leaves():
    plan = _hand_plan()
    llm_only = Plan(plan.parts[:1], plan.trees)
    with pytest.raises(ValueError, match=r"missing \[.*'proj/bias'"):
        check_partition(llm_only)
    twice = Plan([*plan.parts, Part("again", "params", (), {"scale": 1.0}, None)], plan.trees)
    with pytest.raises(ValueError, match=r"held twice \['scale \(head, again\)'\]"):
        check_partition(twice)


def test_damaged_file_and_not_an_export_are_named(tmp_path):
    dst = tmp_path / "export"
    write_export(str(dst), _hand_plan(), {})
    weights = dst / "head" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatchError, match=re.escape(f"{weights}: sha256 differs")):
        load_export(str(dst))
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: no export.json")):
        load_export(str(tmp_path))


def test_refuses_a_non_empty_dst_and_leaves_nothing_on_failure(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep")
    with pytest.raises(FileExistsError, match=re.escape(f"{full}: exists and is not empty")):
        write_export(str(full), _hand_plan(), {})
    with pytest.raises(FileExistsError, match=re.escape(f"{full}: exists and is not empty")):
        export_run(str(tmp_path / "nope"), str(full))  # before the run is even looked at
    plan = _hand_plan()
    bad = Part("bad", "other", (), {"a.b": np.zeros(2, np.float32)}, None)
    with pytest.raises(ValueError, match=r"part bad: parameter names with '\.'"):
        write_export(str(tmp_path / "new"), Plan([*plan.parts, bad], plan.trees), {})
    assert sorted(os.listdir(tmp_path)) == ["full"]  # neither new/ nor a temporary folder


def test_not_a_run_is_a_run_error_naming_the_path(tmp_path):
    with pytest.raises(RunError, match="^" + re.escape(f"{tmp_path / 'nope'}: no such run folder")):
        export_run(str(tmp_path / "nope"), str(tmp_path / "a"))
    with pytest.raises(
        RunError, match="^" + re.escape(f"{tmp_path}/config.json: missing; not a run folder")
    ):
        export_run(str(tmp_path), str(tmp_path / "b"))
    (tmp_path / "config.json").write_text(json.dumps({"method": "vadllama"}))
    with pytest.raises(RunError, match="checkpoints: no checkpoint; train first"):
        export_run(str(tmp_path), str(tmp_path / "c"))


def test_cli_export_of_a_non_run_is_one_line_exit_2(tmp_path):
    r = _cli("--export", f"--src={tmp_path}", f"--dst={tmp_path / 'out'}")
    assert r.returncode == 2
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert f"{tmp_path}/config.json: missing; not a run folder" in lines[0]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ tiny runs


def _encoders(method) -> dict:
    out = {}
    for role, enc in dict(getattr(method, "encoders", None) or {}).items():
        out[role] = enc
    for attr, role in (("encoder", "frames"), ("visual_encoder", "visual")):
        if getattr(method, attr, None) is not None:
            out[role] = getattr(method, attr)
    return out


EXPECTED_PARTS = {
    "vagpt": {
        "llm": "hf:llama",
        "qformer": "hf:instructblip_qformer",
        "video_llm": "vau_jax",
        "tetg": "vau_jax",
        "encoder_cls_visual": "hf:clip",
        "encoder_dino": "hf:dinov2",
    },
    "vadllama": {
        "video_qformer": "hf:blip_2_qformer",
        "vador": "vau_jax",
        "encoder_frames": "hf:clip",
    },
    "tvau": {
        "ahd": "vau_jax",
        "rae": "vau_jax",
        "llm": "hf:llama",
        "qformer": "hf:instructblip_qformer",
        "video_llm": "vau_jax",
        "encoder_frames": "hf:clip",
    },
}


@pytest.mark.slow
@pytest.mark.tiny_run  # reads the run through request.getfixturevalue
@pytest.mark.parametrize("method", ["vagpt", "vadllama", "tvau"])
def test_every_method_exports_and_reloads_bit_exactly(request, method, tmp_path):
    import hashlib

    import vau_jax
    from vau_jax.convert import load_hf

    workdir = request.getfixturevalue(f"{method}_run")  # only this method's tiny run
    run = vau_jax.load_run(workdir)
    dst = tmp_path / method
    summary = export_run(workdir, str(dst))
    assert summary["parts"] == EXPECTED_PARTS[method]
    manifest = read_manifest(str(dst))
    assert (manifest["method"], manifest["step"], manifest["stage"]) == (
        method,
        run.step,
        run.stage,
    )
    assert manifest["source"] == os.path.abspath(workdir)
    assert "config.json" in os.listdir(dst / "run")

    trees = load_export(str(dst))
    want = {"params": to_numpy_tree(run.params)}
    if method == "vagpt":
        want["tetg"] = to_numpy_tree(run.method.tetg_params)
    for part in manifest["parts"]:
        if part["tree"].startswith("encoder_"):
            roles = part["extra"]["roles"]
            want[part["tree"]] = to_numpy_tree(_encoders(run.method)[roles[0]].params)
    _assert_same_trees(want, trees)

    for part in manifest["parts"]:
        folder = dst / part["name"]
        weights = folder / "model.safetensors"
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == part["sha256"]
        meta = json.loads((folder / "config.json").read_text())
        if part["format"] == "vau_jax":
            assert meta["library"] == "vau_jax" and meta["config"]
            continue
        assert meta["model_type"] == part["format"][3:]
        _, params = load_hf(str(folder))  # the public loader, on the folder alone
        sub = EP.subtree(trees[part["tree"]], tuple(part["path"]))
        fw, fg = flatten(sub), flatten(params)
        assert sorted(fw) == sorted(fg), part["name"]
        assert all(same_bits(fw[k], fg[k]) for k in fw), part["name"]
    for name in ("tetg", "ahd", "rae"):  # the run-config section beside the head
        if name in EXPECTED_PARTS[method]:
            meta = json.loads((dst / name / "config.json").read_text())
            assert meta["run_config"] == json.loads(run.config[name].to_json())


@pytest.mark.slow
@pytest.mark.parity
def test_hf_folders_match_transformers(vagpt_run, tmp_path):
    """The exported LLaMA through ``AutoModelForCausalLM`` and the Q-Formers through
    ``InstructBlipQFormerModel`` / ``Blip2QFormerModel`` give our outputs, computed with
    the run's own modules and params."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import vau_jax
    from vau_jax.data.tokenizer import load_tokenizer
    from vau_jax.models.qformer import QFormer

    run = vau_jax.load_run(vagpt_run)
    dst = tmp_path / "vagpt"
    export_run(vagpt_run, str(dst), encoders=False)
    assert "encoder_dino" not in os.listdir(dst)

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(dst / "llm"), dtype=torch.float32)
    hf = hf.eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    cfg = run.method.model.config.llm
    ids = np.random.RandomState(0).randint(0, cfg.vocab_size, (2, 11))
    mask = np.ones((2, 11), np.int64)
    mask[1, :3] = 0  # left padding
    pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
    with torch.no_grad():
        ref = hf(
            torch.tensor(ids), attention_mask=torch.tensor(mask), position_ids=torch.tensor(pos)
        ).logits.numpy()
    ours = LlamaForCausalLM(cfg).apply({"params": run.params["llm"]}, ids, attention_mask=mask)
    valid = mask.astype(bool)
    err = float(np.abs(np.asarray(ours["logits"])[valid] - ref[valid]).max())
    print(f"llm logits max abs err {err:.3g} (|logits| <= {np.abs(ref).max():.3g})")
    assert err <= 2e-6  # measured 6.0e-7 (|logits| <= 1.24, left-padded, AVX2 EPYC, float32)

    tok = load_tokenizer(str(dst / "llm"))
    text = "a person is running near the gate"
    assert tok.encode(text) == run.method.tok.encode(text)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (
        run.method.tok.bos_id,
        run.method.tok.eos_id,
        run.method.tok.pad_id,
    )

    qcfg = run.method.model.config.qformer
    hq = transformers.InstructBlipQFormerModel.from_pretrained(
        str(dst / "qformer"), dtype=torch.float32
    ).eval()
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 5, qcfg.encoder_hidden_size, generator=g)
    qids = torch.randint(1, qcfg.vocab_size, (2, 6), generator=g)
    query = np.asarray(run.params["qformer"]["query_tokens"])
    with torch.no_grad():
        ref = hq(
            input_ids=qids,
            attention_mask=torch.ones(2, qcfg.num_query_tokens + 6, dtype=torch.long),
            query_embeds=torch.from_numpy(query.copy()).expand(2, -1, -1),
            encoder_hidden_states=image,
        ).last_hidden_state.numpy()
    out = QFormer(qcfg).apply(
        {"params": run.params["qformer"]},
        image.numpy(),
        input_ids=qids.numpy(),
        attention_mask=np.ones((2, 6)),
    )
    err = float(np.abs(np.asarray(out["last_hidden_state"]) - ref).max())
    print(f"instructblip q-former max abs err {err:.3g} (|h| <= {np.abs(ref).max():.3g})")
    assert err <= 5e-6  # measured 9.5e-7 (|h| <= 4.1)


@pytest.mark.slow
@pytest.mark.parity
def test_vador_qformer_matches_transformers(vadllama_run, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import vau_jax
    from vau_jax.models.qformer import QFormer

    run = vau_jax.load_run(vadllama_run)
    dst = tmp_path / "vadllama"
    export_run(vadllama_run, str(dst), encoders=False)
    qcfg = run.method.vcfg.qformer
    hq = transformers.Blip2QFormerModel.from_pretrained(
        str(dst / "video_qformer"), dtype=torch.float32
    ).eval()
    image = torch.randn(2, 7, qcfg.encoder_hidden_size, generator=torch.Generator().manual_seed(1))
    query = np.asarray(run.params["video_qformer"]["query_tokens"])
    with torch.no_grad():
        ref = hq(
            query_embeds=torch.from_numpy(query.copy()).expand(2, -1, -1),
            encoder_hidden_states=image,
        ).last_hidden_state.numpy()
    out = QFormer(qcfg).apply({"params": run.params["video_qformer"]}, image.numpy())
    err = float(np.abs(np.asarray(out["last_hidden_state"]) - ref).max())
    print(f"blip-2 q-former max abs err {err:.3g} (|h| <= {np.abs(ref).max():.3g})")
    assert err <= 5e-6  # measured 9.5e-7 (|h| <= 2.9)


@pytest.mark.slow
def test_phase3_checkpoint_is_exported_with_its_llm(vadllama_run, tmp_path, monkeypatch):
    """A VAD-LLaMA run with a phase-3 checkpoint: adaptor + LLM exported, the frozen VADor
    linked to the run's params (or stored again when it differs)."""
    import vau_jax
    from vau_jax.methods.vadllama.phase3 import ChatConfig
    from vau_jax.train.checkpoint import Checkpointer

    work = tmp_path / "run"
    shutil.copytree(vadllama_run, work, ignore=shutil.ignore_patterns("phase3", "*.lock"))
    run = vau_jax.load_run(str(work))
    vador = to_numpy_tree(run.params)
    llm_cfg = dataclasses.replace(TINY_LLAMA, param_dtype="bfloat16")
    width = 2 * ChatConfig(run.method.vcfg, llm_cfg).vador.qformer.hidden_size
    rng = np.random.default_rng(0)
    adaptor = {
        "kernel": rng.normal(size=(width, llm_cfg.hidden_size)).astype(np.float32),
        "bias": rng.normal(size=(llm_cfg.hidden_size,)).astype(np.float32),
    }
    monkeypatch.setattr(EP, "phase3_llm", lambda config: (llm_cfg, None))  # no tiny LLM run

    def fake_phase3(p3_vador, step):
        p3 = {"vador": p3_vador, "adaptor": adaptor, "llm": _llama(llm_cfg, seed=step)}
        ck = Checkpointer(str(work / "phase3" / "checkpoints"), async_save=False)
        ck.save(step, {"params": p3, "step": jnp.int32(step)}, {"stage_index": 0})
        ck.close()
        return p3

    p3 = fake_phase3(vador, 4)
    dst = tmp_path / "export"
    summary = export_run(str(work), str(dst))
    assert summary["parts"]["phase3_adaptor"] == "vau_jax"
    assert summary["parts"]["phase3_llm"] == "hf:llama"
    manifest = read_manifest(str(dst))
    assert manifest["links"] == [
        {"tree": "phase3", "path": ["vador"], "source_tree": "params", "source_path": []}
    ]
    trees = load_export(str(dst))
    _assert_same_trees({"params": vador, "phase3": p3}, {k: trees[k] for k in ("params", "phase3")})

    changed = jax.tree.map(lambda x: x + np.asarray(1, x.dtype), vador)
    p3 = fake_phase3(changed, 5)  # a newer step whose VADor differs: stored as its own part
    export_run(str(work), str(tmp_path / "export2"), encoders=False)
    trees = load_export(str(tmp_path / "export2"))
    assert "phase3_vador" in {p["name"] for p in read_manifest(str(tmp_path / "export2"))["parts"]}
    _assert_same_trees({"params": vador, "phase3": p3}, trees)


@pytest.mark.slow
def test_cli_exports_a_run_and_refuses_to_overwrite(vadllama_run, tmp_path):
    dst = tmp_path / "shared"
    r = _cli("--export", f"--src={vadllama_run}", f"--dst={dst}", "--noencoders")
    assert r.returncode == 0, r.stderr
    assert f"wrote {dst}" in r.stdout
    manifest = json.loads((dst / MANIFEST).read_text())
    assert [p["name"] for p in manifest["parts"]] == ["video_qformer", "vador"]
    again = _cli("--export", f"--src={vadllama_run}", f"--dst={dst}")
    assert again.returncode == 2
    lines = _error_lines(again.stderr)
    assert len(lines) == 1 and f"error: {dst}: exists and is not empty" in lines[0]


def test_bf16_leaves_survive_safetensors(tmp_path):
    """The numpy safetensors API keeps bfloat16 (the paper presets' params)."""
    from safetensors.numpy import load_file, save_file

    x = np.asarray([1.0, -0.0, 3.140625], ml_dtypes.bfloat16)
    save_file({"x": x}, str(tmp_path / "a.safetensors"))
    assert same_bits(load_file(str(tmp_path / "a.safetensors"))["x"], x)
