"""UMIL / VAD-LLaMA list reader."""

import pytest

from vau_jax.data.formats import FormatError, read_umil

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
