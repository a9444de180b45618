"""UCF-Crime / TAD temporal annotation readers on lines in the official layout."""

import numpy as np
import pytest

from vau_jax.data.formats import FormatError, read_tad, read_ucf_crime

UCF_LINES = """\
Abuse028_x264.mp4  Abuse  165  240  -1  -1
Arrest001_x264.mp4  Arrest  1185  1485  -1  -1
Arson011_x264.mp4  Arson  150  420  680  1267
Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1

"""


def _write(tmp_path, text, name="Temporal_Anomaly_Annotation_for_Testing_Videos.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_reads_official_layout(tmp_path):
    recs = read_ucf_crime(_write(tmp_path, UCF_LINES), video_dir="/videos")
    assert [r.id for r in recs] == [
        "Abuse028_x264",
        "Arrest001_x264",
        "Arson011_x264",
        "Normal_Videos_003_x264",
    ]
    assert [r.label for r in recs] == ["Abuse", "Arrest", "Arson", "Normal"]
    assert recs[0].intervals == [(165, 240)]
    assert recs[2].intervals == [(150, 420), (680, 1267)]
    assert recs[3].intervals == [] and not recs[3].is_anomalous
    assert recs[0].path == "/videos/Abuse028_x264.mp4"
    labels = recs[0].frame_labels(300)
    assert labels.sum() == 75 and labels[165] == 1 and labels[164] == 0 and labels[240] == 0
    assert np.all(recs[3].frame_labels(100) == 0)
    assert recs[0].extra["source"].endswith(":1")


def test_extra_columns_kept(tmp_path):
    recs = read_ucf_crime(_write(tmp_path, "Abuse001_x264.mp4 Abuse 1 5 -1 -1 night cam3\n"))
    assert recs[0].extra["columns"] == ["night", "cam3"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Abuse028_x264.mp4  Abuse  165  240", "expected 6 columns"),
        ("Abuse028_x264.mp4  Abuse  16x  240  -1  -1", "column 3: expected an integer"),
        ("Abuse028_x264.mp4  Abuse  240  165  -1  -1", "end 165 before start 240"),
        ("Abuse028_x264.mp4  Abuse  165  -1  -1  -1", "negative frame"),
        ("Normal_Videos_1.mp4  Normal  1  10  -1  -1", "class 'Normal' with an anomalous"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, reason):
    path = _write(tmp_path, UCF_LINES.strip() + "\n" + line + "\n")
    with pytest.raises(FormatError, match=reason) as err:
        read_ucf_crime(path)
    assert str(err.value).startswith(f"{path}:5:")


def test_duplicate_video(tmp_path):
    path = _write(tmp_path, UCF_LINES + "Abuse028_x264.mp4  Abuse  1  2  -1  -1\n")
    with pytest.raises(
        FormatError, match=r":6: duplicate video 'Abuse028_x264' \(first at line 1\)"
    ):
        read_ucf_crime(path)


def test_tad_same_layout(tmp_path):
    text = "01_Accident_001.mp4  Accident  186  296  -1  -1\n01_Normal_003.mp4  Normal  -1  -1  -1  -1\n"
    recs = read_tad(_write(tmp_path, text, "vad_test.txt"))
    assert recs[0].id == "01_Accident_001" and recs[0].intervals == [(186, 296)]
    assert recs[1].label == "Normal"
    assert recs[0].extra["dataset"] == "tad"


def test_normal_class_in_any_case(tmp_path):
    from vau_jax.data.formats import read_ucf_crime

    p = tmp_path / "a.txt"
    p.write_text("v1.mp4  normal  -1  -1  -1  -1\nv2.mp4  NORMAL  -1  -1  -1  -1\n")
    assert [r.label for r in read_ucf_crime(str(p))] == ["Normal", "Normal"]
    p.write_text("v3.mp4  normal  3  9  -1  -1\n")
    with pytest.raises(ValueError, match="a.txt:1"):
        read_ucf_crime(str(p))
