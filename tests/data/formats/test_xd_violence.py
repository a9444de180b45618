"""XD-Violence annotations.txt reader."""

import pytest

from vau_jax.data.formats import FormatError, read_xd_violence

ANN = """\
Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0 67 256 441 591
Black.Hawk.Down.2001__#02-05-29_02-06-33_label_B2-G-0 0 1535
v=0lzPR2m1qKE__#1_label_G-0-0 16 304 352 464 528 656
"""


def _write(tmp_path, text, name="annotations.txt"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_reads_intervals_and_labels(tmp_path):
    recs = read_xd_violence(_write(tmp_path, ANN))
    assert len(recs) == 3
    assert recs[0].id == "Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0"
    assert recs[0].intervals == [(67, 256), (441, 591)]
    assert recs[0].label == "Shooting"
    assert recs[1].extra["labels"] == ["Shooting", "Explosion"]
    assert recs[2].intervals == [(16, 304), (352, 464), (528, 656)]
    assert recs[2].label == "Explosion"
    assert recs[0].frame_labels(600).sum() == (256 - 67) + (591 - 441)


def test_unlisted_test_videos_are_normal(tmp_path):
    ann = _write(tmp_path, ANN)
    lst = _write(
        tmp_path,
        "/feat/Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0__0.npy\n"
        "/feat/A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A__0.npy\n"
        "/feat/A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A__1.npy\n",
        "test.list",
    )
    recs = read_xd_violence(ann, test_videos=lst)
    assert len(recs) == 4
    normal = recs[-1]
    assert normal.id == "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"
    assert normal.label == "Normal" and normal.intervals == []
    recs = read_xd_violence(ann, test_videos=["plain_video.mp4"])
    assert recs[-1].id == "plain_video" and recs[-1].label == "Normal"


def test_name_without_label_suffix_and_extra_columns(tmp_path):
    recs = read_xd_violence(_write(tmp_path, "synth_0003 5 20 fire\n"))
    assert recs[0].label == "Anomaly"
    assert recs[0].intervals == [(5, 20)]
    assert recs[0].extra["columns"] == ["fire"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("video_label_B1-0-0 5 20 30", "odd number of frame numbers"),
        ("video_label_B1-0-0", "no interval"),
        ("video_label_B1-0-0 20 5", "end 5 before start 20"),
    ],
)
def test_malformed(tmp_path, line, reason):
    path = _write(tmp_path, ANN + line + "\n")
    with pytest.raises(FormatError, match=reason) as err:
        read_xd_violence(path)
    assert str(err.value).startswith(f"{path}:4:")


def test_synthvad_codes_read_as_synthvad_classes(tmp_path):
    text = "test_000001_label_S1-0-0 1 5\ntest_000002_label_S4-B6-0 2 6\ntest_000003_label_Z9-0-0 3 7\n"
    recs = read_xd_violence(_write(tmp_path, text))
    assert recs[0].label == "Running"
    assert recs[1].extra["labels"] == ["AbandonedObject", "Car accident"]
    assert recs[2].label == "Z9"  # an unknown code is kept as written
