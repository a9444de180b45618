"""Hostile inputs of ``python -m vau_jax.evaluate``: every metric, one fuzzed file at a time.

``evaluate()`` runs in process (flags set with ``flagsaver``) on a valid case of each metric
in which one ground-truth or prediction file is replaced by a mutated copy (token edits,
invalid UTF-8, JSON structure edits, lying ``.npy`` headers) or random bytes. It must return
or raise ``InputError`` / ``FormatError`` naming a file of the case (``tests/hostile.py``).
"""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile import (
    DEEP_JSON,
    expect_documented,
    fuzz_settings,
    hostile_npy,
    mutated_json,
    mutated_text,
    npy_bytes,
    npy_header,
    random_text_file,
)
from vau_jax import evaluate as ev

FLAGS = flags.FLAGS


def _jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


_rng = np.random.default_rng(0)
UCF = (
    b"Abuse028_x264.mp4  Abuse  16  64  -1  -1\n"
    b"Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
)
UMIL = b"Abuse/Abuse028_x264.mp4 80 1 16 64 -1 -1\nNormal/Normal_Videos_003_x264.mp4 80 0 -1 -1\n"
XD = b"Fight__#00-01-00_00-02-00_label_B1-0-0 16 48\n"
SCORES = {
    "Abuse028_x264": npy_bytes(_rng.random(5).astype(np.float32)),
    "Normal_Videos_003_x264": npy_bytes(_rng.random(5)),
}

#: metric -> (flags, {relative path: valid content}); folders are created as needed.
CASES: dict[str, tuple[dict, dict[str, bytes]]] = {
    "frame_auc": (
        {"gt": "ann.txt", "pred": "scores", "subset": "subset.txt"},
        {
            "ann.txt": UCF,
            "subset.txt": b"Abuse028_x264.mp4\nNormal_Videos_003_x264\n",
            **{f"scores/{k}.npy": v for k, v in SCORES.items()},
        },
    ),
    "frame_auc_umil": (
        {"gt": "list.txt", "pred": "scores", "gt_format": "umil", "protocol": "vadllama"},
        {"list.txt": UMIL, **{f"scores/{k}.npy": v for k, v in SCORES.items()}},
    ),
    "xd_ap": (
        {"gt": "annotations.txt", "pred": "scores"},
        {
            "annotations.txt": XD,
            "scores/Fight__#00-01-00_00-02-00_label_B1-0-0.npy": npy_bytes(_rng.random(4)),
            "scores/Calm__#00-00-00_00-01-00_label_A.npy": npy_bytes(_rng.random(3)),
        },
    ),
    "ubnormal_auc": (
        {"gt": "sh", "pred": "scores", "gt_format": "shanghaitech"},
        {
            "sh/test_frame_mask/01_0014.npy": npy_bytes(np.asarray([0, 1, 1, 0, 0, 1], np.uint8)),
            "sh/test_frame_mask/01_0015.npy": npy_bytes(np.zeros(4, np.uint8)),
            "scores/01_0014.txt": b"0.1\n0.9\n0.8\n0.2\n0.3\n0.7\n",
            "scores/01_0015.npy": npy_bytes(_rng.random(4)),
        },
    ),
    "rbdc_tbdc": (
        {"gt": "gt", "pred": "pred", "meta": "meta.txt"},
        {
            "gt/v.txt": b"1, 0, 0, 0, 9, 9\n1, 1, 0, 0, 9, 9\n2, 1, 20, 20, 29, 29\n",
            "pred/v.txt": b"0 0 0 9 9 0.9\n1 50 50 59 59 0.8\n1 25 20 34 29 0.6\n",
            "pred/normal.txt": b"",
            "meta.txt": b"v 6\nnormal 4\n",
        },
    ),
    "bleu": (
        {"gt": "gt.jsonl", "pred": "pred.jsonl"},
        {
            "gt.jsonl": _jsonl(
                [
                    {"id": "q1", "answer": "a man runs across the street"},
                    {"id": "q2", "answer": ["the car is on fire", "a car burns"]},
                ]
            ),
            "pred.jsonl": _jsonl(
                [{"id": "q2", "answer": "the car is on fire"}, {"id": "q1", "answer": "a man"}]
            ),
        },
    ),
    "yesno": (
        {"gt": "gt.jsonl", "pred": "pred.jsonl"},
        {
            "gt.jsonl": _jsonl([{"id": "a", "answer": "yes"}, {"id": "b", "answer": False}]),
            "pred.jsonl": _jsonl([{"id": "a", "answer": "Yes."}, {"id": "b", "answer": "no"}]),
        },
    ),
    "mcqa": (
        {"gt": "gt.jsonl", "pred": "pred.jsonl"},
        {
            "gt.jsonl": _jsonl(
                [
                    {
                        "id": "q1",
                        "options": ["Abuse from 1s to 2s", "Normal"],
                        "intervals": [[1, 2], None],
                        "answer_index": 0,
                    },
                    {
                        "id": "q2",
                        "options": [{"text": "Fire", "interval": [0, 3]}, {"text": "None"}],
                        "answer_index": 1,
                    },
                ]
            ),
            "pred.jsonl": _jsonl([{"id": "q1", "answer": "A"}, {"id": "q2", "answer_index": 1}]),
        },
    ),
}
_METRIC = {"frame_auc_umil": "frame_auc"}
DEFAULT_FLAGS = {"gt_format": "auto", "protocol": "ucf", "subset": None, "meta": None}


@pytest.fixture(scope="module", autouse=True)
def _parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS.mark_as_parsed()


def _build(root: str, files: dict[str, bytes]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def _run(root: str, case: str) -> None:
    given_flags, _ = CASES[case]
    values = {**DEFAULT_FLAGS, "metric": _METRIC.get(case, case)}
    for k, v in given_flags.items():
        values[k] = os.path.join(root, v) if k in ("gt", "pred", "subset", "meta") else v
    with flagsaver.flagsaver(**values):
        ev.evaluate()


@pytest.mark.parametrize("case", sorted(CASES))
def test_valid_cases_evaluate(tmp_path, case):
    _build(str(tmp_path / case), CASES[case][1])
    _run(str(tmp_path / case), case)


def _hostile(rel: str, valid: bytes) -> st.SearchStrategy[bytes]:
    if rel.endswith(".npy"):
        return hostile_npy(np.load(io.BytesIO(valid)))
    if rel.endswith(".jsonl"):
        rows = [json.loads(line) for line in valid.decode().splitlines()]
        return mutated_json(rows, lines=True) | random_text_file()
    return mutated_text(valid.decode()) | random_text_file()


_FILES = [(case, rel) for case, (_, files) in CASES.items() for rel in files]


@fuzz_settings(400)
@given(target=st.sampled_from(_FILES), draw=st.data())
def test_one_hostile_file(tmp_path, target, draw):
    case, rel = target
    files = dict(CASES[case][1])
    files[rel] = draw.draw(_hostile(rel, files[rel]), label=rel)
    root = str(tmp_path / "case")
    _build(root, files)
    expect_documented(lambda: _run(root, case), root)


@pytest.mark.parametrize("case", ["bleu", "mcqa"])
def test_jsonl_nested_too_deep(tmp_path, case):
    files = dict(CASES[case][1])
    files["gt.jsonl"] = DEEP_JSON + b"\n"
    root = str(tmp_path / case)
    _build(root, files)
    err = expect_documented(lambda: _run(root, case), os.path.join(root, "gt.jsonl"))
    assert isinstance(err, ev.InputError)


def test_npy_scores_claiming_1e12_elements_fail_fast(tmp_path):
    """A score file whose header claims 10^12 float64 is refused without allocating 8 TB."""
    files = dict(CASES["frame_auc"][1])
    files["scores/Abuse028_x264.npy"] = npy_header("<f8", (10**12,)) + b"\x00" * 64
    root = str(tmp_path / "case")
    _build(root, files)
    path = os.path.join(root, "scores", "Abuse028_x264.npy")
    err = expect_documented(lambda: _run(root, "frame_auc"), path, seconds=1.0)
    assert isinstance(err, ev.InputError)
