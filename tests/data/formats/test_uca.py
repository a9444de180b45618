"""UCA caption reader (text and JSON)."""

import json

import pytest

from vau_jax.data.formats import FormatError, read_uca

TXT = """\
Abuse001_x264 0.0 5.2##A woman in a white shirt stands at the counter.
Abuse001_x264 5.2 9.8##A man grabs her arm and pushes her to the floor.
Normal_Videos_003_x264 0.0 30.0##People walk through a parking lot.
"""


def test_txt(tmp_path):
    p = tmp_path / "UCFCrime_Test.txt"
    p.write_text(TXT)
    recs = read_uca(str(p))
    assert [r.id for r in recs] == ["Abuse001_x264", "Normal_Videos_003_x264"]
    assert recs[0].label == "Abuse" and recs[1].label == "Normal"
    assert recs[0].extra["segments"][1] == (
        5.2,
        9.8,
        "A man grabs her arm and pushes her to the floor.",
    )
    assert recs[0].text.startswith("A woman") and "A man grabs" in recs[0].text
    assert recs[0].intervals == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Abuse002_x264 0.0 5.2 A man", "missing '##'"),
        ("Abuse002_x264 0.0##A man", "expected '<video> <start> <end>##<sentence>'"),
        ("Abuse002_x264 x 5.2##A man", "start: expected seconds"),
        ("Abuse002_x264 6.0 5.2##A man", "before start"),
    ],
)
def test_txt_malformed(tmp_path, line, reason):
    p = tmp_path / "uca.txt"
    p.write_text(TXT + line + "\n")
    with pytest.raises(FormatError, match=reason) as err:
        read_uca(str(p))
    assert str(err.value).startswith(f"{p}:4:")


def test_json(tmp_path):
    data = {
        "Abuse001_x264": {
            "duration": 71.0,
            "timestamps": [[0.0, 5.2], [5.2, 9.8]],
            "sentences": ["A woman stands.", "A man pushes her."],
            "annotator": 3,
        }
    }
    p = tmp_path / "UCFCrime_Test.json"
    p.write_text(json.dumps(data))
    (rec,) = read_uca(str(p))
    assert rec.extra["segments"] == [(0.0, 5.2, "A woman stands."), (5.2, 9.8, "A man pushes her.")]
    assert rec.extra["duration"] == 71.0 and rec.extra["annotator"] == 3
    data["Abuse001_x264"]["sentences"].pop()
    p.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="2 timestamps but 1 sentences"):
        read_uca(str(p))
    p.write_text('{"a": [1,\n 2,,]}')
    with pytest.raises(FormatError, match=r"UCFCrime_Test.json:2: invalid JSON"):
        read_uca(str(p))
