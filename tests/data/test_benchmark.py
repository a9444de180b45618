"""VA-GPT's multiple-choice benchmark: balanced options (Total and Temporal chance 1/4),
chance values, benchmark files that the evaluation CLI and the reader read back."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.data.test_instruct import VOCAB, _facts  # noqa: E402
from vau_jax.data import benchmark as B
from vau_jax.data import instruct as I
from vau_jax.data import templates as T


@pytest.mark.parametrize("seed", range(60))
def test_multiple_choice_option_design(seed):
    facts = _facts(seed)
    q = B.multiple_choice(facts, VOCAB, seed)
    assert [o.letter for o in q.options] == ["A", "B", "C", "D"]
    true = (round(facts.intervals[0][0], 1), round(facts.intervals[0][1], 1))
    kinds = []
    for o in q.options:
        kinds.append((o.anomaly_type == facts.anomaly_type, o.interval == true, o.interval is None))
        if o.interval is not None:
            assert 0.0 <= o.interval[0] < o.interval[1] <= round(facts.duration, 1) + 1e-9
            assert I.format_interval(o.interval) in o.text
    # correct, true type at another time, another type at another time, no anomaly
    assert sorted(kinds) == sorted(
        [(True, True, False), (True, False, False), (False, False, False), (False, False, True)]
    )
    assert kinds[q.answer_index] == (True, True, False)
    assert len({o.interval for o in q.options}) == 4  # every option its own time
    assert q.is_correct(q.answer_index) and q.is_temporally_correct(q.answer_index)
    assert q.prompt().count("\n") == 5
    assert B.multiple_choice(facts, VOCAB, seed) == q
    assert json.loads(json.dumps(dataclasses.asdict(q)))["answer_index"] == q.answer_index


def test_total_and_temporal_chance_are_equal():
    questions = [B.multiple_choice(_facts(s), VOCAB, s) for s in range(200)]
    questions += [
        B.multiple_choice(I.VideoFacts(f"n{s}", 9.0, "normal"), VOCAB, s) for s in range(50)
    ]
    assert B.chance(questions) == {"total_acc_chance": 0.25, "temporal_acc_chance": 0.25}
    # a uniformly random chooser scores about the same on both
    rng = np.random.default_rng(0)
    picks = rng.integers(0, 4, size=len(questions))
    total = np.mean([q.is_correct(int(c)) for q, c in zip(questions, picks)])
    temporal = np.mean([q.is_temporally_correct(int(c)) for q, c in zip(questions, picks)])
    assert 0.18 < total < 0.32 and 0.18 < temporal < 0.32
    # the type right at the wrong time scores nothing on either
    wrong_time = [
        next(
            i
            for i, o in enumerate(q.options)
            if o.anomaly_type == q.options[q.answer_index].anomaly_type and i != q.answer_index
        )
        for q in questions[:200]
    ]
    assert not any(q.is_temporally_correct(c) for q, c in zip(questions, wrong_time))
    counts = np.bincount([q.answer_index for q in questions], minlength=4)
    assert counts.min() > 40  # the correct letter is spread over the four positions


def test_multiple_choice_normal_video():
    facts = I.VideoFacts("n0", 10.0, "normal")
    q = B.multiple_choice(facts, VOCAB, 5)
    correct = q.options[q.answer_index]
    assert correct.anomaly_type == "normal" and correct.interval is None
    assert correct.text == T.MC_NORMAL_OPTION
    others = [o for i, o in enumerate(q.options) if i != q.answer_index]
    assert all(o.interval is not None and o.anomaly_type in VOCAB for o in others)
    for i in range(4):
        assert q.is_temporally_correct(i) == q.is_correct(i)


def test_multiple_choice_needs_a_wrong_type():
    with pytest.raises(ValueError, match="v0.*no type other"):
        B.multiple_choice(_facts(0), [VOCAB[0]], 0)


def test_multiple_choice_short_video_still_distinct():
    facts = I.VideoFacts("s", 1.0, "fire", ((0.0, 1.0),))
    q = B.multiple_choice(facts, ["fire", "running"], 0)
    assert len({o.interval for o in q.options}) == 4
    assert sum(o.interval == (0.0, 1.0) for o in q.options) == 1


def test_benchmark_file_round_trips_through_the_reader_and_the_cli(tmp_path):
    from vau_jax.data.formats.mcqa import read_mc_questions

    questions = [B.multiple_choice(_facts(s), VOCAB, s) for s in range(5)]
    path = B.write_benchmark(str(tmp_path / "bench.jsonl"), questions)
    back = read_mc_questions(path, T.MC_QUESTIONS[0])
    got = [q for qs in back.values() for q in qs]
    assert [q.answer_index for q in got] == [q.answer_index for q in questions]
    assert [[o.interval for o in q.options] for q in got] == [
        [o.interval for o in q.options] for q in questions
    ]
    assert got[0].prompt() == questions[0].prompt()
    # the evaluation CLI reads the same file as ground truth
    import subprocess
    import sys

    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "answer_index": q.answer_index}) + "\n"
            for i, q in enumerate(questions)
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vau_jax.evaluate",
            "--metric=mcqa",
            f"--gt={path}",
            f"--pred={pred}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == {"Total_Acc": 1.0, "Temporal_Acc": 1.0}


def test_prior_reader_picks_the_option_the_prior_overlaps_most():
    facts = _facts(3)
    q = B.multiple_choice(facts, VOCAB, 3)
    true = q.options[q.answer_index].interval
    none = next(i for i, o in enumerate(q.options) if o.interval is None)
    assert B.prior_reader_choice(q, None) == none
    assert B.prior_reader_choice(q, true) == q.answer_index
    # a prior that is only roughly right still points at the true option (distractors
    # overlap the true interval by at most 30% IoU)
    assert B.prior_reader_choice(q, (true[0] + 0.3, true[1] - 0.2)) == q.answer_index
    # a prior on a distractor's time chooses that distractor
    other = next(i for i, o in enumerate(q.options) if o.interval not in (None, true))
    assert B.prior_reader_choice(q, q.options[other].interval) == other
    # a prior overlapping no option: the first anomalous option, never "no anomaly"
    far = (facts.duration + 5.0, facts.duration + 6.0)
    assert B.prior_reader_choice(q, far) == min(i for i in range(4) if i != none)
    normal = B.multiple_choice(I.VideoFacts("n0", 10.0, "normal"), VOCAB, 5)
    assert B.prior_reader_choice(normal, None) == normal.answer_index


def test_prior_reader_accuracy_scores_the_readers_choices():
    qs = [B.multiple_choice(_facts(s), VOCAB, s) for s in range(4)]
    truths = [q.options[q.answer_index].interval for q in qs]
    assert B.prior_reader_accuracy(qs, truths) == 1.0
    assert B.prior_reader_accuracy(qs, [None] * 4) == 0.0  # every video here is anomalous
    assert B.prior_reader_accuracy(qs, truths[:2] + [None, None]) == 0.5
    with pytest.raises(ValueError, match="no question"):
        B.prior_reader_accuracy([], [])
    with pytest.raises(ValueError, match="4 questions but 3 priors"):
        B.prior_reader_accuracy(qs, truths[:3])


def test_reading_breakdown_splits_answers_by_prior_reader_and_model():
    qs = [B.multiple_choice(_facts(s), VOCAB, s) for s in range(3)]
    normal = B.multiple_choice(I.VideoFacts("n0", 10.0, "normal"), VOCAB, 5)
    truths = [q.options[q.answer_index].interval for q in qs]
    q0, q1, q2 = qs
    none0 = next(i for i, o in enumerate(q0.options) if o.interval is None)
    same1 = next(
        i
        for i, o in enumerate(q1.options)
        if i != q1.answer_index
        and o.interval is not None
        and o.anomaly_type == q1.options[q1.answer_index].anomaly_type
    )
    wrong_n = next(i for i, o in enumerate(normal.options) if o.interval is not None)
    out = B.reading_breakdown(
        [q0, q1, q2, normal],
        [truths[0], truths[1], None, None],
        [none0, same1, None, wrong_n],
    )
    assert out["cells"] == {
        ("anomalous", "interval", "right", "differs"): 2,  # q0, q1: the reader right, not the model
        ("anomalous", "none", "wrong", "differs"): 1,  # q2: no prior, the model unparsed
        ("normal", "none", "right", "differs"): 1,
    }
    lost = out["lost"]
    assert (lost["no anomaly"], lost["same type"], lost["other type"]) == (1, 1, 1)
    assert lost["unparsed"] == 0  # q2's reader was wrong: not counted as lost
    letters = [q0.options[none0].letter, q1.options[same1].letter, normal.options[wrong_n].letter]
    assert sum(lost[f"letter {x}"] for x in "ABCD") == 3
    assert all(lost[f"letter {x}"] == letters.count(x) for x in "ABCD")
    agree = B.reading_breakdown([q0], [truths[0]], [q0.answer_index])
    assert agree == {"cells": {("anomalous", "interval", "right", "agrees"): 1}, "lost": {}}
    unparsed = B.reading_breakdown([normal], [None], [None])["lost"]
    assert unparsed == {"unparsed": 1}
    with pytest.raises(ValueError, match="2 questions, 1 priors and 2 answers"):
        B.reading_breakdown([q0, q1], [None], [None, None])


def test_mc_answer_text_words_each_style_in_one_place():
    assert B.mc_answer_text("C", "A fire from 2.1s to 4.5s", "letter") == (
        "C. A fire from 2.1s to 4.5s"
    )
    assert B.mc_answer_text("C", "A fire from 2.1s to 4.5s", "option", "ignored") == (
        "A fire from 2.1s to 4.5s. Answer: C."
    )
    assert B.mc_answer_text("C", "A fire", "evidence", "Yes: a fire.") == "Yes: a fire. Answer: C."
    with pytest.raises(ValueError, match="needs the evidence"):
        B.mc_answer_text("C", "A fire", "evidence")
    with pytest.raises(ValueError, match="'letters'"):
        B.mc_answer_text("C", "A fire", "letters")


def _question(seed: int = 3) -> B.MCQuestion:
    return B.multiple_choice(_facts(seed), VOCAB, seed)


@pytest.mark.parametrize("shift", [0, 1, 2, 3])
def test_rotated_shows_the_options_in_cyclic_order_and_keeps_the_answer(shift):
    q = _question()
    r = B.rotated(q, shift)
    n = len(q.options)
    assert [o.letter for o in r.options] == list("ABCD")[:n]
    for p, o in enumerate(r.options):
        src = q.options[B.unrotated(p, shift, n)]
        assert (o.text, o.interval, o.anomaly_type) == (src.text, src.interval, src.anomaly_type)
        assert src is q.options[(p + shift) % n]
    assert r.options[r.answer_index].text == q.options[q.answer_index].text
    assert B.unrotated(r.answer_index, shift, n) == q.answer_index
    assert B.unrotated(None, shift, n) is None
    if shift == 0:
        assert r == q


def test_vote_takes_the_majority_over_orders():
    # per question (columns): a clear majority; a 2-2 tie with the first order among the
    # tied; a 1-1 tie without it (unparsed first answer: the lowest index); one parsed
    # answer; none parsed
    choices = [
        [2, 1, None, None, None],
        [2, 3, 2, None, None],
        [0, 1, 0, 3, None],
        [2, 3, None, None, None],
    ]
    assert B.vote(choices) == [2, 1, 0, 3, None]
    assert B.vote([[1, None]]) == [1, None]  # one order: its own answers
    with pytest.raises(ValueError, match="no option order"):
        B.vote([])


def test_letter_text_breakdown_counts_disagreements_by_half():
    anom = B.multiple_choice(_facts(0), VOCAB, 0)
    normal = B.multiple_choice(I.VideoFacts("n0", 10.0, "normal"), VOCAB, 5)

    def line(q, letter_of: int, text_of: int) -> str:
        return f"{q.options[letter_of].letter}. {q.options[text_of].text}"

    wrong = [i for i in range(4) if i != normal.answer_index]
    a_wrong = [i for i in range(4) if i != anom.answer_index]
    answers = [
        (normal, line(normal, normal.answer_index, normal.answer_index)),  # agree
        (normal, line(normal, wrong[0], normal.answer_index)),  # text right
        (normal, line(normal, normal.answer_index, wrong[0])),  # letter right
        (normal, line(normal, wrong[0], wrong[1])),  # neither
        (normal, f"{normal.options[wrong[0]].letter}."),  # a letter alone: agree
        (anom, anom.options[anom.answer_index].text),  # no opening letter
        (anom, line(anom, a_wrong[0], anom.answer_index)),  # text right
    ]
    out = B.letter_text_breakdown([q for q, _ in answers], [a for _, a in answers])
    assert out == {
        ("normal", "agree"): 2,
        ("normal", "text right"): 1,
        ("normal", "letter right"): 1,
        ("normal", "neither right"): 1,
        ("anomalous", "no letter"): 1,
        ("anomalous", "text right"): 1,
    }
    with pytest.raises(ValueError, match="1 questions and 0 answers"):
        B.letter_text_breakdown([normal], [])


def test_lettered_answer_reads_every_answer_style():
    for style in B.MC_ANSWER_STYLES:
        answer = B.mc_answer_text("C", "A fire from 2.1s to 4.5s", style, evidence="Yes: a fire.")
        assert B.lettered_answer(answer) == ("C", style != "letter"), style
    for other in ("A person runs across the walkway.", "No.", "Yes: a fire, from 2.1s.", ""):
        assert B.lettered_answer(other) is None
