"""Hostile annotation files: every reader of ``vau_jax.data.formats`` returns or raises a
``FormatError`` naming the file, in time (fuzzing helpers and contract: ``tests/hostile.py``).

Each test mutates a valid file of its format (token edits, truncation, invalid UTF-8, JSON
structure edits) or writes random lines / bytes, and calls the reader on it.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tests.hostile import (
    DEEP_JSON,
    expect_documented,
    fuzz_settings,
    hostile_npy,
    mutated_bytes,
    mutated_json,
    mutated_text,
    npy_bytes,
    npy_header,
    random_text_file,
)
from vau_jax.data.formats import (
    FormatError,
    load_features,
    read_features,
    read_folder_csv,
    read_hivau,
    read_layout,
    read_shanghaitech,
    read_tad,
    read_ubnormal,
    read_uca_json,
    read_uca_txt,
    read_ucf_crime,
    read_umil,
    read_vadllama_json,
    read_xd_violence,
)
from vau_jax.data.formats.mcqa import read_mc_questions
from vau_jax.data.formats.ubnormal import read_tracks_txt

N = 120  # examples per reader; each one runs in milliseconds
pytestmark = pytest.mark.filterwarnings("ignore::vau_jax.data.formats.umil.NormalIntervalsWarning")


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _text_files(valid: str) -> st.SearchStrategy[bytes]:
    return mutated_text(valid) | random_text_file()


# ----------------------------------------------------------------------------- text lists

UCF = (
    "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
    "Arson011_x264.mp4  Arson  0  32  80  96  extra\n"
    "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
)
UMIL = (
    "frames/Abuse/Abuse028_x264.mp4 1412 1 165 240 -1 -1\n"
    "frames/Normal/Normal_Videos_003_x264.mp4 2822 0 -1 -1 -1 -1\n"
    "frames/normal/Normal_008.mp4 77 0 0 77\n"
    "Abuse/Abuse030_x264.mp4 1412 Abuse 165 240 -1 -1 note\n"
)
XD = (
    "Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0 67 256 441 591\n"
    "v=abc__#1_label_G-0-0 0 10 extra\n"
)
XD_TEST = "Bad.Boys.1995__#01-11-58_01-19-44_label_B2-0-0.mp4\nnormal_label_A__0.npy\n"
UCA_TXT = (
    "Abuse037_x264 00:01.2 00:08.2 ##A white car stops in front of the gate.\n"
    "Abuse001_x264 0.0 5.2##A woman in a white shirt stands at the counter.\n"
    "Abuse001_x264 1:00:01.0 1:00:02.5 ##Later.\n"
)
TRACKS = "1,0,10\n2 5 20\n3,1.0,2.0\n"


@fuzz_settings(N)
@given(data=_text_files(UCF))
@pytest.mark.parametrize("reader", [read_ucf_crime, read_tad])
def test_ucf_crime_layout_text(tmp_path, reader, data):
    path = _write(tmp_path / "ann.txt", data)
    expect_documented(lambda: reader(path), path)


@fuzz_settings(N)
@given(data=_text_files(UMIL))
def test_umil_list(tmp_path, data):
    path = _write(tmp_path / "UCF_test.txt", data)
    expect_documented(lambda: read_umil(path, classes=["Normal", "Abuse"]), path)
    expect_documented(lambda: read_umil(path), path)


@fuzz_settings(N)
@given(data=_text_files(XD), names=_text_files(XD_TEST))
def test_xd_violence(tmp_path, data, names):
    path = _write(tmp_path / "annotations.txt", data)
    expect_documented(lambda: read_xd_violence(path), path)
    with open(path, "wb") as f:
        f.write(XD.encode())
    test_list = _write(tmp_path / "test_list.txt", names)
    expect_documented(lambda: read_xd_violence(path, test_videos=test_list), test_list)


@fuzz_settings(N)
@given(data=_text_files(UCA_TXT))
def test_uca_txt(tmp_path, data):
    path = _write(tmp_path / "UCFCrime_Test.txt", data)
    expect_documented(lambda: read_uca_txt(path), path)


@fuzz_settings(N)
@given(data=_text_files(TRACKS))
def test_ubnormal_tracks_txt(tmp_path, data):
    path = _write(tmp_path / "v_tracks.txt", data)
    expect_documented(lambda: read_tracks_txt(path), path)


# ----------------------------------------------------------------------------- JSON

VADLLAMA = [
    {
        "video": "frames/Abuse/Abuse028_x264.mp4",
        "temporal_label": [165, 240, -1, -1],
        "length": 1412,
        "QA": [{"q": "Is there any anomaly in the video?", "a": "Yes."}],
    },
    {"video": "frames/normal/Normal_008.mp4", "temporal_label": [0, 77], "length": 77},
]
UCA_JSON = {
    "Abuse001_x264": {
        "duration": 71.0,
        "timestamps": [[0.0, 5.2], ["00:05.2", 9.8]],
        "sentences": ["A woman ...", "A man ..."],
    }
}
HIVAU_SAMPLES = [
    {
        "video": "ucf/clips/Abuse001_x264_E0C2.mp4",
        "level": "clip",
        "label": "Abuse",
        "timestamps": [3.2, 6.4],
        "fps": 30,
        "n_frames": 96,
        "conversations": [
            {"from": "human", "value": "<video>\nDescribe ..."},
            {"from": "gpt", "value": "A man ..."},
        ],
    }
]
HIVAU_VIDEOS = {
    "Abuse001_x264": {
        "label": "Abuse",
        "fps": 30,
        "n_frames": 2729,
        "clips": [{"timestamps": [0.0, 3.2], "caption": "..."}],
        "events": [{"timestamps": [3.2, 12.8], "summary": "...", "label": "Abuse"}],
        "summary": "...",
    }
}
MCQA = [
    {
        "id": "q1",
        "video": "Abuse028_x264",
        "question": "Which option ...?",
        "options": ["Abuse from 5.5s to 8.0s", "Normal"],
        "intervals": [[5.5, 8.0], None],
        "answer_index": 0,
    },
    {
        "id": "q2",
        "video": "Abuse028_x264",
        "options": [{"text": "Abuse", "interval": [1, 2]}, {"text": "None", "interval": None}],
        "answer_index": 1,
    },
]


@fuzz_settings(N)
@given(data=mutated_json(VADLLAMA) | random_text_file())
def test_vadllama_json(tmp_path, data):
    path = _write(tmp_path / "UCF_Eval.json", data)
    expect_documented(lambda: read_vadllama_json(path), path)


@fuzz_settings(N)
@given(data=mutated_json(UCA_JSON) | random_text_file())
def test_uca_json(tmp_path, data):
    path = _write(tmp_path / "UCFCrime_Test.json", data)
    expect_documented(lambda: read_uca_json(path), path)


@fuzz_settings(N)
@given(
    data=mutated_json(HIVAU_SAMPLES)
    | mutated_json(HIVAU_SAMPLES * 2, lines=True)
    | mutated_json(HIVAU_VIDEOS)
    | random_text_file()
)
def test_hivau(tmp_path, data):
    path = _write(tmp_path / "hivau.json", data)
    expect_documented(lambda: read_hivau(path), path)


@fuzz_settings(N)
@given(data=mutated_json(MCQA, lines=True) | random_text_file())
def test_mcqa_jsonl(tmp_path, data):
    path = _write(tmp_path / "mcqa.jsonl", data)
    expect_documented(lambda: read_mc_questions(path, "Which?"), path)


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("l.json", read_vadllama_json),
        ("u.json", read_uca_json),
        ("h.json", read_hivau),
        ("m.jsonl", lambda p: read_mc_questions(p, "Which?")),
    ],
)
def test_json_nested_too_deep(tmp_path, name, reader):
    path = _write(tmp_path / name, DEEP_JSON)
    err = expect_documented(lambda: reader(path), path)
    assert isinstance(err, FormatError)


# ----------------------------------------------------------------------------- CSV

FOLDER_CSV = (
    "video,split,label,start_s,end_s\n"
    "cam1_0001.mp4,train,normal,,\n"
    "cam1_0002.mp4,train,Fighting,,\n"
    "cam1_0007.mp4,test,Fighting,12.5,20.0\n"
    "cam1_0007.mp4,test,Fighting,41.0,44.5\n"
    "cam1_0009.mp4,test,Normal,,\n"
)


@pytest.fixture
def folder_root(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("cam1_0001", "cam1_0002", "cam1_0007", "cam1_0009"):
        (videos / f"{name}.mp4").write_bytes(b"not a video")
    return tmp_path


@fuzz_settings(N)
@given(data=_text_files(FOLDER_CSV))
def test_folder_csv(folder_root, data):
    path = _write(folder_root / "annotations.csv", data)
    expect_documented(lambda: read_folder_csv(path), path)


# ----------------------------------------------------------------------------- binary inputs


LABELS = np.asarray([0, 0, 1, 1, 0], np.uint8)
MASKS = np.zeros([5, 4, 6], np.uint8)
MASKS[2:4, 1:3, 2:5] = 1


@fuzz_settings(N)
@given(labels=hostile_npy(LABELS), masks=hostile_npy(MASKS))
def test_shanghaitech_npy(tmp_path, labels, masks):
    for sub in ("test_frame_mask", "test_pixel_mask"):
        os.makedirs(tmp_path / sub, exist_ok=True)
    # errors name the file, or the other one when the two disagree: both are under tmp_path
    label_path = _write(tmp_path / "test_frame_mask" / "01_0014.npy", labels)
    mask_path = tmp_path / "test_pixel_mask" / "01_0014.npy"
    _write(mask_path, npy_bytes(MASKS))
    expect_documented(lambda: read_shanghaitech(tmp_path, boxes=True), str(tmp_path))
    _write(label_path, npy_bytes(LABELS))
    _write(mask_path, masks)
    expect_documented(lambda: read_shanghaitech(tmp_path, boxes=True), str(tmp_path))


@fuzz_settings(N)
@given(
    first=hostile_npy(np.zeros([4, 10, 8], np.float32)),
    layout=st.sampled_from(["i3d", "vadclip"]),
)
def test_feature_headers(tmp_path, first, layout):
    folder = tmp_path / layout / "Abuse"
    os.makedirs(folder, exist_ok=True)
    names = ("Abuse028_x264_i3d.npy",) if layout == "i3d" else ("Abuse028_x264__0.npy",)
    path = _write(folder / names[0], first)

    def read_and_load() -> None:
        for record in read_features(tmp_path / layout, layout):
            load_features(record)

    expect_documented(read_and_load, path)


@pytest.mark.parametrize("descr", ["<f8", "|u1"])
def test_npy_claiming_1e12_elements_fails_fast(tmp_path, descr):
    """A ``.npy`` header claiming 10^12 elements is refused from the header, nothing loaded."""
    for sub in ("test_frame_mask", "test_pixel_mask"):
        os.makedirs(tmp_path / sub)
    lie = npy_header(descr, (10**12,)) + b"\x00" * 64
    path = _write(tmp_path / "test_frame_mask" / "01_0014.npy", lie)
    err = expect_documented(lambda: read_shanghaitech(tmp_path), path, seconds=1.0)
    assert isinstance(err, FormatError)
    feats = tmp_path / "feats"
    feats.mkdir()
    path = _write(feats / "v_i3d.npy", npy_header(descr, (10**6, 10, 10**5)) + b"\x00" * 64)
    err = expect_documented(lambda: read_features(feats, "i3d"), path, seconds=1.0)
    assert isinstance(err, FormatError)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


MASK_PNG = _png(np.where(np.arange(48).reshape(6, 8) % 5 == 0, 1, 0).astype(np.uint8))


@fuzz_settings(N)
@given(
    mask=mutated_bytes(MASK_PNG, fields=[(16, 4), (20, 4), (33, 4)]) | st.binary(max_size=100),
    tracks=_text_files(TRACKS),
)
def test_ubnormal_annotation_dir(tmp_path, mask, tracks):
    annot = tmp_path / "Scene1" / "abnormal_scene_1_scenario_1_annotations"
    os.makedirs(annot, exist_ok=True)
    mask_path = _write(annot / "abnormal_scene_1_scenario_1_0003_gt.png", mask)
    _write(annot / "abnormal_scene_1_scenario_1_tracks.txt", TRACKS.encode())
    expect_documented(lambda: read_ubnormal(annot), mask_path)
    _write(annot / "abnormal_scene_1_scenario_1_0003_gt.png", MASK_PNG)
    tracks_path = _write(annot / "abnormal_scene_1_scenario_1_tracks.txt", tracks)
    expect_documented(lambda: read_ubnormal(tmp_path), tracks_path)


def test_png_claiming_huge_size_fails_fast(tmp_path):
    """A mask PNG whose header claims 2^31 x 2^31 pixels is refused before decoding."""
    annot = tmp_path / "v_annotations"
    annot.mkdir()
    (annot / "v_tracks.txt").write_text("1,0,3\n")
    png = bytearray(MASK_PNG)
    png[16:24] = (2**31 - 1).to_bytes(4, "big") * 2  # IHDR width, height (CRC now wrong)
    import zlib

    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    path = _write(annot / "v_0000_gt.png", bytes(png))
    err = expect_documented(lambda: read_ubnormal(annot), path, seconds=1.0)
    assert isinstance(err, FormatError)


# ----------------------------------------------------------------------------- layouts


def _touch(root, rel: str, data: bytes = b"") -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


#: Minimal published trees (empty video files: the layout reader checks they exist).
TREES: dict[str, dict[str, bytes]] = {
    "ucf_crime": {
        "Anomaly_Detection_splits/Anomaly_Train.txt": (
            b"Abuse/Abuse001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n"
        ),
        "Anomaly_Detection_splits/Anomaly_Test.txt": (
            b"Abuse/Abuse028_x264.mp4\nTesting_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4\n"
        ),
        "Temporal_Anomaly_Annotation_for_Testing_Videos.txt": (
            b"Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
            b"Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
        ),
        "UCA/UCFCrime_Test.txt": b"Abuse028_x264 0.0 5.2 ##A man.\n",
        "Videos/Abuse/Abuse001_x264.mp4": b"",
        "Videos/Abuse/Abuse028_x264.mp4": b"",
        "Videos/Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4": b"",
        "Videos/Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4": b"",
    },
    "tad": {
        "train_split.txt": b"abnormal/01_Accident_001.mp4\nnormal/normal_001.mp4\n",
        "test_split.txt": b"abnormal/01_Accident_002.mp4\nnormal/normal_002.mp4\n",
        "vals.txt": (
            b"01_Accident_002.mp4  Accident  186  296  -1  -1\n"
            b"normal_002.mp4  Normal  -1  -1  -1  -1\n"
        ),
        "videos/abnormal/01_Accident_001.mp4": b"",
        "videos/abnormal/01_Accident_002.mp4": b"",
        "videos/normal/normal_001.mp4": b"",
        "videos/normal/normal_002.mp4": b"",
    },
    "xd_violence": {
        "annotations.txt": b"fight_label_B1-0-0 10 20 30 40\n",
        "test_list.txt": b"test/fight_label_B1-0-0.mp4\ntest/quiet_label_A.mp4\n",
        "videos/train/run_label_B2-0-0.mp4": b"",
        "test/fight_label_B1-0-0.mp4": b"",
        "test/quiet_label_A.mp4": b"",
    },
    "ubnormal": {
        "scripts/abnormal_training_video_names.txt": b"abnormal_scene_1_scenario_1\n",
        "scripts/normal_training_video_names.txt": b"normal_scene_1_scenario_2\n",
        "scripts/abnormal_test_video_names.txt": b"abnormal_scene_2_scenario_1\n",
        "scripts/normal_test_video_names.txt": b"normal_scene_2_scenario_2\n",
        "Scene1/abnormal_scene_1_scenario_1.mp4": b"",
        "Scene1/normal_scene_1_scenario_2.mp4": b"",
        "Scene2/abnormal_scene_2_scenario_1.mp4": b"",
        "Scene2/normal_scene_2_scenario_2.mp4": b"",
        "Scene2/abnormal_scene_2_scenario_1_annotations/abnormal_scene_2_scenario_1_tracks.txt": (
            b"1,0,3\n"
        ),
    },
    "shanghaitech": {
        "SH_Train_new.txt": b"01_001,0\n",
        "SH_Test_NEW.txt": b"01_0014,1,5\n",
        "training/videos/01_001.avi": b"",
        "testing/test_frame_mask/01_0014.npy": npy_bytes(LABELS),
        "testing/frames/01_0014/000.jpg": b"",
    },
    "folder": {  # no times: nothing to probe in the valid tree
        "annotations.csv": (
            b"video,split,label,start_s,end_s\ncam1_0001.mp4,train,normal,,\n"
            b"cam1_0002.mp4,train,Fighting,,\ncam1_0009.mp4,test,Normal,,\n"
        ),
        **{f"videos/{v}.mp4": b"" for v in ("cam1_0001", "cam1_0002", "cam1_0007", "cam1_0009")},
    },
}
#: The files of each tree that are fuzzed (lists, annotations, captions).
FUZZED = {
    layout: [rel for rel in tree if rel.endswith((".txt", ".csv", ".json"))]
    for layout, tree in TREES.items()
}


@pytest.fixture
def trees(tmp_path):
    for layout, tree in TREES.items():
        for rel, data in tree.items():
            _touch(tmp_path / layout, rel, data)
    return tmp_path


@fuzz_settings(N)
@given(
    case=st.sampled_from([(lay, rel) for lay, rels in FUZZED.items() for rel in rels]),
    seed=st.data(),
)
def test_layouts(trees, case, seed):
    layout, rel = case
    root = trees / layout
    valid = TREES[layout][rel]
    data = seed.draw(_text_files(valid.decode()))
    _write(root / rel, data)
    try:
        expect_documented(lambda: read_layout(layout, root), str(root))
    finally:
        _write(root / rel, valid)


def test_layout_trees_are_valid(trees):
    for layout in TREES:
        out = read_layout(layout, trees / layout)
        assert out["train"] and out["test"], layout


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("l.txt", "Abuse/Abuse028_x264.mp4 1000000000000 1 16 64\n"),
        ("l.json", '[{"video": "Abuse/Abuse028_x264.mp4", "length": 1e12}]'),
        ("h.json", '[{"video": "Abuse001_x264.mp4", "n_frames": 1000000000000}]'),
    ],
)
def test_frame_count_claiming_1e12_is_refused(tmp_path, name, text):
    """A list claiming a 10^12-frame video fails in the reader, before any per-frame array."""
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write(text)
    reader = read_hivau if name.startswith("h") else read_umil
    err = expect_documented(lambda: reader(path), path, seconds=1.0)
    assert isinstance(err, FormatError) and "MAX_FRAMES" in str(err)
