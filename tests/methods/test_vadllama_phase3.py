"""VAD-LLaMA phase 3: adaptor over [x, x̃], frozen VADor/LLM, answer-only loss, data mixing,
answer parsing and an end-to-end tiny run (a random VADor on random clip tokens, a random
tiny LLM and a byte tokenizer: checks wiring, not quality)."""

import dataclasses
import json
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))
sys.path.insert(0, os.path.dirname(__file__))

import vadllama as vadllama_config  # noqa: E402

from vau_jax.data import synthvad  # noqa: E402
from vau_jax.data.formats.record import VideoRecord  # noqa: E402
from vau_jax.methods.runner import run_method  # noqa: E402
from vau_jax.methods.vadllama import phase3 as P3  # noqa: E402
from vau_jax.methods.vadllama import text as vt  # noqa: E402
from vau_jax.models import registry  # noqa: E402
from vau_jax.models.heads.ltc import LTCConfig  # noqa: E402
from vau_jax.models.heads.vador import VADor, VADorConfig  # noqa: E402
from vau_jax.models.llama import LlamaForCausalLM  # noqa: E402

FPC, TPF, DV, MAX_CLIPS = 2, 2, 16, 6  # frames per clip, tokens per frame, width, clips


class ByteTokenizer:
    """id = byte + 3; 0 pad, 1 bos, 2 eos."""

    pad_id, bos_id, eos_id, vocab_size = 0, 1, 2, 259

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [b + 3 for b in text.encode()]
        return [self.bos_id] + ids if add_bos else ids

    def decode(self, ids, skip_special: bool = True) -> str:
        return bytes(int(i) - 3 for i in ids if int(i) >= 3).decode(errors="replace")


class FakeVADorMethod:
    """The slice of ``VADLLaMA`` phase 3 uses: a random tiny VADor on random clip tokens."""

    def __init__(self, config, num_videos: int = 6):
        qcfg = dataclasses.replace(
            registry.get_config("tiny-qformer"),
            encoder_hidden_size=DV,
            text_input=False,
            hf_model_type="blip_2_qformer",
            hidden_dropout_prob=0.0,
        )
        self.vcfg = VADorConfig(
            qformer=qcfg,
            ltc=LTCConfig(dim=qcfg.hidden_size, k=2),
            frames_per_clip=FPC,
            tokens_per_frame=TPF,
            vision_width=DV,
            ap_hidden=8,
        )
        self.config, self.model = config, VADor(self.vcfg)
        self.synth = synthvad.SynthConfig(**dict(config.synthvad))
        self.spec = types.SimpleNamespace(fps=float(self.synth.fps))
        self.frames_per_clip = FPC
        self.dataset = types.SimpleNamespace(name="synthvad")
        self.n = num_videos
        tok = jnp.zeros((1, 2, FPC * TPF, DV))
        init = jax.jit(lambda k: self.model.init(k, tok, jnp.ones((1, 2), bool)))
        self.params = nn.unbox(init(jax.random.key(1)))["params"]
        self._apply = jax.jit(
            lambda p, t, m: self.model.apply({"params": p}, t, m, phase=2)["scores"]
        )

    def source(self, split):
        return self.examples(split)

    def examples(self, split):
        rng = np.random.default_rng(0 if split == "train" else 1)
        out = []
        for i in range(self.n):
            nc = 3 + i % (MAX_CLIPS - 2)
            mask = np.arange(MAX_CLIPS) < nc
            tok = (
                rng.normal(size=(MAX_CLIPS, FPC * TPF, DV)).astype(np.float16) * mask[:, None, None]
            )
            out.append({"tokens": tok.astype(np.float32), "mask": mask, "label": np.int32(i % 2)})
        return out

    def records(self, split):
        fps = self.synth.fps
        return [
            VideoRecord(
                id=f"{split}_{i}",
                n_frames=int(ex["mask"].sum()) * FPC,
                fps=fps,
                label="running" if i % 2 else "normal",
                intervals=[(2, 4)] if i % 2 else [],
            )
            for i, ex in enumerate(self.examples(split))
        ]

    def clip_scores(self, params, split="test", phase=2):
        assert phase == 2
        out = []
        for ex in self.examples(split):
            nc = int(ex["mask"].sum())
            out.append(
                np.asarray(self._apply(params, ex["tokens"][None, :nc], ex["mask"][None, :nc])[0])
            )
        return out


def _config(data_dir):
    c = vadllama_config.get_config("tiny")
    c.data_dir = data_dir
    c.synthvad.fps = 8.0
    c.max_clips, c.log_every, c.async_checkpointing = MAX_CLIPS, 1, False
    c.mesh.data = 2
    p3 = c.phase3
    p3.steps, p3.optimizer.warmup_steps, p3.optimizer.lr = 3, 1, 1e-2
    p3.batch_size, p3.eval_batch_size, p3.num_description_videos = 2, 4, 6
    p3.threshold = 0.5
    lp = p3.llm_pretrain
    lp.frames_per_clip, lp.max_clips, lp.max_length, lp.max_answer = FPC, MAX_CLIPS, 400, 8
    return c


def _llm(tok):
    cfg = dataclasses.replace(
        registry.get_config("tiny-llama"),
        vocab_size=tok.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )
    module = LlamaForCausalLM(cfg)
    init = jax.jit(lambda k: module.init(k, jnp.zeros((1, 4), jnp.int32)))
    params = nn.unbox(init(jax.random.key(2)))["params"]
    return module, params


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    c = _config(str(tmp_path_factory.mktemp("data")))
    vm = FakeVADorMethod(c)
    tok = ByteTokenizer()
    method = P3.VADLLaMAPhase3(c, vm, vm.params, llm=_llm(tok), tokenizer=tok)
    return c, vm, method


@pytest.mark.slow
def test_adaptor_is_one_linear_over_x_and_x_tilde_to_the_llm_width(setup):
    _, vm, method = setup
    params = jax.jit(method.init_params)(jax.random.key(0))
    assert set(params) == {"vador", "adaptor", "llm"}
    d, d_llm = vm.vcfg.qformer.hidden_size, method.llm.config.hidden_size
    assert params["adaptor"]["kernel"].shape == (2 * d, d_llm)
    assert params["adaptor"]["bias"].shape == (d_llm,)
    # f([x, x̃]) == [x, x̃] @ W + b with x, x̃ from the VADor's phase-2 forward
    p = method.load_frozen(params)
    ex = method.clips("test")[0]
    tok, mask = jnp.asarray(ex["tokens"][None]), jnp.asarray(ex["mask"][None])
    got = jax.jit(
        lambda p, t, m: method.model.apply({"params": p}, t, m, method=P3.VADLLaMAChat.clip_embeds)
    )(p, tok, mask)
    out = jax.jit(lambda t, m: vm.model.apply({"params": vm.params}, t, m, phase=2))(tok, mask)
    x_hat = jnp.concatenate([out["x"], out["x_tilde"]], -1)
    want = x_hat @ p["adaptor"]["kernel"] + p["adaptor"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_batched_scores_equal_per_video_scores(setup):
    _, vm, method = setup
    for a, b in zip(method.scores("test", batch_size=4), vm.clip_scores(vm.params, "test")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mixing_and_answer_only_loss_mask(setup):
    c, _, method = setup
    scores = method.scores("train")
    examples = method.train_examples(scores)
    kinds = np.array([int(e["kind"]) for e in examples])
    n_pseudo = (kinds == P3.PSEUDO).sum()
    assert n_pseudo == len(scores) and (kinds == P3.DESCRIPTION).sum() == round(
        n_pseudo * c.phase3.description_fraction / (1 - c.phase3.description_fraction)
    )
    tok = method.tok
    for e, s in zip(examples[:n_pseudo], scores):
        assert e["video_mask"].sum() == len(s)  # one LLM token per clip
        assert not (e["loss_mask"] & e["video_mask"]).any()
        target = e["input_ids"][e["loss_mask"]]
        assert target[-1] == tok.eos_id
        answer = tok.decode(target[:-1])
        assert answer.startswith(("Yes, there are anomalies from", "No, there is no anomaly"))
        assert vt.parse_answer(answer)[0] == bool((s >= c.phase3.threshold).any())
    desc = [e for e in examples if e["kind"] == P3.DESCRIPTION]
    assert all(tok.decode(e["input_ids"][e["loss_mask"]][:-1]) for e in desc)


@pytest.mark.slow
def test_only_the_adaptor_changes_and_metrics_are_written(setup, tmp_path):
    c, vm, method = setup
    workdir = str(tmp_path / "run")
    params, metrics = run_method(method, c, workdir, "train_and_eval")
    params = jax.device_get(params)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params["vador"], vm.params)
    assert all(jax.tree.leaves(same))  # bit-identical
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), params["llm"], method.llm_params)
    assert all(jax.tree.leaves(same))
    init = jax.device_get(jax.jit(method.init_params)(jax.random.key(c.seed)))
    assert not np.array_equal(params["adaptor"]["kernel"], init["adaptor"]["kernel"])
    for key in ("yes_no_accuracy", "temporal_iou", "parsed"):
        assert 0.0 <= metrics[f"phase3_{key}"] <= 1.0
        assert 0.0 <= metrics[f"phase3_baseline_{key}"] <= 1.0
    assert metrics["phase3_baseline_parsed"] == 1.0
    rows = [json.loads(x) for x in open(os.path.join(workdir, "answers.jsonl"))]
    assert len(rows) == vm.n and {"answer", "pseudo", "gt"} <= set(rows[0])


def test_run_phase3_merges_metrics_into_the_parent_workdir(setup, tmp_path, monkeypatch):
    c, vm, method = setup
    workdir = str(tmp_path / "parent")
    os.makedirs(workdir)
    json.dump({"AUC_O": 0.5}, open(os.path.join(workdir, "metrics.json"), "w"))
    seen = {}

    def fake_run(m, cfg, wd, mode):
        seen.update(method=m, workdir=wd, resume=cfg.resume)
        return None, {"phase3_yes_no_accuracy": 0.75, "train_and_eval_seconds": 3.0}

    monkeypatch.setattr(P3, "VADLLaMAPhase3", lambda cfg, m, p: method)
    monkeypatch.setattr("vau_jax.methods.runner.run_method", fake_run)
    with c.unlocked():
        c.resume = "/elsewhere"  # names phases-1-2 checkpoints: not passed on to phase 3
    P3.run_phase3(vm, vm.params, c, workdir, "train_and_eval")
    with c.unlocked():
        c.resume = ""
    assert seen == {"method": method, "workdir": os.path.join(workdir, "phase3"), "resume": ""}
    merged = json.load(open(os.path.join(workdir, "metrics.json")))
    assert merged == {"AUC_O": 0.5, "phase3_yes_no_accuracy": 0.75, "phase3_seconds": 3.0}


def test_timeline_prompt_layout():
    conv = vt.with_timeline(vt.question_conversation("Q?"), 3, 1.0)
    assert conv[0]["value"] == "0<video>1<video>2<video>3\nQ?"
    assert vt.timeline_text(2, 0.5) == "0<video>0.5<video>1"


@pytest.mark.parametrize(
    "answer, yes, intervals",
    [
        ("Yes, there are anomalies from 1.5s to 2.0s.", True, [(1.5, 2.0)]),
        (
            "Yes, there are anomalies from 1.0s to 2.0s, from 3.0s to 4.0s and from 5.0s to 6.0s.",
            True,
            [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)],
        ),
        ("No, there is no anomaly in this video.", False, []),
        ("No anomaly from 1.0s to 2.0s", False, []),  # a "No" states no interval
        ("yes. between 4 and 2 seconds", True, [(2.0, 4.0)]),
        ("Yes, at 3.0-5.5s", True, [(3.0, 5.5)]),
        ("Yes, there are anomalies from 3.0s to", True, []),  # cut off
        ("from 1.0s to 2.0s", None, [(1.0, 2.0)]),
        ("", None, []),
    ],
)
def test_parse_answer(answer, yes, intervals):
    assert vt.parse_answer(answer) == (yes, intervals)


def test_interval_iou_and_answer_metrics():
    assert vt.interval_set_iou([(0, 2)], [(1, 3)]) == pytest.approx(1 / 3)
    assert vt.interval_set_iou([(0, 1), (2, 3)], [(0, 3)]) == pytest.approx(2 / 3)
    assert vt.interval_set_iou([(0, 2), (1, 3)], [(0, 3)]) == 1.0  # overlaps merged
    assert vt.interval_set_iou([], [(0, 1)]) == 0.0
    m = vt.answer_metrics(
        ["Yes, there are anomalies from 1.0s to 3.0s.", "Yes.", "No.", "???"],
        [[(1.0, 3.0)], [(0.0, 1.0)], [], [(2.0, 4.0)]],
        prefix="p_",
    )
    assert m["p_yes_no_accuracy"] == 0.75  # the unparsed answer is wrong
    assert m["p_temporal_iou"] == pytest.approx(1 / 3)  # no interval stated -> IoU 0
    assert m["p_parsed"] == 0.75 and m["p_recall_iou0.5"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_vadllama_run_with_phase3_enabled(tmp_path, tiny_data_dir):
    """The real wiring: tiny CLIP, phases 1-2, the text-pretrained tiny LLM, phase 3."""
    from tests.tiny_configs import tiny_vadllama
    from vau_jax.main import run

    c = tiny_vadllama(tiny_data_dir)
    p3 = c.phase3
    p3.enabled, p3.steps, p3.optimizer.warmup_steps = True, 2, 1
    p3.batch_size, p3.eval_batch_size, p3.num_description_videos = 2, 4, 6
    lp = p3.llm_pretrain
    lp.data_dir, lp.num_steps, lp.optimizer.warmup_steps = c.data_dir, 2, 1
    lp.num_train_examples, lp.num_eval_examples, lp.num_description_videos = 8, 2, 4
    lp.batch_size, lp.max_answer, lp.log_every, lp.checkpoint_every = 2, 4, 1, 0
    lp.async_checkpointing, lp.mesh.data = False, 2
    workdir = str(tmp_path / "run")
    assert run(c, workdir, "train_and_eval") == 0
    merged = json.load(open(os.path.join(workdir, "metrics.json")))
    for key in ("AUC_O", "phase3_yes_no_accuracy", "phase3_baseline_temporal_iou"):
        assert 0.0 <= merged[key] <= 1.0
    assert os.path.isfile(os.path.join(workdir, "phase3", "answers.jsonl"))
