"""RBDC / TBDC: hand-derived areas, properties, and a loop reference on random cases."""

from __future__ import annotations

import numpy as np
import pytest

from vau_jax.eval.metrics.rbdc_tbdc import detection_curves, rbdc_tbdc, tracks_to_rows

BOX = [0, 0, 9, 9]  # inclusive: 10 x 10 = 100 pixels


def test_hand_derived_example():
    # One video, 10 test frames. Regions: r1 = track 1 frame 0 BOX, r2 = track 1 frame 1 BOX,
    # r3 = track 2 frame 1 [20, 20, 29, 29].
    gt = {"v": [[1, 0, *BOX], [1, 1, *BOX], [2, 1, 20, 20, 29, 29]]}
    preds = {
        "v": [
            [0, *BOX, 0.9],  # IoU 1 with r1: TP. RBDR 1/3, track 1 has 1/2 >= 10%: TBDR 1/2
            [1, 50, 50, 59, 59, 0.8],  # matches nothing: FP, FPR 1/10
            [0, *BOX, 0.7],  # re-hit of r1: neither
            # vs r3: intersection 5 x 10 = 50, union 150, IoU 1/3: TP. RBDR 2/3, TBDR 1
            [1, 25, 20, 34, 29, 0.6],
            # vs r2: inclusive intersection 1 x 10 = 10, union 190, IoU 0.053 < 0.1: FP, FPR 2/10
            [1, 9, 0, 18, 9, 0.5],
        ]
    }
    # RBDR curve: (0,0) (0,1/3) (.1,1/3) (.1,1/3) (.1,2/3) (.2,2/3), flat to (1,2/3):
    #   area = 0.1 * 1/3 + 0.9 * 2/3 = 0.63333...
    # TBDR curve: (0,0) (0,1/2) (.1,1/2) (.1,1) ... (1,1): area = 0.1 * 0.5 + 0.9 * 1 = 0.95
    out = rbdc_tbdc(gt, preds, 10)
    assert out["RBDC"] == pytest.approx(0.1 / 3 + 0.9 * 2 / 3, abs=1e-14)
    assert out["TBDC"] == pytest.approx(0.95, abs=1e-14)
    curves = detection_curves(gt, preds, 10)
    np.testing.assert_allclose(curves["FPR"], [0, 0, 0.1, 0.1, 0.1, 0.2])
    np.testing.assert_allclose(curves["RBDR"], [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_inclusive_boxes_single_pixel():
    # A 1-pixel box [5,5,5,5] has area 1 with inclusive coordinates (0 with exclusive ones).
    gt = {"v": [[0, 0, 5, 5, 5, 5]]}
    out = rbdc_tbdc(gt, {"v": [[0, 5, 5, 5, 5, 1.0]]}, 4)
    assert out == {"RBDC": 1.0, "TBDC": 1.0}
    # [5,5,6,6] (4 px) vs [5,5,5,5] (1 px): IoU 1/4 >= 0.1 -> still detected
    assert rbdc_tbdc(gt, {"v": [[0, 5, 5, 6, 6, 1.0]]}, 4)["RBDC"] == 1.0


def test_curve_cut_at_fpr_one():
    gt = {"v": [[0, 0, *BOX]]}
    # 2 test frames. FP (FPR .5), then TP: RBDR 1 from FPR .5 to 1 -> area 0.5
    early = {"v": [[1, 50, 50, 60, 60, 0.9], [0, *BOX, 0.8]]}
    assert rbdc_tbdc(gt, early, 2)["RBDC"] == pytest.approx(0.5)
    # three FPs reach FPR 1.5 before the TP: the TP lies beyond the cut -> area 0
    late = {"v": [[1, 50, 50, 60, 60, s] for s in (0.9, 0.8, 0.7)] + [[0, *BOX, 0.6]]}
    assert rbdc_tbdc(gt, late, 2)["RBDC"] == 0.0


def test_tied_scores_enter_together():
    # 1 test frame; an FP and a TP with the same score: the curve goes (0,0) -> (1,1)
    # in one step, trapezoid area 0.5 (not 0 or 1 as either processing order would give).
    gt = {"v": [[0, 0, *BOX]]}
    preds = {"v": [[0, 50, 50, 60, 60, 0.5], [0, *BOX, 0.5]]}
    assert rbdc_tbdc(gt, preds, 1)["RBDC"] == pytest.approx(0.5)


def test_track_needs_ten_percent_of_regions():
    # A 20-region track (frames 0..19); 100 test frames.
    gt = {"v": [[7, f, *BOX] for f in range(20)]}
    preds = {"v": [[0, *BOX, 0.9], [50, 50, 50, 60, 60, 0.8], [1, *BOX, 0.7]]}
    # 1/20 = 5% after the first TP: not detected; 2/20 = 10% after the third prediction (FPR .01)
    # TBDC = 0.99; RBDR: .05 on [0, .01], .1 on [.01, 1] -> .0005 + .099
    out = rbdc_tbdc(gt, preds, 100)
    assert out["TBDC"] == pytest.approx(0.99)
    assert out["RBDC"] == pytest.approx(0.0995)


def test_tracks_are_per_video_and_records_convert():
    rows = tracks_to_rows({3: np.array([[0, *BOX], [1, *BOX]]), 1: np.array([[4, *BOX]])})
    np.testing.assert_array_equal(rows[:, 0], [1, 3, 3])
    # same track id 1 in two videos = two tracks: detecting one gives TBDR 1/2
    gt = {"a": [[1, 0, *BOX]], "b": [[1, 0, *BOX]]}
    curves = detection_curves(gt, {"a": [[0, *BOX, 1.0]]}, 10)
    assert curves["TBDR"][-1] == 0.5


def test_errors():
    gt = {"v": [[0, 0, *BOX]]}
    with pytest.raises(ValueError, match="no ground-truth regions"):
        rbdc_tbdc({}, {"v": [[0, *BOX, 1.0]]}, 10)
    with pytest.raises(ValueError, match="'v'.*prediction row 0 has x2 < x1"):
        rbdc_tbdc(gt, {"v": [[0, 9, 0, 0, 9, 1.0]]}, 10)
    with pytest.raises(ValueError, match="'v'.*prediction rows row 0 is not finite"):
        rbdc_tbdc(gt, {"v": [[0, *BOX, np.nan]]}, 10)
    with pytest.raises(ValueError, match="'v'.*frame 12 >= num_frames 10"):
        rbdc_tbdc(gt, {"v": [[12, *BOX, 1.0]]}, {"v": 10})


# ----------------------------------------------------------------------------- properties


def _random_case(rng, videos=3, frames=30):
    gt, preds = {}, {}
    for v in range(videos):
        rows = []
        for tid in range(int(rng.integers(0, 3))):
            start = int(rng.integers(0, frames - 5))
            for f in range(start, int(rng.integers(start + 1, frames))):
                x, y = rng.integers(0, 40, 2)
                rows.append([tid, f, x, y, x + rng.integers(2, 15), y + rng.integers(2, 15)])
        gt[f"v{v}"] = np.asarray(rows, np.float64).reshape(-1, 6)
        n = int(rng.integers(0, 40))
        f = rng.integers(0, frames, n)
        xy = rng.integers(0, 40, [n, 2])
        wh = rng.integers(2, 15, [n, 2])
        score = np.round(rng.random(n), 1)  # ties on purpose
        preds[f"v{v}"] = np.concatenate([f[:, None], xy, xy + wh, score[:, None]], 1)
    if not any(len(g) for g in gt.values()):
        gt["v0"] = np.array([[0, 0, 0, 0, 5, 5]], np.float64)
    return gt, preds, videos * frames


def _loop_reference(gt, preds, total_frames):
    """Direct transcription of the DESIGN text: one prediction at a time, no vectorisation."""
    regions = [(v, int(r[0]), int(r[1]), r[2:6]) for v, g in gt.items() for r in g]
    tracks = sorted({(v, t) for v, t, _, _ in regions})
    size = {k: sum(1 for v, t, _, _ in regions if (v, t) == k) for k in tracks}
    allp = sorted(
        [(p[5], v, int(p[0]), p[1:5]) for v, ps in preds.items() for p in ps],
        key=lambda x: -x[0],
    )
    hit, tp, fp = set(), 0, 0
    points = [(0.0, 0.0, 0.0)]
    for k, (score, v, f, box) in enumerate(allp):
        matched = []
        for i, (rv, _, rf, rbox) in enumerate(regions):
            if rv != v or rf != f:
                continue
            iw = min(box[2], rbox[2]) - max(box[0], rbox[0]) + 1
            ih = min(box[3], rbox[3]) - max(box[1], rbox[1]) + 1
            inter = max(iw, 0) * max(ih, 0)
            a = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
            b = (rbox[2] - rbox[0] + 1) * (rbox[3] - rbox[1] + 1)
            if inter / (a + b - inter) >= 0.1:
                matched.append(i)
        if not matched:
            fp += 1
        for i in matched:
            if i not in hit:
                hit.add(i)
                tp += 1
        if k + 1 == len(allp) or allp[k + 1][0] != score:
            found = {key: 0 for key in tracks}
            for i in hit:
                found[(regions[i][0], regions[i][1])] += 1
            det = sum(1 for key in tracks if found[key] >= 0.1 * size[key])
            points.append((fp / total_frames, tp / len(regions), det / len(tracks)))
    pts = [p for p in points if p[0] <= 1.0]
    pts.append((1.0, pts[-1][1], pts[-1][2]))
    x = np.array([p[0] for p in pts])
    return {
        "RBDC": np.trapezoid([p[1] for p in pts], x),
        "TBDC": np.trapezoid([p[2] for p in pts], x),
    }


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(30))
def test_matches_loop_reference(seed):
    gt, preds, total = _random_case(np.random.default_rng(seed))
    total = max(total // 10, 1)  # few frames -> the FPR cut matters
    ours = rbdc_tbdc(gt, preds, total)
    ref = _loop_reference(gt, preds, total)
    assert ours["RBDC"] == pytest.approx(ref["RBDC"], abs=1e-14)
    assert ours["TBDC"] == pytest.approx(ref["TBDC"], abs=1e-14)


@pytest.mark.parametrize("seed", range(10))
def test_properties(seed):
    rng = np.random.default_rng(100 + seed)
    gt, preds, total = _random_case(rng)
    # perfect detector: every region predicted exactly, nothing else -> 1
    perfect = {v: np.concatenate([g[:, 1:6], rng.random([len(g), 1])], 1) for v, g in gt.items()}
    assert rbdc_tbdc(gt, perfect, total) == {"RBDC": 1.0, "TBDC": 1.0}
    # no predictions -> 0
    assert rbdc_tbdc(gt, {}, total) == {"RBDC": 0.0, "TBDC": 0.0}
    # adding a true positive (exact box of a random region, random score) never lowers
    before = rbdc_tbdc(gt, preds, total)
    v = next(k for k, g in gt.items() if len(g))
    r = gt[v][rng.integers(0, len(gt[v]))]
    added = {**preds, v: np.concatenate([preds[v], [[*r[1:6], rng.random()]]])}
    after = rbdc_tbdc(gt, added, total)
    assert after["RBDC"] >= before["RBDC"] - 1e-12
    assert after["TBDC"] >= before["TBDC"] - 1e-12
