"""T-VAU heatmap -> boxes rule (hand-checked boxes), the writers through the evaluate CLI,
and the pictures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vau_jax.eval import boxes as B
from vau_jax.eval.metrics.rbdc_tbdc import rbdc_tbdc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F = np.float32


def test_two_blobs_exact_boxes_and_scores():
    h = np.zeros([16, 16])
    h[2:5, 3:7] = 0.6  # blob A: rows 2..4, cols 3..6
    h[3, 4] = 0.9  # its maximum; the 1-pixel region at level 0.7 is below min_area 4
    h[10:13, 10:12] = 0.4  # blob B: rows 10..12, cols 10..11, only level 0.3
    out = B.heatmap_boxes(h)
    assert out.dtype == np.float32 and out.shape == (2, 5)
    # A at levels 0.3 and 0.5 is the same box (kept once); x = column, y = row, inclusive
    np.testing.assert_array_equal(out, F([[3, 2, 6, 4, 0.9], [10, 10, 11, 12, 0.4]]))


def test_score_is_the_max_inside_the_region_not_its_box():
    h = np.zeros([8, 8])
    h[0, 0:6] = h[0:6, 0] = 0.5  # an L: box [0, 0, 5, 5]
    h[3:5, 3:5] = 0.9  # inside the L's box, not connected to it
    np.testing.assert_array_equal(B.heatmap_boxes(h), F([[3, 3, 4, 4, 0.9], [0, 0, 5, 5, 0.5]]))


def test_hot_core_nested_boxes_reduced_by_nms():
    h = np.zeros([10, 10])
    h[2:8, 2:8] = 0.4  # level 0.3: [2, 2, 7, 7], 36 px
    h[2:7, 2:7] = 0.6  # level 0.5: [2, 2, 6, 6], 25 px, IoU 25/36 = 0.69 with the outer box
    h[2:6, 2:7] = 0.8  # level 0.7: [2, 2, 6, 5], 20 px, IoU 20/36 = 0.56
    h[3, 3] = 0.9  # the score of all three (the max inside each region)
    outer, mid, core = [2, 2, 7, 7, 0.9], [2, 2, 6, 6, 0.9], [2, 2, 6, 5, 0.9]
    np.testing.assert_array_equal(B.heatmap_boxes(h), F([outer]))
    # nms_iou 1 keeps all (ties: larger first); 0.6 removes only the 0.69 one
    np.testing.assert_array_equal(B.heatmap_boxes(h, B.BoxRule(nms_iou=1.0)), F([outer, mid, core]))
    np.testing.assert_array_equal(B.heatmap_boxes(h, B.BoxRule(nms_iou=0.6)), F([outer, core]))
    # IoU exactly nms_iou is not "above": 4 x 2 inside 4 x 4 has IoU 8/16 = 0.5, both kept
    h = np.zeros([6, 6])
    h[0:4, 0:4] = 0.4
    h[0:2, 0:4] = 0.6
    h[0, 0] = 0.9
    np.testing.assert_array_equal(B.heatmap_boxes(h), F([[0, 0, 3, 3, 0.9], [0, 0, 3, 1, 0.9]]))


def test_relative_levels_find_a_weak_blob():
    h = np.zeros([8, 8])
    h[1:4, 2:5] = 0.1
    h[2, 3] = 0.2  # max 0.2 < every absolute level
    assert B.heatmap_boxes(h).shape == (0, 5)
    # relative: levels 0.06 / 0.1 / 0.14; the 0.14 region (1 px) is below min_area
    np.testing.assert_array_equal(
        B.heatmap_boxes(h, B.BoxRule(relative=True)), F([[2, 1, 4, 3, 0.2]])
    )


def test_min_area_connectivity_min_score_max_boxes():
    spike = np.zeros([8, 8])
    spike[5, 6] = 0.9
    assert B.heatmap_boxes(spike).shape == (0, 5)  # 1 px < min_area 4
    np.testing.assert_array_equal(
        B.heatmap_boxes(spike, B.BoxRule(min_area=1)), F([[6, 5, 6, 5, 0.9]])
    )
    diag = np.zeros([8, 8])
    diag[2, 2] = diag[3, 3] = 0.9
    np.testing.assert_array_equal(
        B.heatmap_boxes(diag, B.BoxRule(min_area=1)), F([[2, 2, 3, 3, 0.9]])
    )
    np.testing.assert_array_equal(
        B.heatmap_boxes(diag, B.BoxRule(min_area=1, connectivity=4)),
        F([[2, 2, 2, 2, 0.9], [3, 3, 3, 3, 0.9]]),  # ties: top-left first
    )
    three = np.zeros([8, 12])
    three[0:2, 0:2], three[0:2, 5:7], three[5:7, 9:11] = 0.5, 0.8, 0.65
    np.testing.assert_array_equal(
        B.heatmap_boxes(three, B.BoxRule(max_boxes=2)), F([[5, 0, 6, 1, 0.8], [9, 5, 10, 6, 0.65]])
    )
    assert B.heatmap_boxes(three, B.BoxRule(min_score=0.81)).shape == (0, 5)
    assert len(B.heatmap_boxes(three, B.BoxRule(min_score=0.8))) == 3
    # no hidden threshold: an all-zero map gives nothing, even with relative levels
    assert B.heatmap_boxes(np.zeros([4, 4]), B.BoxRule(relative=True)).shape == (0, 5)


@pytest.mark.parametrize(
    "field,value",
    [
        ("levels", ()),
        ("levels", (0.5, 1.5)),
        ("min_area", 0),
        ("connectivity", 6),
        ("nms_iou", 1.1),
        ("max_boxes", 0),
        ("min_score", -0.1),
    ],
)
def test_rule_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        B.BoxRule(**{field: value})


def test_bad_heatmaps_rejected():
    for bad in (np.full([4, 4], 1.5), np.full([4, 4], np.nan), np.zeros([4])):
        with pytest.raises(ValueError, match="heatmap"):
            B.heatmap_boxes(bad)


def test_frame_scores_and_video_boxes_frames():
    rng = np.random.default_rng(0)
    h = rng.random([5, 6, 7]).astype(np.float32)
    np.testing.assert_array_equal(B.frame_scores(h), [h[t].max() for t in range(5)])
    h = np.zeros([3, 8, 8])
    h[0, 1:3, 1:3] = 0.5
    h[2, 4:7, 5:8] = 0.7
    rows = B.video_boxes(h, frames=np.array([10, 13, 16]))
    np.testing.assert_array_equal(rows, F([[10, 1, 1, 2, 2, 0.5], [16, 5, 4, 7, 6, 0.7]]))
    np.testing.assert_array_equal(B.video_boxes(h)[:, 0], [0, 2])
    with pytest.raises(ValueError, match="frames"):
        B.video_boxes(h, frames=np.array([0, 1]))


def test_writers_text_atomic_and_validation(tmp_path):
    path = tmp_path / "out" / "v.txt"  # the folder is created
    B.write_boxes(path, F([[3, 1, 2, 5, 6, 0.8]]))
    assert path.read_text() == f"{B.PRED_HEADER}\n3, 1, 2, 5, 6, {float(F(0.8))!r}\n"
    B.write_boxes(path, np.zeros([0, 6]))  # overwrite with an empty (header-only) file
    assert path.read_text() == B.PRED_HEADER + "\n"
    with pytest.raises(ValueError, match="x1 <= x2"):
        B.write_boxes(path, [[0, 5, 0, 4, 0, 0.5]])
    assert path.read_text() == B.PRED_HEADER + "\n"  # a refused write leaves the old file
    gt = tmp_path / "gt.txt"
    B.write_gt_tracks(gt, np.array([[1, 0, 2, 3, 4, 5], [1, 1, 3, 3, 5, 5.0]]))
    assert gt.read_text() == f"{B.GT_HEADER}\n1, 0, 2, 3, 4, 5\n1, 1, 3, 3, 5, 5\n"
    with pytest.raises(ValueError, match="integers"):
        B.write_gt_tracks(gt, [[1, 0, 2.5, 3, 4, 5]])
    assert sorted(os.listdir(tmp_path)) == ["gt.txt", "out"]  # no temporary files left
    assert os.listdir(tmp_path / "out") == ["v.txt"]


# ------------------------------------------------------- round trip through the evaluate CLI

T, SIZE, SIDE, N_FRAMES = 10, 24, 5, 32
NATIVE = 3 * np.arange(T) + 1  # native index of sampled frame t


def _square(t):  # the anomaly of sampled frame t: x 2+t.., y 4+t.. (inclusive, SIDE px)
    return 2 + t, 4 + t, 2 + t + SIDE - 1, 4 + t + SIDE - 1


def _heatmaps(where):
    """``where(t)`` -> "gt" (cover the square), "off" (rows 18..22, never overlapping) or None."""
    h = np.zeros([T, SIZE, SIZE], np.float32)
    for t in range(T):
        x1, y1, x2, y2 = _square(t)
        if where(t) == "gt":
            h[t, y1 : y2 + 1, x1 : x2 + 1] = 0.55 + 0.03 * t
        elif where(t) == "off":
            h[t, 18:23, x1 : x2 + 1] = 0.9 - 0.02 * t
    return h


def _cli_vs_direct(tmp_path, name, heat_a, heat_b):
    gt_dir, pred_dir = tmp_path / f"{name}_gt", tmp_path / f"{name}_pred"
    gt_rows = np.array([[7, NATIVE[t], *_square(t)] for t in range(T)])
    B.write_gt_tracks(gt_dir / "a.txt", gt_rows)
    preds = {v: B.video_boxes(h, frames=NATIVE) for v, h in (("a", heat_a), ("b", heat_b))}
    for v, rows in preds.items():
        B.write_boxes(pred_dir / f"{v}.txt", rows)
    proc = subprocess.run(
        [sys.executable, "-m", "vau_jax.evaluate", "--metric=rbdc_tbdc", f"--gt={gt_dir}"]
        + [f"--pred={pred_dir}", f"--num_frames={2 * N_FRAMES}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout.strip().splitlines()[-1])
    direct = rbdc_tbdc({"a": gt_rows}, preds, 2 * N_FRAMES)
    assert cli == direct  # exact: the files hold the float32 scores exactly
    return cli


def test_round_trip_through_evaluate_cli(tmp_path):
    nothing = np.zeros([T, SIZE, SIZE], np.float32)  # video b: empty prediction file
    good = _cli_vs_direct(tmp_path, "good", _heatmaps(lambda t: "gt"), nothing)
    assert good["RBDC"] == pytest.approx(1.0) and good["TBDC"] == pytest.approx(1.0)
    assert (tmp_path / "good_pred" / "b.txt").read_text() == B.PRED_HEADER + "\n"
    wrong = _cli_vs_direct(tmp_path, "wrong", _heatmaps(lambda t: "off"), nothing)
    assert wrong["RBDC"] == pytest.approx(0.0) and wrong["TBDC"] == pytest.approx(0.0)
    # mixed: the square on even frames, louder false alarms on odd frames and in video b
    mixed = _cli_vs_direct(
        tmp_path,
        "mixed",
        _heatmaps(lambda t: "gt" if t % 2 == 0 else "off"),
        _heatmaps(lambda t: "off" if t < 3 else None),
    )
    # by score: b .90 FP; a .88 + b .88 FP; b .86, a .84, a .80 FP (FPR 6/64); a .79 TP
    # (RBDR .1); a .76 FP; a .73 TP (.2); a .72 FP (FPR 8/64); a .67, .61, .55 TP (.5).
    # RBDC = (.1 * 1 + .2 * 1 + .5 * 56) / 64; the track is found at FPR 6/64: TBDC = 58/64
    assert mixed["RBDC"] == pytest.approx(28.3 / 64, abs=1e-14)
    assert mixed["TBDC"] == pytest.approx(58 / 64, abs=1e-14)


# ------------------------------------------------------------------------------- pictures


def test_trajectory_image_time_colours():
    h = np.zeros([3, 8, 8])
    h[0, 1, 1] = 1.0  # early: jet(0) = dark blue (0, 0, 0.5)
    h[2, 6, 6] = 1.0  # late: jet(1) = dark red (0.5, 0, 0)
    h[0, 4, 4] = h[2, 4, 4] = 0.4  # tie: the latest frame's colour
    img = B.trajectory_image(h)
    assert img.shape == (8, 8, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[1, 1], [0, 0, 128])
    np.testing.assert_array_equal(img[6, 6], [128, 0, 0])
    np.testing.assert_array_equal(img[4, 4], [51, 0, 0])  # 0.5 * 0.4 * 255
    np.testing.assert_array_equal(img[0, 0], [0, 0, 0])
    # decay 0.5: frame 0 is two frames old -> heat 0.25, and the tie goes to frame 2
    np.testing.assert_array_equal(B.trajectory_image(h, decay=0.5)[1, 1], [0, 0, 32])
    frame = np.full([16, 16, 3], 200, np.uint8)
    over = B.trajectory_image(h, frame)
    assert over.shape == (16, 16, 3) and over.dtype == np.uint8
    assert over[2, 2, 2] > over[2, 2, 0] and over[13, 13, 0] > over[13, 13, 2]  # blue / red
    np.testing.assert_array_equal(over[0, 8], [200, 200, 200])  # no heat: the frame


def test_overlay_resizes_and_blends():
    frame = np.full([16, 20, 3], 100, np.uint8)
    heat = np.zeros([4, 5])
    heat[:, :2] = 1.0
    out = B.overlay(frame, heat)
    assert out.shape == (16, 20, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [114, 50, 50])  # 0.5 * 100 + 0.5 * 255 * (.5, 0, 0)
    np.testing.assert_array_equal(out[15, 19], [50, 50, 114])  # heat 0: dark blue
    np.testing.assert_array_equal(B.overlay(frame, heat, alpha=0.0), frame)
