"""Tests of vau_jax.data.instruct: conversations, VA-GPT MC-QA, VAD-LLaMA pseudo-instructions,
T-VAU questions, determinism, and the SynthVAD builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vau_jax.data import instruct as I
from vau_jax.data import templates as T
from vau_jax.data.synthvad.types import ANOMALY_TYPES, SynthVideo, Track

VOCAB = ANOMALY_TYPES


def _facts(seed: int) -> I.VideoFacts:
    """Random anomalous facts: duration 4-30 s, one interval inside it."""
    rng = np.random.default_rng(seed)
    duration = float(rng.uniform(4.0, 30.0))
    start = float(rng.uniform(0.0, duration * 0.7))
    end = float(min(duration, start + rng.uniform(0.5, duration * 0.3)))
    return I.VideoFacts(
        video_id=f"v{seed}",
        duration=duration,
        anomaly_type=VOCAB[seed % len(VOCAB)],
        intervals=((start, end),),
        spatial_word="left",
        description="A quiet plaza.",
        event_description="Something happens.",
        target="person",
        trajectory="right",
    )


def test_format_intervals():
    assert I.format_time(1.5) == "1.5s"
    assert I.format_interval((1.5, 2.0)) == "from 1.5s to 2.0s"
    assert I.format_intervals([(1.0, 2.0)]) == "from 1.0s to 2.0s"
    assert (
        I.format_intervals([(1.0, 2.0), (3.0, 4.0), (5.0, 6.0)])
        == "from 1.0s to 2.0s, from 3.0s to 4.0s and from 5.0s to 6.0s"
    )


def test_description_conversation_is_llava_format_and_deterministic():
    facts = _facts(0)
    conv = I.description_conversation(facts, seed=3)
    assert [t["from"] for t in conv] == ["human", "gpt"]
    assert conv[0]["value"].startswith("<video>\n")
    assert conv[0]["value"][len("<video>\n") :] in T.DESCRIBE_QUESTIONS
    assert conv[1]["value"] == "A quiet plaza. Something happens."
    assert I.description_conversation(facts, seed=3) == conv
    questions = {I.description_conversation(facts, seed=s)[0]["value"] for s in range(40)}
    assert len(questions) > 1  # paraphrases are drawn with the seed
    json.dumps(conv)


def test_scores_to_intervals():
    scores = np.array([0.1, 0.6, 0.7, 0.2, 0.9, 0.1, 0.5])
    assert I.scores_to_intervals(scores, 0.5, 0.5) == [(0.5, 1.5), (2.0, 2.5), (3.0, 3.5)]
    assert I.scores_to_intervals(np.ones(3), 2.0, 0.5) == [(0.0, 6.0)]
    assert I.scores_to_intervals(np.zeros(4), 1.0, 0.5) == []
    assert I.scores_to_intervals(np.zeros(0), 1.0, 0.5) == []


def test_pseudo_instruction_answers():
    conv = I.pseudo_instruction(np.array([0.0, 0.1, 0.2, 0.8]), 0.5, 0.5, seed=0)
    assert conv[1]["value"] == "Yes, there are anomalies from 1.5s to 2.0s."
    assert conv[0]["value"][len("<video>\n") :] in T.VADLLAMA_QUESTIONS
    conv = I.pseudo_instruction(np.array([0.9, 0.1, 0.8, 0.7]), 1.0, 0.5, seed=0)
    assert conv[1]["value"] == "Yes, there are anomalies from 0.0s to 1.0s and from 2.0s to 4.0s."
    conv = I.pseudo_instruction(np.array([0.1, 0.2]), 1.0, 0.5, seed=0)
    assert conv[1]["value"] == "No, there is no anomaly in this video."


def test_tvau_questions():
    facts = _facts(1)
    assert I.yes_no_conversation(facts, 0)[1]["value"].startswith("Yes, ")
    assert I.target_conversation(facts, 0)[1]["value"] == "The anomalous object is the person."
    traj = I.trajectory_conversation(facts, 0)
    assert "person" in traj[0]["value"]
    assert traj[1]["value"] == "The person moves to the right."
    spatial = I.spatial_conversation(facts, 0)
    assert spatial[0]["value"][len("<video>\n") :] in T.SPATIAL_QUESTIONS
    assert spatial[1]["value"] == "The anomaly happens on the left of the frame."
    normal = I.VideoFacts("n", 5.0, "normal", event_description="People walk.")
    assert I.yes_no_conversation(normal, 0)[1]["value"] == "No, there is no anomaly in this video."
    assert I.target_conversation(normal, 0)[1]["value"] == T.TARGET_NONE_ANSWER
    assert I.trajectory_conversation(normal, 0) is None
    assert I.spatial_conversation(normal, 0)[1]["value"] == T.SPATIAL_NONE_ANSWER


def test_geometry_words():
    assert I.spatial_word_from_box((28, 28, 35, 35), 64, 64) == "centre"
    assert I.spatial_word_from_box((0, 20, 10, 40), 64, 64) == "left"
    assert I.spatial_word_from_box((50, 20, 63, 40), 64, 64) == "right"
    assert I.spatial_word_from_box((20, 0, 40, 8), 64, 64) == "top"
    assert I.spatial_word_from_box((20, 55, 40, 63), 64, 64) == "bottom"
    right = np.array([[0, 30, 5, 35], [40, 31, 45, 36]])
    assert I.trajectory_key(right, 64, 64) == "right"
    up_left = np.array([[50, 50, 55, 55], [10, 10, 15, 15]])
    assert I.trajectory_key(up_left, 64, 64) == "up_left"
    assert I.trajectory_key(np.array([[10, 10, 15, 15], [12, 11, 17, 16]]), 64, 64) == "static"


def test_video_facts_validation_names_the_video():
    with pytest.raises(ValueError, match="'bad'.*intervals"):
        I.VideoFacts("bad", 5.0, "fire")
    with pytest.raises(ValueError, match="'bad'.*interval"):
        I.VideoFacts("bad", 5.0, "fire", ((3.0, 2.0),))
    with pytest.raises(ValueError, match="'bad'.*spatial_word"):
        I.VideoFacts("bad", 5.0, "fire", ((1.0, 2.0),), spatial_word="middle")


def _synth_video(anomalous: bool) -> SynthVideo:
    """A hand-made SynthVideo (64x64, 8 fps, 40 frames) with one walker and maybe a runner."""
    n, fps = 40, 8.0
    labels = np.zeros(n, np.uint8)
    walker = Track(
        0,
        "person",
        np.arange(n, dtype=np.int32),
        np.tile(np.array([[10, 10, 14, 18]], np.int32), (n, 1)),
        False,
    )
    tracks = [walker]
    intervals = np.zeros((0, 2), np.float32)
    if anomalous:
        labels[16:32] = 1
        frames = np.arange(16, 32, dtype=np.int32)
        x = np.linspace(50, 5, 16).astype(np.int32)
        boxes = np.stack([x, np.full(16, 40), x + 4, np.full(16, 48)], 1).astype(np.int32)
        tracks.append(Track(1, "person", frames, boxes, True))
        intervals = np.array([[2.0, 4.0]], np.float32)
    return SynthVideo(
        video_id="test_000001",
        seed=1234,
        frames=np.zeros((n, 64, 64, 3), np.uint8),
        fps=fps,
        labels=labels,
        anomaly_type="running" if anomalous else "normal",
        intervals=intervals,
        tracks=tracks,
        masks=np.zeros((n, 64, 64), np.uint8),
        spatial_word="bottom" if anomalous else "",
        scene_description="A plaza with two buildings.",
        event_description="A person runs from right to left." if anomalous else "People walk.",
        frame_captions=["a plaza"] * n,
    )


def test_synth_instructions_anomalous():
    video = _synth_video(True)
    facts = I.facts_from_synth(video)
    assert facts.duration == 5.0 and facts.intervals == ((2.0, 4.0),)
    assert facts.target == "person" and facts.trajectory == "left"
    items = I.synth_instructions(video)
    assert set(items) == {"caption", "anomaly", "yes_no", "target", "trajectory", "spatial", "mcqa"}
    assert items["spatial"][1]["value"] == "The anomaly happens at the bottom of the frame."
    assert items["trajectory"][1]["value"] == "The person moves to the left."
    q = items["mcqa"]
    assert q.options[q.answer_index].interval == (2.0, 4.0)
    assert q.options[q.answer_index].anomaly_type == "running"
    assert I.synth_instructions(video) == items


def test_synth_instructions_normal():
    items = I.synth_instructions(_synth_video(False))
    assert "trajectory" not in items
    assert items["yes_no"][1]["value"] == T.NO_ANSWER
    assert items["mcqa"].options[items["mcqa"].answer_index].interval is None


def test_synth_instructions_from_renderer():
    render = pytest.importorskip("vau_jax.data.synthvad.render").render_video
    from vau_jax.data.synthvad.types import SynthConfig

    config = SynthConfig(anomaly_prob=1.0, min_seconds=2.0, max_seconds=3.0)
    for seed, kind in enumerate(("running", "fire", "abandoned_object")):
        video = render(seed, config, anomaly_type=kind)
        items = I.synth_instructions(video)
        q = items["mcqa"]
        true = I.facts_from_synth(video).main_interval
        assert q.options[q.answer_index].interval == (round(true[0], 1), round(true[1], 1))
        assert q.options[q.answer_index].anomaly_type == kind
        assert items["spatial"][1]["value"].endswith(T.SPATIAL_PHRASES[video.spatial_word] + ".")
        if kind != "running":  # fires and dropped bags do not travel
            assert items["trajectory"][1]["value"].endswith("stays in place.")
