"""Generic object questions of the base video LLM's pretraining: truthful, never about anomalies."""

import re
from collections import Counter

import pytest

from vau_jax.data import object_qa
from vau_jax.data import templates as T
from vau_jax.data.synthvad import ANOMALY_TYPES, SynthConfig, render_video

CONFIG = SynthConfig(min_seconds=2.0, max_seconds=2.0)


@pytest.fixture(scope="module")
def videos():
    kinds = ("normal", *ANOMALY_TYPES)
    return [render_video(100 + i, CONFIG, kinds[i % len(kinds)], f"v{i}") for i in range(16)]


def test_never_mentions_anomalies(videos):
    for i, v in enumerate(videos):
        for conv in object_qa.conversations(v, i):
            text = " ".join(turn["value"] for turn in conv).lower()
            assert not re.search(r"anomal|abnormal|unusual|suspicious", text), text


def test_answers_are_true(videos):
    seen = set()
    for i, v in enumerate(videos):
        objects = object_qa.objects_of(v)
        kinds = {o["kind"] for o in objects}
        for conv in object_qa.conversations(v, i):
            q, a = conv[0]["value"].split("\n", 1)[1], conv[1]["value"]
            m = re.fullmatch(r"Is there an? (\w+) in this video\?", q)
            if m:
                seen.add("presence")
                assert a.startswith("Yes") == (m.group(1) in kinds), (q, a, kinds)
            m = re.fullmatch(r"(?:In which direction does|How is) the (\w+) (?:go|moving)\?", q)
            if m:  # a kind that occurs once: its own motion
                seen.add("motion")
                (o,) = [o for o in objects if o["kind"] == m.group(1)]
                assert a == f"The {o['kind']} {object_qa.trajectory_phrase(o['motion'])}."
            if q.startswith(object_qa.OBJECTS_QUESTIONS):
                seen.add("objects")
                for k in kinds:
                    assert k in a or object_qa._PLURAL.get(k, k + "s") in a, (k, a)
    assert seen == {"presence", "motion", "objects"}


def test_deterministic_and_counts(videos):
    a = object_qa.conversations(videos[3], 7)
    assert a == object_qa.conversations(videos[3], 7)
    assert object_qa._count("person", 3) == "three people"
    assert object_qa._count("explosion", 1) == "an explosion"
    assert object_qa._join(["a", "b", "c"]) == "a, b and c"
    assert len(object_qa.conversations(videos[3], 7)) >= 2


def test_multiple_choice_is_true_balanced_and_never_about_anomalies_or_times(videos):
    letters, kinds = Counter(), set()
    for i, v in enumerate(videos):
        objects = object_qa.objects_of(v)
        for conv in object_qa.choice_conversations(v, i):
            human, answer = conv[0]["value"], conv[1]["value"]
            lines = human.split("\n")
            assert lines[0] == "<video>" and lines[-1].startswith("Answer with the option's letter")
            assert not re.search(r"anomal|abnormal|unusual|suspicious|\d+(\.\d)?s\b", human.lower())
            options = lines[2:-1]
            assert [o[:3] for o in options] == ["A. ", "B. ", "C. ", "D. "]
            assert len({o[3:] for o in options}) == 4 and answer in options
            letters[answer[0]] += 1
            q, text = lines[1], answer[3:]
            m = re.fullmatch(r"(?:In which direction does|How is) the (\w+) (?:go|moving)\?", q)
            if m:  # a kind that occurs once: its own motion, and no other option is
                kinds.add("motion")
                (o,) = [o for o in objects if o["kind"] == m.group(1)]
                assert text == f"The {o['kind']} {object_qa.trajectory_phrase(o['motion'])}."
            m = re.fullmatch(r"(?:Where is|In which part of the frame is) the (\w+)\?", q)
            if m:
                kinds.add("position")
                (o,) = [o for o in objects if o["kind"] == m.group(1)]
                assert text == f"The {o['kind']} is {T.SPATIAL_PHRASES[o['where']]}."
            if q in object_qa.OBJECTS_QUESTIONS:
                kinds.add("objects")
                counts = Counter(o["kind"] for o in objects)
                listed = [object_qa._count(k, n) for k, n in sorted(counts.items())]
                assert text == f"I can see {object_qa._join(listed)}."
    assert kinds == {"motion", "position", "objects"}
    # the right letter is uniform: no letter far from a quarter of the answers
    n = sum(letters.values())
    assert n >= 40 and all(abs(letters[x] / n - 0.25) < 0.12 for x in "ABCD"), letters
    assert object_qa.choice_conversations(videos[5], 3) == object_qa.choice_conversations(
        videos[5], 3
    )


def test_multiple_choice_option_style_answers_the_text_then_its_letter(videos):
    from vau_jax.eval.metrics import parse_choice

    for i, v in enumerate(videos[:6]):
        plain = object_qa.choice_conversations(v, i)
        option = object_qa.choice_conversations(v, i, answer_style="option")
        assert len(plain) == len(option) > 0
        for a, b in zip(plain, option):
            assert a[0] == b[0]  # the same question and options
            letter, text = a[1]["value"][0], a[1]["value"][3:]
            assert b[1]["value"] == f"{text}. Answer: {letter}."
            options = [ln[3:] for ln in a[0]["value"].split("\n")[2:-1]]
            assert parse_choice(b[1]["value"], options) == "ABCD".index(letter)
