"""The folder layout's annotations.csv: valid rows read, every broken rule named with its line."""

import os

import pytest

from vau_jax.data.formats import FormatError
from vau_jax.data.formats.folder import read_folder_csv
from vau_jax.data.formats.layouts import read_layout

HEADER = "video,split,label,start_s,end_s"


@pytest.fixture
def folder(tree_copy):
    """(root, csv path, video file names) of a private folder tree (3 s videos at 8 fps)."""
    root = tree_copy("folder")
    files = sorted(os.listdir(os.path.join(root, "videos")))
    return root, os.path.join(root, "annotations.csv"), files


def _write(path, *rows, header=HEADER):
    with open(path, "w", newline="") as f:
        f.write("".join(f"{r}\n" for r in (header, *rows)))


def test_valid_rows(folder):
    root, csv_path, files = folder
    a, b, c = files[:3]
    _write(
        csv_path,
        f"{a},train,NORMAL,,",
        f"{b},test,Fighting,2.0,2.5",
        f"{b},test,Fighting,0.5,1.0",
        f"{c},train,Fighting,0,1.5",  # train times are allowed (kept in extra, not intervals)
    )
    recs = read_layout("folder", root)
    train = {r.id: r for r in recs["train"]}
    (test,) = recs["test"]
    assert train[a[:-4]].label == "Normal" and train[a[:-4]].fps is None
    assert test.label == "Fighting" and test.intervals == []
    assert test.extra["intervals_s"] == [(0.5, 1.0), (2.0, 2.5)]  # sorted
    assert test.fps == 8.0 and test.n_frames == 24  # probed for the duration check
    assert train[c[:-4]].extra["intervals_s"] == [(0.0, 1.5)] and train[c[:-4]].intervals == []


@pytest.mark.parametrize(
    ("rows", "line", "reason"),
    [
        (["{a},test,Running,2.0,1.0"], 2, "must be before end_s"),
        (["{a},test,Running,1.0,1.0"], 2, "must be before end_s"),
        (["{a},test,Running,-1.0,1.0"], 2, "negative time"),
        (["{a},test,Running,one,2.0"], 2, "start_s: expected seconds"),
        (["{a},test,Running,1.0,nan"], 2, "finite"),
        (["{a},test,Running,1.0,3.5"], 2, "past the video's duration"),
        (["{a},test,Running,1.0,"], 2, "both start_s and end_s"),
        (["{a},valid,normal,,"], 2, "unknown split 'valid'"),
        (["{a},test,,,"], 2, "empty label"),
        (["{a},test,normal,0.5,1.0"], 2, "normal video has no anomalous interval"),
        (["{a},test,Running,,"], 2, "give start_s,end_s"),
        (["{a},test,Running,0.5,1.0", "{a},train,Running,1.5,2.0"], 3, "disagree"),
        (["{a},test,Running,0.5,1.0", "{a},test,Fighting,1.5,2.0"], 3, "disagree"),
        (["{a},test,Running,0.5,1.5", "{a},test,Running,1.0,2.0"], 3, "overlaps"),
        (["{a},train,normal,,", "{a},train,normal,,"], 3, "only row"),
        (["{a},train,Running,,", "{a},train,Running,0.5,1.0"], 3, "row without times"),
        (["{a},test,normal,,,"], 2, "expected 5 columns"),
        (["../{a},test,normal,,"], 2, "file name under videos/"),
        (["ghost.mp4,test,normal,,"], 2, "not found"),
    ],
)
def test_bad_rows(folder, rows, line, reason):
    _, csv_path, files = folder
    _write(csv_path, *(r.format(a=files[0]) for r in rows))
    with pytest.raises(FormatError, match=reason) as err:
        read_folder_csv(csv_path)
    assert str(err.value).startswith(f"{csv_path}:{line}: ")


@pytest.mark.parametrize(
    "header",
    ["video,split,label,start,end", "video,label,split,start_s,end_s", "video,split,label,start_s"],
)
def test_wrong_header(folder, header):
    _, csv_path, files = folder
    _write(csv_path, f"{files[0]},test,normal,,", header=header)
    with pytest.raises(FormatError, match="header must be") as err:
        read_folder_csv(csv_path)
    assert str(err.value).startswith(f"{csv_path}:1: ")


def test_empty_file_and_bom(folder):
    _, csv_path, files = folder
    open(csv_path, "w").close()
    with pytest.raises(FormatError, match="empty file") as err:
        read_folder_csv(csv_path)
    assert str(err.value).startswith(f"{csv_path}: ")
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as f:  # as spreadsheets save it
        f.write(f"{HEADER}\r\n{files[0]},test,normal,,\r\n\r\n")
    (rec,) = read_folder_csv(csv_path)
    assert rec.label == "Normal"


def test_same_id_twice(folder):
    root, csv_path, files = folder
    src = os.path.join(root, "videos", files[0])
    os.link(src, src[:-4] + ".mkv")
    _write(csv_path, f"{files[0]},test,normal,,", f"{files[0][:-4]}.mkv,test,normal,,")
    with pytest.raises(FormatError, match="also used at line 2") as err:
        read_folder_csv(csv_path)
    assert str(err.value).startswith(f"{csv_path}:3: ")
