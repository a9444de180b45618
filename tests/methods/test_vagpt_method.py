"""End-to-end plumbing of the tiny VA-GPT preset (tiny sizes: checks wiring, not quality)."""

import json
import os
from html.parser import HTMLParser

import jax
import numpy as np
import pytest

from tests.tiny_configs import tiny_vagpt
from vau_jax.methods import vagpt_data as D
from vau_jax.methods.runner import run_method
from vau_jax.methods.vagpt import VAGPT
from vau_jax.methods.vagpt_report import report_videos


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data dir (tokenizer, tiny CLIP, cached features) shared by the slow tests."""
    return str(tmp_path_factory.mktemp("vagpt_data"))


def test_sample_frames_and_questions_are_deterministic():
    idx = D.sample_frames(50, 16)
    assert idx[0] == 0 and idx[-1] == 49 and (np.diff(idx) > 0).all()
    feats = {
        "video_id": np.array(["v0"]),
        "n_frames": np.array([40]),
        "fps": np.array([8.0]),
        "anomaly_type": np.array(["fire"]),
        "intervals": np.array([[[1.0, 2.5], [-1, -1], [-1, -1], [-1, -1]]], np.float32),
    }
    a, b = D.questions(feats, 0, 3), D.questions(feats, 0, 3)
    assert [q.prompt() for q in a] == [q.prompt() for q in b]
    assert len({q.prompt() for q in a}) > 1  # different distractors / orders per question
    for q in a:
        assert q.options[q.answer_index].interval == (1.0, 2.5)
    text = D.human_text(a[0], "PRIOR.")
    assert text.startswith("<video>\nPRIOR.\n") and a[0].prompt() in text


class _Bytes:
    """Byte-level toy tokenizer: id = byte + 3; 0 pad, 1 bos, 2 eos."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return ([1] if add_bos else []) + [b + 3 for b in text.encode()]


def test_rows_trim_exactly_and_options_split_into_prompt_and_answers():
    import ml_collections

    c = ml_collections.ConfigDict(
        dict(max_length=400, max_query_length=8, chat_format="vicuna_v1", system_prompt="")
    )
    tok, q = (
        _Bytes(),
        D.questions(
            {
                "video_id": np.array(["v0"]),
                "n_frames": np.array([40]),
                "fps": np.array([8.0]),
                "anomaly_type": np.array(["fire"]),
                "intervals": np.array([[[1.0, 2.5], [-1, -1], [-1, -1], [-1, -1]]], np.float32),
            },
            0,
            1,
        )[0],
    )
    human = D.human_text(q, None)
    rows = [
        D.chat_row(tok, c, human, q.question, f"{o.letter}. {o.text}", 0, 4, "v0")
        for o in q.options
    ]
    b = D.stack_rows(rows)
    n = max(int(r["attention_mask"].sum()) for r in rows)
    assert b["input_ids"].shape == (4, -(-n // 16) * 16) and b["video"].shape == (4,)
    np.testing.assert_array_equal(
        b["input_ids"], np.stack([r["input_ids"] for r in rows])[:, : b["input_ids"].shape[1]]
    )
    assert not np.stack([r["attention_mask"] for r in rows])[:, b["input_ids"].shape[1] :].any()
    # Generation prompts are left-padded: the cut keeps the right end.
    gen = D.chat_row(tok, c, human, q.question, None, 0, 4, "v0")
    m = int(gen["attention_mask"].sum())
    g = D.stack_rows([gen, gen])
    assert g["attention_mask"][:, -1].all() and g["input_ids"].shape[1] == -(-m // 16) * 16
    np.testing.assert_array_equal(g["input_ids"][0], gen["input_ids"][-g["input_ids"].shape[1] :])
    assert D.stack_rows([gen], min_length=n)["input_ids"].shape[1] == n
    # The options share the prompt; the continuations are the answer lines (+ EOS).
    sp = D.split_options(rows, "v0")
    p = len(sp["prefix_ids"])
    for r, o, cont, score in zip(rows, q.options, sp["cont_ids"], sp["score"]):
        assert bytes(x - 3 for x in cont[score] if x > 2).decode() == f"{o.letter}. {o.text}"
        np.testing.assert_array_equal(r["input_ids"][:p], sp["prefix_ids"])
    packed = D.pack_options([sp, sp], p + 3, 40, tok.pad_id)
    assert (
        packed["prefix_mask"].sum(1).tolist() == [p, p] and not packed["prefix_mask"][:, :3].any()
    )
    assert packed["cont_ids"].shape == (2, 4, 40)
    bad = [rows[0], D.chat_row(tok, c, human + "!", q.question, "A. x", 0, 4, "v0")]
    with pytest.raises(ValueError, match="v0: the option rows do not share one prompt"):
        D.split_options(bad, "v0")


@pytest.mark.slow
def test_tiny_run_trains_evaluates_reports_and_resumes(tmp_path, data_dir):
    c = tiny_vagpt(data_dir)
    workdir = str(tmp_path / "run")
    method = VAGPT(c, workdir)
    # TETG was trained alone in its own run and is frozen (a plain array tree, no optimizer).
    assert os.path.isdir(os.path.join(workdir, "tetg"))
    _, metrics = run_method(method, c, workdir, "train_and_eval")
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert saved == pytest.approx(metrics)
    for key in (
        "total_acc",
        "temporal_acc",
        "total_acc_stage1",
        "temporal_acc_stage1",
        "total_acc_generate",
        "tetg_frame_auc",
    ):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["test_questions"] == 4 and saved["sets_keep_ratio"] == 0.5
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    # The report: one curve per shown video, frames as images, the questions.
    html = open(os.path.join(workdir, "report.html")).read()

    class Count(HTMLParser):
        imgs = svgs = 0

        def handle_starttag(self, tag, attrs):
            Count.imgs += tag == "img"
            Count.svgs += tag == "svg"

    Count().feed(html)
    assert Count.imgs == 2 * 6 and Count.svgs >= 2
    assert "Answer with the option" in html
    # Rerunning in eval mode restores the final params: same numbers.
    _, again = run_method(VAGPT(c, workdir), c, workdir, "eval")
    assert again["total_acc"] == pytest.approx(metrics["total_acc"])


@pytest.mark.slow
def test_frozen_llm_stays_bit_identical(tmp_path, data_dir):
    c = tiny_vagpt(data_dir)
    c.train_llm = False
    workdir = str(tmp_path / "run")
    method = VAGPT(c, workdir)
    # The trainer initialises under jit (bitwise different from eager init).
    init = jax.device_get(jax.jit(method.init_params)(jax.random.key(c.seed)))
    params, _ = run_method(method, c, workdir, "train")
    params = jax.device_get(params)
    for a, b in zip(jax.tree.leaves(init["llm"]), jax.tree.leaves(params["llm"])):
        np.testing.assert_array_equal(a, b)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(init["context_proj"]), jax.tree.leaves(params["context_proj"])
        )
    ]
    assert any(moved)


def test_report_videos_alternate_anomalous_and_normal():
    feats = {"anomaly_type": np.array(["normal", "normal", "fire", "running", "normal"])}
    assert report_videos(feats, 4) == [2, 0, 3, 1]
    assert report_videos(feats, 10) == [2, 0, 3, 1, 4]
