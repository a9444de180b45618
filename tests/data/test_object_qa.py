"""Generic object questions of the base video LLM's pretraining: truthful, never about anomalies."""

import re

import pytest

from vau_jax.data import object_qa
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
