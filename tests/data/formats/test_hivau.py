"""HIVAU-70k JSON reader (instruction samples and per-video hierarchy)."""

import json

import pytest

from vau_jax.data.formats import FormatError, read_hivau

SAMPLES = [
    {
        "video": "ucf/clips/Abuse001_x264_E0C2.mp4",
        "level": "clip",
        "label": "Abuse",
        "timestamps": [3.2, 6.4],
        "fps": 30,
        "conversations": [
            {"from": "human", "value": "<video>\nDescribe the anomaly."},
            {"from": "gpt", "value": "A man pushes a woman."},
        ],
        "split": "test",
    },
    {
        "video": "ucf/videos/Normal_Videos_003_x264.mp4",
        "level": "video",
        "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "Nothing."}],
    },
]


def test_instruction_samples(tmp_path):
    p = tmp_path / "hivau_test.json"
    p.write_text(json.dumps(SAMPLES))
    a, n = read_hivau(str(p))
    assert a.id == "Abuse001_x264_E0C2" and a.label == "Abuse"
    assert a.intervals == [(96, 192)] and a.fps == 30
    assert a.text == "A man pushes a woman." and a.extra["level"] == "clip"
    assert a.extra["split"] == "test" and len(a.extra["conversations"]) == 2
    assert n.label == "Normal" and n.intervals == [] and n.text == "Nothing."


def test_jsonl_error_names_line(tmp_path):
    p = tmp_path / "hivau.jsonl"
    p.write_text(json.dumps(SAMPLES[0]) + "\n" + json.dumps({"conversations": []}) + "\n")
    with pytest.raises(FormatError, match=r"hivau.jsonl:2: sample: missing 'video'"):
        read_hivau(str(p))


def test_per_video_hierarchy(tmp_path):
    data = {
        "Abuse001_x264": {
            "label": "Abuse",
            "fps": 10,
            "n_frames": 300,
            "clips": [{"timestamps": [0.0, 3.2], "caption": "A shop."}],
            "events": [
                {"timestamps": [3.2, 12.8], "summary": "A fight.", "label": "Abuse"},
                {"timestamps": [0.0, 3.2], "summary": "Calm.", "label": "Normal"},
            ],
            "summary": "A man attacks a clerk.",
            "source": "ucf",
        }
    }
    p = tmp_path / "hivau_videos.json"
    p.write_text(json.dumps(data))
    (rec,) = read_hivau(str(p))
    assert rec.intervals == [(32, 128)] and rec.n_frames == 300
    assert rec.text == "A man attacks a clerk." and rec.extra["source"] == "ucf"
    assert rec.extra["clips"][0]["caption"] == "A shop."
    data["Abuse001_x264"]["events"][0]["timestamps"] = [5.0, 1.0]
    p.write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"events\[0\]: bad time span"):
        read_hivau(str(p))
