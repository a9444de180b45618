"""End-to-end tests of ``python -m vau_jax.evaluate`` on files written in each format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args: str) -> tuple[int, dict | None, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "vau_jax.evaluate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    out = None
    if proc.returncode == 0:
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout  # exactly one JSON object
        out = json.loads(lines[0])
    return proc.returncode, out, proc.stderr


def _write_ucf(tmp_path, rng):
    ann = tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    ann.write_text(
        "Abuse028_x264.mp4  Abuse  16  64  -1  -1\n"
        "Arson011_x264.mp4  Arson  0  32  80  96\n"
        "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
    )
    pred = tmp_path / "scores"
    pred.mkdir()
    scores = {
        "Abuse028_x264": rng.random(6),
        "Arson011_x264": rng.random(8),
        "Normal_Videos_003_x264": rng.random(5),
    }
    for k, v in scores.items():
        np.save(pred / f"{k}.npy", v.astype(np.float32))
    return ann, pred, scores


def _labels(n, intervals):
    y = np.zeros(n, np.uint8)
    for s, e in intervals:
        y[s:e] = 1
    return y


@pytest.mark.parity
def test_frame_auc(tmp_path):
    ann, pred, scores = _write_ucf(tmp_path, np.random.default_rng(0))
    rc, out, err = run_cli("--metric=frame_auc", f"--gt={ann}", f"--pred={pred}")
    assert rc == 0, err
    s = {k: np.repeat(v.astype(np.float32).astype(np.float64), 16) for k, v in scores.items()}
    ya, yb = _labels(96, [(16, 64)]), _labels(128, [(0, 32), (80, 96)])
    yn = np.zeros(80)
    auc_o = skm.roc_auc_score(
        np.r_[ya, yb, yn],
        np.r_[s["Abuse028_x264"], s["Arson011_x264"], s["Normal_Videos_003_x264"]],
    )
    auc_a = skm.roc_auc_score(np.r_[ya, yb], np.r_[s["Abuse028_x264"], s["Arson011_x264"]])
    assert set(out) == {"AUC_O", "AUC_A"}
    assert out["AUC_O"] == pytest.approx(auc_o, abs=1e-14)
    assert out["AUC_A"] == pytest.approx(auc_a, abs=1e-14)
    rc, umil, err = run_cli(
        "--metric=frame_auc", f"--gt={ann}", f"--pred={pred}", "--protocol=umil", "--windows=32"
    )
    assert rc == 0, err
    assert umil != out and 0.0 <= umil["AUC_A"] <= 1.0


def _umil_loop(seg, n, windows=32):
    """The UMIL mapping and window averaging as plain loops (protocol text)."""
    r = n / len(seg)
    out = np.zeros(n)
    for i, v in enumerate(seg):
        out[int(i * r + 0.5) : int((i + 1) * r + 0.5)] = v
    size = n // windows
    res = out.copy()
    for w in range(windows):
        res[w * size : (w + 1) * size] = out[w * size : (w + 1) * size].mean() if size else 0
    res[size * windows :] = out[size * windows :].mean()
    return res


@pytest.mark.parity
def test_frame_auc_umil_list(tmp_path):
    _, pred, scores = _write_ucf(tmp_path, np.random.default_rng(3))
    lst = tmp_path / "test_list.txt"
    lst.write_text(
        "Abuse/Abuse028_x264.mp4 100 Abuse 16 64 -1 -1\n"
        "Arson/Arson011_x264.mp4 120 Arson 0 32 80 96\n"
        "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4 70 Normal -1 -1 -1 -1\n"
    )
    rc, out, err = run_cli(
        "--metric=frame_auc",
        "--gt_format=umil",
        f"--gt={lst}",
        f"--pred={pred}",
        "--protocol=umil",
        "--windows=32",
    )
    assert rc == 0, err
    s = {k: v.astype(np.float32).astype(np.float64) for k, v in scores.items()}
    ya, yb = _labels(100, [(16, 64)]), _labels(120, [(0, 32), (80, 96)])
    sa = _umil_loop(s["Abuse028_x264"], 100)
    sb = _umil_loop(s["Arson011_x264"], 120)
    sn = _umil_loop(s["Normal_Videos_003_x264"], 70)
    assert out["AUC_O"] == pytest.approx(
        skm.roc_auc_score(np.r_[ya, yb, np.zeros(70)], np.r_[sa, sb, sn]), abs=1e-14
    )
    assert out["AUC_A"] == pytest.approx(skm.roc_auc_score(np.r_[ya, yb], np.r_[sa, sb]), abs=1e-14)


def test_frame_auc_errors(tmp_path):
    ann, pred, _ = _write_ucf(tmp_path, np.random.default_rng(0))
    np.save(pred / "Extra_x264.npy", np.ones(3))
    rc, _, err = run_cli("--metric=frame_auc", f"--gt={ann}", f"--pred={pred}")
    assert rc == 2 and "Extra_x264" in err and "not in the annotation" in err
    os.remove(pred / "Extra_x264.npy")
    np.save(pred / "Abuse028_x264.npy", np.array([0.1, np.nan, 0.3]))
    rc, _, err = run_cli("--metric=frame_auc", f"--gt={ann}", f"--pred={pred}")
    assert rc == 2 and "Abuse028_x264.npy" in err and "nan" in err
    os.remove(pred / "Abuse028_x264.npy")
    rc, _, err = run_cli("--metric=frame_auc", f"--gt={ann}", f"--pred={pred}")
    assert rc == 2 and "no scores" in err and "Abuse028_x264" in err
    bad = tmp_path / "bad.txt"
    bad.write_text("Abuse028_x264.mp4  Abuse  16\n")
    rc, _, err = run_cli("--metric=frame_auc", f"--gt={bad}", f"--pred={pred}")
    assert rc == 2 and f"{bad}:1" in err


def _write_tad_list(tmp_path):
    """A TAD-style list (normal written as '0 n_frames', an anomaly from frame 0), its JSON
    twin and scores; hand-derived AUCs in tests/eval/test_frame_protocols.py."""
    lst = tmp_path / "TAD_test.txt"
    lst.write_text(
        "frames/abnormal/A.mp4 64 1 16 48\n"
        "frames/abnormal/B.mp4 64 1 0 32\n"
        "frames/normal/N.mp4 64 0 0 64\n"
    )
    js = tmp_path / "TAD_Eval.json"
    js.write_text(
        json.dumps(
            [
                {"video": "frames/abnormal/A.mp4", "temporal_label": [16, 48], "length": 64},
                {"video": "frames/abnormal/B.mp4", "temporal_label": [0, 32], "length": 64},
                {"video": "frames/normal/N.mp4", "temporal_label": [0, 64], "length": 64},
            ]
        )
    )
    pred = tmp_path / "scores"
    pred.mkdir()
    for vid, v in {
        "A": [0.10, 0.80, 0.68, 0.72],
        "B": [0.70, 0.60, 0.30, 0.75],
        "N": [0.65, 0.40, 0.25, 0.05],
    }.items():
        np.save(pred / f"{vid}.npy", np.asarray(v, np.float32))
    return lst, js, pred


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        ("ucf", {"AUC_O": 25 / 32, "AUC_A": 10 / 16}),
        ("umil", {"AUC_O": 25 / 32, "AUC_A": 10 / 16}),
        ("vadllama", {"AUC_O": 17 / 20, "AUC_A": 3 / 4}),
    ],
)
def test_frame_auc_tad_list_protocols(tmp_path, protocol, expected):
    lst, js, pred = _write_tad_list(tmp_path)
    for gt in (lst, js):
        rc, out, err = run_cli(
            "--metric=frame_auc",
            "--gt_format=umil",
            f"--gt={gt}",
            f"--pred={pred}",
            f"--protocol={protocol}",
        )
        assert rc == 0, err
        assert out == pytest.approx(expected, abs=1e-14)
        assert err.count("1 video(s) of class normal") == 1  # the reader's warning, once
    rc, _, err = run_cli(
        "--metric=frame_auc",
        "--gt_format=umil",
        f"--gt={lst}",
        f"--pred={pred}",
        "--protocol=vadllama",
        "--windows=8",
    )
    assert rc == 2 and "always averages over 32 windows" in err


@pytest.mark.parity
def test_xd_ap(tmp_path):
    ann = tmp_path / "annotations.txt"
    ann.write_text("Fight.2001__#00-01-00_00-02-00_label_B1-0-0 16 48\n")
    pred = tmp_path / "scores"
    pred.mkdir()
    rng = np.random.default_rng(1)
    fight, calm = rng.random(4), rng.random(3)
    np.save(pred / "Fight.2001__#00-01-00_00-02-00_label_B1-0-0.npy", fight)
    np.save(pred / "Calm.2002__#00-00-00_00-01-00_label_A.npy", calm)
    rc, out, err = run_cli("--metric=xd_ap", f"--gt={ann}", f"--pred={pred}")
    assert rc == 0, err
    y = np.r_[np.zeros(48), _labels(64, [(16, 48)])]  # sorted ids: Calm..., Fight...
    s = np.r_[np.repeat(calm, 16), np.repeat(fight, 16)]
    p, r, _ = skm.precision_recall_curve(y, s)
    assert out == pytest.approx(
        {"AP_trapz": skm.auc(r, p), "AP_step": skm.average_precision_score(y, s)}, abs=1e-14
    )


@pytest.mark.parity
def test_ubnormal_auc(tmp_path):
    rng = np.random.default_rng(2)
    pred = tmp_path / "scores"
    pred.mkdir()
    labels, scores = [], []
    for vid, (start, end), n in (("abnormal_scene_1_scenario_1", (3, 7), 12), ("abn_2", (0, 4), 9)):
        d = tmp_path / "Scene1" / f"{vid}_annotations"
        d.mkdir(parents=True)
        (d / f"{vid}_tracks.txt").write_text(f"1,{start},{end}\n")
        for f in range(n):
            mask = np.zeros([16, 16], np.uint8)
            if start <= f <= end:
                mask[2:6, 3:9] = 1
            Image.fromarray(mask).save(d / f"{vid}_{f:04d}_gt.png")
        s = rng.random(n)
        np.savetxt(pred / f"{vid}.txt", s)
        labels.append(_labels(n, [(start, end + 1)]))
        scores.append(s)
    rc, out, err = run_cli("--metric=ubnormal_auc", f"--gt={tmp_path / 'Scene1'}", f"--pred={pred}")
    assert rc == 0, err
    order = [1, 0]  # sorted ids: abn_2, abnormal_scene_...
    micro = skm.roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    macro = np.mean(
        [skm.roc_auc_score(np.r_[0, labels[i], 1], np.r_[0, scores[i], 1]) for i in order]
    )
    assert out == pytest.approx({"micro_AUC": micro, "macro_AUC": macro}, abs=1e-9)
    np.savetxt(pred / "abn_2.txt", rng.random(8))
    rc, _, err = run_cli("--metric=ubnormal_auc", f"--gt={tmp_path / 'Scene1'}", f"--pred={pred}")
    assert rc == 2 and "'abn_2': 8 frame scores but 9 frames" in err


def test_rbdc_tbdc(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    # the hand-derived example of tests/eval/test_rbdc_tbdc.py: RBDC 0.6333, TBDC 0.95
    (gt / "v.txt").write_text("1, 0, 0, 0, 9, 9\n1, 1, 0, 0, 9, 9\n2, 1, 20, 20, 29, 29\n")
    (pred / "v.txt").write_text(
        "0 0 0 9 9 0.9\n1 50 50 59 59 0.8\n0 0 0 9 9 0.7\n1 25 20 34 29 0.6\n1 9 0 18 9 0.5\n"
    )
    (pred / "normal.txt").write_text("")  # a normal video without detections
    meta = tmp_path / "meta.txt"
    meta.write_text("v 6\nnormal 4\n")
    for extra in ("--num_frames=10", f"--meta={meta}"):
        rc, out, err = run_cli("--metric=rbdc_tbdc", f"--gt={gt}", f"--pred={pred}", extra)
        assert rc == 0, err
        assert out == pytest.approx({"RBDC": 0.1 / 3 + 0.6, "TBDC": 0.95}, abs=1e-14)
    rc, _, err = run_cli("--metric=rbdc_tbdc", f"--gt={gt}", f"--pred={pred}")
    assert rc == 2 and "--num_frames" in err
    meta.write_text("v 6\n")
    rc, _, err = run_cli("--metric=rbdc_tbdc", f"--gt={gt}", f"--pred={pred}", f"--meta={meta}")
    assert rc == 2 and "'normal'" in err and str(meta) in err
    (pred / "v.txt").write_text("0 0 0 9 9 0.9\n1 50 50 59\n")
    rc, _, err = run_cli("--metric=rbdc_tbdc", f"--gt={gt}", f"--pred={pred}", "--num_frames=10")
    assert rc == 2 and f"{pred / 'v.txt'}:2: expected 6 columns" in err


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_text_metrics(tmp_path):
    gt = _jsonl(
        tmp_path / "gt.jsonl",
        [
            {"id": "q1", "answer": "a man runs across the street"},
            {"id": "q2", "answer": ["the car is on fire", "a car burns near the street"]},
        ],
    )
    pred = _jsonl(
        tmp_path / "pred.jsonl",
        [{"id": "q2", "answer": "the car is on fire"}, {"id": "q1", "answer": "a man runs"}],
    )
    rc, out, err = run_cli("--metric=bleu", f"--gt={gt}", f"--pred={pred}")
    assert rc == 0, err
    assert set(out) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "BLEU-4_sentence_avg"}
    assert out["BLEU-1"] == pytest.approx(np.exp(1 - 11 / 8))  # all 8 unigrams match; BP
    assert out["BLEU-4_sentence_avg"] == pytest.approx(0.5)  # q2 exact (1), q1 no 4-gram (0)

    yn_gt = _jsonl(
        tmp_path / "yn_gt.jsonl", [{"id": 1, "answer": "yes"}, {"id": 2, "answer": "no"}]
    )
    yn_pred = _jsonl(
        tmp_path / "yn_pred.jsonl",
        [{"id": 1, "answer": "Yes, a fight."}, {"id": 2, "answer": "Yes"}],
    )
    rc, out, err = run_cli("--metric=yesno", f"--gt={yn_gt}", f"--pred={yn_pred}")
    assert rc == 0, err
    assert out == {"Acc": 0.5}

    opts = ["Fighting from 2s to 5s", "Arson from 2s to 5s", "Fighting from 8s to 9s", "Normal"]
    ivs = [[2, 5], [2, 5], [8, 9], [0, 0]]
    mc_gt = _jsonl(
        tmp_path / "mc_gt.jsonl",
        [{"id": f"m{i}", "options": opts, "answer_index": 0, "intervals": ivs} for i in range(4)],
    )
    mc_pred = _jsonl(
        tmp_path / "mc_pred.jsonl",
        [
            {"id": "m0", "answer": "(A)"},
            {"id": "m1", "answer": "Answer: B"},
            {"id": "m2", "answer_index": 2},
            {"id": "m3", "answer": "fighting from 2s to 5s"},
        ],
    )
    rc, out, err = run_cli("--metric=mcqa", f"--gt={mc_gt}", f"--pred={mc_pred}")
    assert rc == 0, err
    assert out == {"Total_Acc": 0.5, "Temporal_Acc": 0.75}
    # object options; a normal video's correct option has no interval (null)
    objs = [{"text": t, "interval": iv} for t, iv in zip(opts, ivs)]
    objs[3]["interval"] = None
    mc_obj = _jsonl(
        tmp_path / "mc_obj.jsonl",
        [{"id": f"m{i}", "options": objs, "answer_index": 3} for i in range(4)],
    )
    rc, out, err = run_cli("--metric=mcqa", f"--gt={mc_obj}", f"--pred={mc_pred}")
    assert rc == 0, err
    assert out == {"Total_Acc": 0.0, "Temporal_Acc": 0.0}
    bad = _jsonl(
        tmp_path / "mc_bad.jsonl",
        [{"id": f"m{i}", "options": opts, "answer_index": 0} for i in range(4)],
    )
    rc, _, err = run_cli("--metric=mcqa", f"--gt={bad}", f"--pred={mc_pred}")
    assert rc == 2 and f"{bad}:1: expected 'options'" in err


def test_text_metric_errors(tmp_path):
    gt = _jsonl(tmp_path / "gt.jsonl", [{"id": "a", "answer": "yes"}, {"id": "b", "answer": "no"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "answer": "yes"}\n{"id": "b", "answer": \n')
    rc, _, err = run_cli("--metric=yesno", f"--gt={gt}", f"--pred={bad}")
    assert rc == 2 and f"{bad}:2: invalid JSON" in err
    other = _jsonl(
        tmp_path / "other.jsonl", [{"id": "a", "answer": "yes"}, {"id": "c", "answer": "no"}]
    )
    rc, _, err = run_cli("--metric=yesno", f"--gt={gt}", f"--pred={other}")
    assert rc == 2 and str(other) in err and "'b'" in err
    typed = _jsonl(
        tmp_path / "typed.jsonl", [{"id": "a", "answer": 3}, {"id": "b", "answer": "no"}]
    )
    rc, _, err = run_cli("--metric=yesno", f"--gt={gt}", f"--pred={typed}")
    assert rc == 2 and f"{typed}:1: field 'answer' must be str" in err
