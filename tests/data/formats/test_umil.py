"""UMIL / VAD-LLaMA list reader (text lists and VAD-LLaMA's JSON)."""

import json

import pytest

from vau_jax.data.formats import FormatError, read_umil
from vau_jax.data.formats.umil import NormalIntervalsWarning, read_vadllama_json

LINES = """\
Abuse/Abuse028_x264.mp4 1412 Abuse 165 240 -1 -1
Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4 1800 Normal -1 -1 -1 -1
Arson/Arson011_x264.mp4 2000 Arson 150 420 680 1267
Arrest/Arrest001_x264.mp4 2374 2
"""


def _write(tmp_path, text):
    p = tmp_path / "ucf_test.txt"
    p.write_text(text)
    return str(p)


def test_reads_list(tmp_path):
    recs = read_umil(_write(tmp_path, LINES), video_root="/data/ucf")
    assert [r.id for r in recs] == [
        "Abuse028_x264",
        "Normal_Videos_003_x264",
        "Arson011_x264",
        "Arrest001_x264",
    ]
    assert recs[0].n_frames == 1412 and recs[0].intervals == [(165, 240)]
    assert recs[0].path == "/data/ucf/Abuse/Abuse028_x264.mp4"
    assert recs[1].label == "Normal" and recs[1].intervals == []
    assert recs[2].intervals == [(150, 420), (680, 1267)]
    assert recs[3].label == "Anomaly" and recs[3].extra["class_index"] == 2
    assert recs[0].frame_labels().shape == (1412,)
    assert recs[0].frame_labels().sum() == 75


def test_class_index_mapping_and_extra_columns(tmp_path):
    path = _write(tmp_path, "a.mp4 100 1 10 20 cam7\nb.mp4 50 0\n")
    recs = read_umil(path, classes=["Normal", "Abuse"])
    assert recs[0].label == "Abuse" and recs[0].extra["columns"] == ["cam7"]
    assert recs[1].label == "Normal"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a.mp4 100", "expected 'path n_frames class"),
        ("a.mp4 abc Abuse", "n_frames: expected an integer"),
        ("a.mp4 100 Abuse 10 20 30", "odd number"),
        ("a.mp4 100 Abuse 150 160", "starts after the last frame 99"),
        ("a.mp4 100 Abuse 20 10", "end 10 before start 20"),
    ],
)
def test_malformed(tmp_path, line, reason):
    path = _write(tmp_path, LINES + line + "\n")
    with pytest.raises(FormatError, match=reason) as err:
        read_umil(path)
    assert str(err.value).startswith(f"{path}:5:")


def test_index_out_of_range(tmp_path):
    with pytest.raises(FormatError, match=r":1: class index 3 outside 0..1"):
        read_umil(_write(tmp_path, "a.mp4 100 3\n"), classes=["Normal", "Abuse"])


# ----------------------------------------------------------------------------- normal videos

# TAD's list (UMIL labels/TAD_test.txt) writes every normal video as "0 n_frames", under the
# class index 0, or the class name "normal" in lists that spell classes out.
TAD_LINES = """\
frames/abnormal/03_IllegalOccupation_004.mp4 255 3 0 256
frames/abnormal/01_Accident_006.mp4 266 1 75 110
frames/normal/Normal_008.mp4 77 0 0 77
frames/normal/Normal_011.mp4 70 normal 0 70
frames/normal/Normal_014.mp4 101 NORMAL 0 101
frames/normal/Normal_017.mp4 104 Normal -1 -1
"""


def test_normal_class_has_no_anomalous_frames_whatever_its_columns(tmp_path):
    path = _write(tmp_path, TAD_LINES)
    with pytest.warns(NormalIntervalsWarning) as caught:
        recs = read_umil(path)
    assert len(caught) == 1  # once per file, for three videos
    message = str(caught[0].message)
    assert message.startswith(f"{path}: 3 video(s) of class normal")
    assert "line 3, line 4, line 5" in message
    by_id = {r.id: r for r in recs}
    for vid, n in (("Normal_008", 77), ("Normal_011", 70), ("Normal_014", 101)):
        r = by_id[vid]
        assert r.label == "Normal" and r.intervals == [] and not r.is_anomalous
        assert r.frame_labels().sum() == 0
        assert r.extra["ignored_intervals"] == [(0, n)]
    assert (
        by_id["Normal_017"].label == "Normal"
        and "ignored_intervals" not in by_id["Normal_017"].extra
    )
    # an anomalous video whose interval starts at frame 0 keeps it (the reader does not judge)
    occ = by_id["03_IllegalOccupation_004"]
    assert occ.label == "Anomaly" and occ.intervals == [(0, 256)]
    # ... and its end past the last frame (255 frames) is kept, clipped by frame_labels
    assert occ.frame_labels().sum() == 255
    # class names: mapped index 0 is normal too
    with pytest.warns(NormalIntervalsWarning):
        recs = read_umil(_write(tmp_path, "a.mp4 50 0 0 50\n"), classes=["normal", "Abuse"])
    assert recs[0].label == "Normal" and recs[0].intervals == []


def test_clean_list_does_not_warn(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_umil(_write(tmp_path, LINES))


def test_interval_ending_past_the_last_frame_is_clipped_not_rejected(tmp_path):
    # real UCF-Crime list: Arson011 has 1266 frames and the interval 680 1267
    recs = read_umil(_write(tmp_path, "frames/Arson/Arson011_x264.mp4 1266 3 150 420 680 1267\n"))
    assert recs[0].intervals == [(150, 420), (680, 1267)]  # kept as written
    labels = recs[0].frame_labels()
    assert labels.shape == (1266,)
    assert labels.sum() == (420 - 150) + (1266 - 680)


# ----------------------------------------------------------------------------- VAD-LLaMA JSON

VADLLAMA_JSON = [
    {
        "video": "frames/Abuse/Abuse028_x264.mp4",
        "temporal_label": [165, 240, -1, -1],
        "length": 1412,
        "QA": [{"q": "Is there any anomaly in the video?", "a": "Yes."}],
    },
    {
        "video": "frames/Arson/Arson011_x264.mp4",
        "temporal_label": [150, 420, 680, 1267],
        "length": 1266,
        "QA": [{"q": "Is there any anomaly in the video?", "a": "Yes."}],
    },
    {
        "video": "frames/Normal/Normal_Videos_003_x264.mp4",
        "temporal_label": [-1, -1, -1, -1],
        "length": 2822,
        "QA": [{"q": "Is there any anomaly in the video?", "a": "No."}],
    },
    {"video": "frames/abnormal/05_else_038.mp4", "temporal_label": [0, 88], "length": 262},
    {"video": "frames/normal/Normal_008.mp4", "temporal_label": [0, 77], "length": 77},
]


def _write_json(tmp_path, obj, name="UCF_Eval.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


def test_reads_vadllama_json(tmp_path):
    path = _write_json(tmp_path, VADLLAMA_JSON)
    with pytest.warns(NormalIntervalsWarning, match="1 video"):
        recs = read_vadllama_json(path, video_root="/data")
    with pytest.warns(NormalIntervalsWarning):
        assert [(r.id, r.label, r.intervals) for r in read_umil(path)] == [
            (r.id, r.label, r.intervals) for r in recs
        ]
    by_id = {r.id: r for r in recs}
    abuse = by_id["Abuse028_x264"]
    assert (abuse.label, abuse.n_frames, abuse.intervals) == ("Abuse", 1412, [(165, 240)])
    assert abuse.path == "/data/frames/Abuse/Abuse028_x264.mp4"
    assert abuse.extra["QA"][0]["a"] == "Yes."
    arson = by_id["Arson011_x264"]
    assert arson.intervals == [(150, 420), (680, 1267)]
    assert arson.frame_labels().sum() == (420 - 150) + (1266 - 680)
    assert by_id["Normal_Videos_003_x264"].label == "Normal"
    assert by_id["Normal_Videos_003_x264"].intervals == []
    assert by_id["05_else_038"].label == "Anomaly"
    assert by_id["05_else_038"].intervals == [(0, 88)]
    normal = by_id["Normal_008"]
    assert normal.label == "Normal" and normal.intervals == []
    assert normal.extra["ignored_intervals"] == [(0, 77)]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"video": "a/b.mp4"}, "entry 1: missing field 'length'"),
        ({"video": "a/b.mp4", "length": 0}, "entry 1: 'length' must be positive"),
        ({"video": "a/b.mp4", "length": 9, "temporal_label": [1]}, "entry 1: odd number"),
        ({"video": "a/b.mp4", "length": 9, "temporal_label": [5, 2]}, "entry 1: interval end 2"),
        ({"video": "a/b.mp4", "length": 9, "temporal_label": [9, 12]}, "entry 1: interval"),
        ({"video": "a/b.mp4", "length": "x"}, "entry 1: 'length': expected an integer"),
        ({"video": "frames/Abuse/Abuse028_x264.mp4", "length": 9}, "entry 1: duplicate video"),
        ("text", "entry 1: expected an object"),
    ],
)
def test_vadllama_json_errors(tmp_path, entry, reason):
    path = _write_json(tmp_path, [VADLLAMA_JSON[0], entry])
    with pytest.raises(FormatError, match=reason) as err:
        read_vadllama_json(path)
    assert str(err.value).startswith(f"{path}: ")


def test_vadllama_json_not_a_list(tmp_path):
    with pytest.raises(FormatError, match="expected a JSON list"):
        read_vadllama_json(_write_json(tmp_path, {"video": "a.mp4"}))
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(FormatError, match=r"bad.json:1: invalid JSON"):
        read_vadllama_json(str(bad))
