"""Text pretraining corpus of the tiny LLaMA (``methods/pretrain/text_llm.py``) and the text
rows later trainings replay from it."""

import dataclasses
import os
import sys

import numpy as np
import pytest

from vau_jax.data import templates as T
from vau_jax.data.instruct import NORMAL, VideoFacts
from vau_jax.methods.pretrain import prior_text as PT
from vau_jax.methods.pretrain import text_llm as TL

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "configs"))


def _report(anomaly: str, intervals) -> TL.Report:
    facts = VideoFacts(
        video_id="pretrain_000001", anomaly_type=anomaly, intervals=intervals, duration=10.0
    )
    caps = ((0.0, 4.0, "People walk."), (4.0, 6.0, "A person runs."), (6.0, 10.0, "People walk."))
    return TL.Report(facts, caps, "A person runs across the path.")


def test_merge_normal_keeps_anomalous_segments_apart():
    caps = [(0.0, 1.0, "a"), (1.0, 2.0, "b"), (2.0, 3.0, "run"), (3.0, 4.0, "c"), (4.0, 5.0, "d")]
    merged = TL.merge_normal(caps, [(2.0, 3.0)])
    assert merged == ((0.0, 2.0, "a"), (2.0, 3.0, "run"), (3.0, 5.0, "c"))
    assert TL.merge_normal(caps, []) == ((0.0, 5.0, "a"),)


def test_conversations_of_every_kind_answer_from_the_report():
    rep = _report("running", ((4.0, 6.0),))
    conv, q = TL.conversation(rep, "mc", 3, ("running", "fighting", "explosion"))
    assert (
        conv[0]["value"].startswith("Report:\n") and "4.0s-6.0s: A person runs." in conv[0]["value"]
    )
    letter = q.options[q.answer_index].letter
    assert conv[1]["value"].startswith(f"{letter}. ") and q.options[q.answer_index].interval == (
        4.0,
        6.0,
    )
    assert q.question in T.MC_QUESTIONS  # the text pretraining corpus itself
    conv, q = TL.conversation(rep, "qa", 3, ("running",))
    assert q is None and conv[1]["value"].startswith("Yes: ") and "4.0" in conv[1]["value"]
    conv, _ = TL.conversation(_report(NORMAL, ()), "qa", 3, ("running",))
    assert conv[1]["value"].startswith("No")
    conv, _ = TL.conversation(rep, "summary", 3, ("running",))
    assert conv[1]["value"] == rep.description
    with pytest.raises(ValueError, match="unknown text task"):
        TL.conversation(rep, "poem", 3, ("running",))


def test_replayed_text_rows_are_about_pretrain_reports_never_eval_wording(tmp_path):
    import text_pretrain as text_pretrain_config

    c = text_pretrain_config.get_config("tiny")
    c.data_dir, c.num_train_videos = str(tmp_path), 3
    c.synthvad.min_seconds = c.synthvad.max_seconds = 2.0
    assert c.mix.object > 0  # the default draws the object task (README, T-VAU)
    assert c.mix.prior_mc > 0  # and prior-only multiple choice (README, VA-GPT)
    c.mix.object = c.mix.prior_mc = 0.0
    convs = TL.replay_conversations(c, 40, seed=0)
    assert len(convs) == 40 and TL.replay_conversations(c, 0, seed=0) == []
    assert convs == TL.replay_conversations(c, 40, seed=0)  # deterministic
    assert convs != TL.replay_conversations(c, 40, seed=1)
    humans = [conv[0]["value"] for conv in convs]
    assert all(h.startswith("Report:\n") and T.VIDEO_MARKER not in h for h in humans)
    lettered = [h for h in humans if "\nA. " in h]
    assert lettered, "the mix holds text multiple choice"
    assert all(any(q in h for q in TL.REPORT_MC_QUESTIONS) for h in lettered)
    assert not any(q in h for q in T.MC_QUESTIONS for h in humans)
    kinds = {("\nA. " in h) + 2 * any(q in h for q in TL.SUMMARY_QUESTIONS) for h in humans}
    assert kinds == {0, 1, 2}  # qa, mc and summary all drawn (mix 0.3 / 0.5 / 0.2)
    assert np.mean(["\nA. " in h for h in humans]) > 0.25
    # the object task: at weight 0 the same rows as without the key
    assert not any(q in h for q in TL.OBJECT_QUESTIONS for h in humans)
    with c.unlocked():
        del c.mix["object"]
    assert TL.replay_conversations(c, 40, seed=0) == convs
    c.mix.object = 0.5
    weighted = TL.replay_conversations(c, 40, seed=0)
    assert any(
        TL.OBJECT_QUESTIONS[0] in v[0]["value"] or TL.OBJECT_QUESTIONS[1] in v[0]["value"]
        for v in weighted
    )
    assert c.mc_answer == "letter"  # by default lettered rows answer "C. <option>"
    c.mix.object = 0.0
    for style in ("evidence", "option"):
        c.mc_answer = style
        reasoned = TL.replay_conversations(c, 40, seed=0)
        assert [v[0] for v in reasoned] == [v[0] for v in convs]  # the same prompts
        for plain, why in zip(convs, reasoned):
            if "\nA. " in plain[0]["value"]:
                letter, text = plain[1]["value"][0], plain[1]["value"][3:]
                assert why[1]["value"].endswith(f"Answer: {letter}.") and why[1] != plain[1]
                assert why[1]["value"].startswith(text) == (style == "option")
            else:
                assert why == plain
    c.mc_answer = "both"
    with pytest.raises(ValueError, match="mc_answer='both'"):
        TL.replay_conversations(c, 4, seed=0)


def test_approximate_reports_move_times_by_at_most_the_noise_and_keep_order():
    rep = _report("running", ((4.0, 6.0),))
    assert TL.approximate(rep, 0.0, np.random.default_rng(0)) is rep
    moved_any = False
    for seed in range(20):
        out = TL.approximate(rep, 1.0, np.random.default_rng(seed))
        assert [c for _, _, c in out.captions] == [c for _, _, c in rep.captions]
        starts_ends = [b for s, e, _ in out.captions for b in (s, e)]
        assert starts_ends == sorted(starts_ends) and all(s < e for s, e, _ in out.captions)
        assert out.captions[0][0] == 0.0 and out.captions[-1][1] == 10.0  # video ends stay
        for (s0, e0, _), (s1, e1, _) in zip(rep.captions, out.captions):
            assert abs(s1 - s0) <= 1.0 + 1e-9 and abs(e1 - e0) <= 1.0 + 1e-9
        moved_any |= out.captions != rep.captions
        assert out.facts == rep.facts  # the answer stays the truth
    assert moved_any
    conv, q = TL.conversation(rep, "mc", 5, ("running", "fighting"), time_noise=1.0)
    exact, q0 = TL.conversation(rep, "mc", 5, ("running", "fighting"))
    assert q == q0 and conv[1] == exact[1]  # same question and answer, rougher report


def test_reasoned_answers_restate_the_written_report_then_give_the_letter():
    from vau_jax.eval.metrics import parse_choice

    rep = _report("running", ((4.0, 6.0),))
    classes = ("running", "fighting", "explosion")
    seen = set()
    for seed in range(12):
        conv, q = TL.conversation(rep, "mc", seed, classes, time_noise=1.0, answer_style="evidence")
        plain, q0 = TL.conversation(rep, "mc", seed, classes, time_noise=1.0)
        assert q == q0 and conv[0] == plain[0]  # the same question on the same written report
        answer = conv[1]["value"]
        letter = q.options[q.answer_index].letter
        assert answer.startswith("Yes: a person running, between ")
        assert answer.endswith(f" Answer: {letter}.")
        assert parse_choice(answer, [o.text for o in q.options]) == q.answer_index
        # the times are those of the report's anomalous line, as written (moved by <= 1 s)
        line = conv[0]["value"].splitlines()[2]
        start, end = line.split(": ")[0].split("-")
        assert f"between {start} and {end}." in answer
        assert abs(float(start[:-1]) - 4.0) <= 1.0 and abs(float(end[:-1]) - 6.0) <= 1.0
        seen.add((start, end))
    assert len(seen) > 1  # the written times vary with the seed, so the evidence does too
    conv, q = TL.conversation(_report(NORMAL, ()), "mc", 3, classes, answer_style="evidence")
    assert conv[1]["value"] == (
        f"No, nothing abnormal happens in this video. Answer: {q.options[q.answer_index].letter}."
    )
    assert q.options[q.answer_index].interval is None


def test_reported_intervals_fall_back_to_the_truth_when_segments_do_not_line_up():
    rep = _report("running", ((4.0, 6.0),))
    fewer = dataclasses.replace(rep, captions=rep.captions[:2])
    assert TL.reported_intervals(rep, fewer) == ((4.0, 6.0),)
    moved = dataclasses.replace(
        rep, captions=((0.0, 3.6, "People walk."), (3.6, 6.4, "A person runs."), (6.4, 10.0, "x"))
    )
    assert TL.reported_intervals(rep, moved) == ((3.6, 6.4),)
    # a segment that only touches the anomaly (caption rounding) is not part of it
    touching = _report("running", ((4.04, 6.0),))
    assert TL.reported_intervals(touching, moved) == ((3.6, 6.4),)


@pytest.mark.slow
def test_packed_text_rows_train_on_the_same_loss_as_padded_rows():
    """``pack_length``: the loss of a batch of packed rows equals the loss of the same
    conversations padded one per row (the answers' tokens, their contexts and positions are
    the same), and the step's gradient with it."""
    import jax
    import jax.numpy as jnp

    from vau_jax.data.packing import pack_rows
    from vau_jax.models import llama, registry

    cfg = dataclasses.replace(registry.get_config("tiny-llama"), vocab_size=61)
    module = llama.LlamaForCausalLM(cfg)
    params = module.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    method = TL.TextPretrain.__new__(TL.TextPretrain)  # _loss reads only the module
    method.model = module
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(7):
        n = int(rng.integers(4, 19))
        row = {
            "input_ids": np.zeros(20, np.int32),
            "attention_mask": np.zeros(20, bool),
            "loss_mask": np.zeros(20, bool),
        }
        row["input_ids"][:n] = np.r_[1, rng.integers(3, 61, n - 1)]  # BOS first, as chat rows
        row["attention_mask"][:n] = True
        row["loss_mask"][n // 2 : n] = True
        rows.append(row)
    packed = pack_rows(rows, 32)
    assert len(packed) < len(rows)
    stack = lambda rs: {k: jnp.asarray(np.stack([r[k] for r in rs])) for k in rs[0]}  # noqa: E731
    grad = jax.jit(jax.value_and_grad(lambda p, b: method._loss(p, b, None)[0]))
    loss_pad, g_pad = grad(params, stack(rows))
    loss_pack, g_pack = grad(params, stack(packed))
    np.testing.assert_allclose(float(loss_pack), float(loss_pad), rtol=2e-6)
    for a, b in zip(jax.tree.leaves(g_pack), jax.tree.leaves(g_pad)):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=1e-5, atol=5e-7
        )  # 1.2e-7 seen


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = text.lower().replace(".", " .").split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_object_task_names_the_anomalous_object_unlike_the_tvau_sentence():
    rep = _report("running", ((4.0, 6.0),))
    rep = dataclasses.replace(rep, facts=dataclasses.replace(rep.facts, target="person"))
    conv, q = TL.conversation(rep, "object", 3, ("running",))
    assert q is None and conv[0]["value"].startswith("Report:\n")
    assert conv[0]["value"].endswith(TL.OBJECT_QUESTIONS) and "anomalous" in conv[1]["value"]
    assert conv[1]["value"] == "The person is the anomalous object of the report."
    normal, _ = TL.conversation(_report(NORMAL, ()), "object", 3, ("running",))
    assert normal[1]["value"] == TL.OBJECT_NONE_ANSWER
    # no 4-gram of T-VAU's target question or answer (templates.TARGET_*) in the task's text
    tvau = set().union(
        *(_ngrams(t, 4) for t in (*T.TARGET_QUESTIONS, T.TARGET_NONE_ANSWER)),
        *(_ngrams(T.TARGET_ANSWER.format(target=k), 4) for k in ("person", "bag", "fire")),
    )
    ours = set().union(
        *(_ngrams(t, 4) for t in (*TL.OBJECT_QUESTIONS, TL.OBJECT_NONE_ANSWER)),
        _ngrams(conv[1]["value"], 4),
    )
    assert tvau and ours and not (tvau & ours)
    no_target = dataclasses.replace(rep, facts=dataclasses.replace(rep.facts, target=""))
    with pytest.raises(ValueError, match="without a known object"):
        TL.conversation(no_target, "object", 3, ("running",))


def test_optional_kinds_join_the_mix_only_with_a_weight():
    kinds, p = TL.mixed_kinds({"mc": 0.5, "qa": 0.3, "summary": 0.2})
    assert kinds == TL.KINDS and np.allclose(p, [0.5, 0.3, 0.2])
    assert TL.mixed_kinds({"mc": 0.5, "qa": 0.3, "summary": 0.2, "object": 0.0})[0] == TL.KINDS
    kinds, p = TL.mixed_kinds({"mc": 0.5, "qa": 0.3, "summary": 0.2, "object": 0.1})
    assert kinds[-1] == "object" and np.allclose(p, np.array([0.5, 0.3, 0.2, 0.1]) / 1.1)
    with pytest.raises(ValueError, match="unknown text task"):
        TL.mixed_kinds({"mc": 1.0, "poems": 0.5})


def test_replay_mixes_in_prior_only_rows_at_their_fraction(tmp_path):
    import text_pretrain as text_pretrain_config

    c = text_pretrain_config.get_config("tiny")
    c.data_dir, c.num_train_videos = str(tmp_path), 3
    c.synthvad.min_seconds = c.synthvad.max_seconds = 2.0
    c.mix.prior_mc = 0.0  # the replay's own fraction alone (the default also draws the kind)
    plain = TL.replay_conversations(c, 60, seed=0)
    assert not any(any(q in v[0]["value"] for q in PT.PRIOR_MC_QUESTIONS) for v in plain)
    assert TL.replay_conversations(c, 60, seed=0, prior_mc_fraction=0.0) == plain
    mixed = TL.replay_conversations(c, 60, seed=0, prior_mc_fraction=0.5)
    prior_rows = [v for v in mixed if any(q in v[0]["value"] for q in PT.PRIOR_MC_QUESTIONS)]
    assert 15 <= len(prior_rows) <= 45  # about half of 60
    assert all(v[0]["value"].startswith(T.TETG_CLASSES.split("{")[0]) for v in prior_rows)
    assert all(v[0]["value"].startswith("Report:\n") for v in mixed if v not in prior_rows)
    every = TL.replay_conversations(c, 20, seed=0, prior_mc_fraction=1.0)
    assert all(any(q in v[0]["value"] for q in PT.PRIOR_MC_QUESTIONS) for v in every)


def test_letter_weight_marks_the_answers_letter_token_in_each_style(tmp_path):
    import text_pretrain as text_pretrain_config

    from vau_jax.data.chat import letter_weighted_row, weight_letter

    c = text_pretrain_config.get_config("tiny")
    c.data_dir, c.num_train_videos, c.num_train_examples = str(tmp_path), 4, 24
    c.synthvad.min_seconds = c.synthvad.max_seconds = 2.0
    c.pack_length = 0
    m = TL.TextPretrain(c, "")
    m.prepare()
    rep = TL.reports(c.data_dir, m.synth, 4)[0]
    for style in ("letter", "option"):
        c.mc_answer = style
        conv, q = TL.conversation(rep, "mc", 3, m.class_names, answer_style=style)
        ex = m.encode(conv)
        row = {k: ex[k] for k in ("input_ids", "attention_mask", "loss_mask")}
        letter = q.options[q.answer_index].letter
        weighted = letter_weighted_row(m.tok, row, conv, 5.0)  # the letter read off the answer
        assert weighted["input_ids"] is row["input_ids"]
        w = weighted["loss_mask"]
        assert w.dtype == np.float32
        (pos,) = np.flatnonzero(w == 5.0)
        assert m.tok.decode([int(row["input_ids"][pos])]).strip() == letter
        targets = np.flatnonzero(row["loss_mask"])
        rest = np.setdiff1d(targets, [pos])
        assert np.all(w[rest] == 1.0) and np.all(w[~row["loss_mask"]] == 0.0)
        # "letter": the letter opens the answer; "option": it closes it (then "." and EOS)
        assert (pos - targets[0] <= 1) if style == "letter" else (targets[-1] - pos <= 2)
        last = style != "letter"
        np.testing.assert_array_equal(weight_letter(m.tok, row, None, 5.0, last), row["loss_mask"])
        with pytest.raises(ValueError, match="letter 'Z'"):
            weight_letter(m.tok, row, "Z", 5.0, last)
    qa_conv, _ = TL.conversation(rep, "qa", 3, m.class_names)
    ex = m.encode(qa_conv)
    row = {k: ex[k] for k in ("input_ids", "attention_mask", "loss_mask")}
    plain = letter_weighted_row(m.tok, row, qa_conv, 5.0)["loss_mask"]
    assert plain.dtype == np.float32  # unweighted, but float like every weighted row
    np.testing.assert_array_equal(plain, row["loss_mask"])
    c.mc_answer, c.mc_letter_weight = "letter", 4.0
    rows = m._source()
    weighted = [r for r in rows if (r["loss_mask"] == 4.0).any()]
    assert weighted and all((r["loss_mask"] == 4.0).sum() == 1 for r in weighted)
    assert all(set(np.unique(r["loss_mask"])) <= {0.0, 1.0, 4.0} for r in rows)
    assert len(weighted) < len(rows)  # QA and summary rows are not weighted
