"""SynthVAD renderer: determinism, per-type ground truth consistency, sizes, splits, text."""

from __future__ import annotations

import numpy as np
import pytest

from vau_jax.data.synthvad import (
    ANOMALY_TYPES,
    NORMAL,
    SPATIAL_WORDS,
    SynthConfig,
    anomaly_type_at,
    render_video,
    split_seeds,
    video_id,
)
from vau_jax.data.synthvad.text import spatial_word

SHORT = SynthConfig(min_seconds=3.0, max_seconds=5.0)


def test_same_seed_identical_bytes():
    a, b = render_video(11, SHORT), render_video(11, SHORT)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.intervals.tobytes() == b.intervals.tobytes()
    assert (a.event_description, a.scene_description, a.frame_captions) == (
        b.event_description,
        b.scene_description,
        b.frame_captions,
    )
    for ta, tb in zip(a.tracks, b.tracks, strict=True):
        assert (
            ta.frames.tobytes() == tb.frames.tobytes() and ta.boxes.tobytes() == tb.boxes.tobytes()
        )


def test_different_seeds_differ():
    a, b = render_video(1, SHORT, anomaly_type="fire"), render_video(2, SHORT, anomaly_type="fire")
    n = min(a.num_frames, b.num_frames)
    assert np.mean(a.frames[:n] != b.frames[:n]) > 0.5
    assert a.scene_description != b.scene_description or a.event_description != b.event_description


def _check_ground_truth(v, cfg: SynthConfig) -> None:
    t_len, h, w = v.num_frames, cfg.height, cfg.width
    assert v.frames.shape == (t_len, h, w, 3) and v.frames.dtype == np.uint8
    assert v.masks.shape == (t_len, h, w) and v.masks.dtype == np.uint8
    assert v.labels.shape == (t_len,) and v.labels.dtype == np.uint8
    assert round(cfg.min_seconds * cfg.fps) <= t_len <= round(cfg.max_seconds * cfg.fps)
    assert len(v.frame_captions) == t_len
    assert v.masks.max() <= len(v.tracks)
    # labels <-> intervals (seconds, half-open)
    times = np.arange(t_len) / v.fps
    from_intervals = np.zeros(t_len, bool)
    for s, e in v.intervals:
        assert s < e
        from_intervals |= (times >= s - 1e-6) & (times < e - 1e-6)
    np.testing.assert_array_equal(from_intervals, v.labels.astype(bool))
    np.testing.assert_allclose(v.intervals * v.fps, v.frame_intervals(), atol=1e-4)
    # masks <-> boxes: each track's box is the bounding box of its mask pixels in that frame
    for i, tr in enumerate(v.tracks):
        assert tr.track_id == i and len(tr.frames) == len(tr.boxes) > 0
        own = v.masks == i + 1  # [T, H, W]
        np.testing.assert_array_equal(np.flatnonzero(own.any((1, 2))), tr.frames)
        for f, (x1, y1, x2, y2) in zip(tr.frames, tr.boxes):
            ys, xs = np.nonzero(own[f])
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x1, y1, x2, y2)


@pytest.mark.parametrize("anomaly_type", (NORMAL, *ANOMALY_TYPES))
@pytest.mark.parametrize("seed", [3, 40])
def test_every_type_ground_truth(anomaly_type, seed):
    v = render_video(seed, SHORT, anomaly_type=anomaly_type)
    assert v.anomaly_type == anomaly_type
    _check_ground_truth(v, SHORT)
    anomalous_frames = set()
    for tr in v.tracks:
        if tr.anomalous:
            anomalous_frames |= set(tr.frames.tolist())
    labelled = set(np.flatnonzero(v.labels).tolist())
    if anomaly_type == NORMAL:
        assert not labelled and v.intervals.shape == (0, 2) and v.spatial_word == ""
        assert not anomalous_frames
        assert all("walking" in c or "empty" in c for c in v.frame_captions)
        return
    assert labelled, "an anomalous video has anomalous frames"
    assert labelled <= anomalous_frames, "every anomalous frame shows an anomalous object"
    if anomaly_type not in ("fighting", "falling"):  # these people exist before the anomaly
        assert anomalous_frames == labelled
    assert v.spatial_word in SPATIAL_WORDS
    if anomaly_type in ("running", "vehicle"):  # described by their trajectory
        assert "from the " in v.event_description or "around the " in v.event_description
    else:
        assert v.spatial_word in v.event_description
    key = {
        "running": "running",
        "fighting": "fighting",
        "falling": "lying",
        "explosion": "explosion",
        "fire": "fire",
        "vehicle": "car",
        "abandoned_object": "bag",
    }[anomaly_type]
    for t in range(v.num_frames):
        assert (key in v.frame_captions[t]) == bool(v.labels[t]), (t, v.frame_captions[t])


def _centres(tr) -> np.ndarray:
    return np.stack(
        [(tr.boxes[:, 0] + tr.boxes[:, 2]) / 2, (tr.boxes[:, 1] + tr.boxes[:, 3]) / 2], 1
    )


def _speed(tr, fps) -> float:
    """Median speed of a track's box centre in px/s over consecutive visible frames."""
    c, f = _centres(tr), tr.frames
    ok = np.diff(f) == 1
    return float(np.median(np.linalg.norm(np.diff(c, axis=0), axis=1)[ok]) * fps)


def test_running_is_much_faster_than_walking():
    for seed in (5, 6, 7):
        v = render_video(seed, SynthConfig(), anomaly_type="running")
        runner = [tr for tr in v.tracks if tr.anomalous][0]
        walkers = [tr for tr in v.tracks if not tr.anomalous and len(tr.frames) > 8]
        assert _speed(runner, v.fps) > 2.5 * max(_speed(tr, v.fps) for tr in walkers)


def test_falling_person_ends_horizontal():
    v = render_video(8, SynthConfig(), anomaly_type="falling")
    tr = [tr for tr in v.tracks if tr.anomalous][0]
    wid = tr.boxes[:, 2] - tr.boxes[:, 0] + 1
    hei = tr.boxes[:, 3] - tr.boxes[:, 1] + 1
    assert np.all(wid[:3] < hei[:3]) and np.all(wid[-3:] > hei[-3:])
    assert np.all(tr.boxes[-3:] == tr.boxes[-1])  # stays down


def test_vehicle_is_car_sized_and_bag_stays():
    v = render_video(9, SynthConfig(), anomaly_type="vehicle")
    area = lambda b: (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    car = [tr for tr in v.tracks if tr.anomalous][0]
    person = np.median(np.concatenate([area(tr.boxes) for tr in v.tracks if tr.kind == "person"]))
    assert car.kind == "vehicle" and np.max(area(car.boxes)) > 2 * person
    v = render_video(9, SynthConfig(), anomaly_type="abandoned_object")
    bag = [tr for tr in v.tracks if tr.anomalous][0]
    assert bag.kind == "object" and len(np.unique(bag.boxes, axis=0)) <= 3  # static (occlusion)
    assert bag.frames[-1] == v.num_frames - 1


def test_fighters_are_close_and_explosion_is_bright():
    v = render_video(12, SynthConfig(), anomaly_type="fighting")
    a, b = [tr for tr in v.tracks if tr.anomalous]
    on = np.flatnonzero(v.labels)
    ca = _centres(a)[np.isin(a.frames, on)]
    cb = _centres(b)[np.isin(b.frames, on)]
    assert np.median(np.linalg.norm(ca - cb, axis=1)) < 0.17 * 64
    v = render_video(12, SynthConfig(), anomaly_type="explosion")
    boom = [tr for tr in v.tracks if tr.anomalous][0]
    assert boom.kind == "explosion" and boom.frames[0] == np.flatnonzero(v.labels)[0]
    x1, y1, x2, y2 = boom.boxes[1]
    f32 = v.frames.astype(np.int32)
    warm = lambda f: np.mean((f[..., 0] > 200) & (f[..., 0] - f[..., 2] > 80))  # orange flash
    assert warm(f32[boom.frames[1], y1 : y2 + 1, x1 : x2 + 1]) > 0.25
    assert warm(f32[boom.frames[0] - 1, y1 : y2 + 1, x1 : x2 + 1]) < 0.05


def test_fire_is_orange():
    v = render_video(13, SynthConfig(), anomaly_type="fire")
    f = v.frames.astype(int)
    orange = (f[..., 0] > 200) & (f[..., 1] > 60) & (f[..., 1] < 230) & (f[..., 2] < 110)
    n = orange.sum((1, 2))
    assert n[v.labels == 1].min() > 3 and n[v.labels == 0].max() < n[v.labels == 1].min()


def test_sizes_and_scaling():
    small = render_video(21, SynthConfig(min_seconds=1, max_seconds=2), anomaly_type="vehicle")
    big_cfg = SynthConfig(height=224, width=224, min_seconds=1, max_seconds=2)
    big = render_video(21, big_cfg, anomaly_type="vehicle")
    _check_ground_truth(big, big_cfg)
    assert big.frames.shape[1:] == (224, 224, 3)
    car_s = [tr for tr in small.tracks if tr.kind == "vehicle"][0].boxes
    car_b = [tr for tr in big.tracks if tr.kind == "vehicle"][0].boxes
    ext = lambda b: np.max(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])) + 1
    assert 2.5 < ext(car_b) / ext(car_s) < 4.5  # objects scale with the frame (224/64 = 3.5)


@pytest.mark.parametrize(
    "cfg",
    [
        SynthConfig(height=64, width=96, min_seconds=2, max_seconds=3),
        SynthConfig(fps=7.5, min_seconds=2, max_seconds=3),
        SynthConfig(fps=25.0, min_seconds=2, max_seconds=3),
    ],
    ids=["64x96", "7.5fps", "25fps"],
)
def test_other_shapes_and_rates(cfg):
    for anomaly_type in ("running", "explosion", "abandoned_object"):
        _check_ground_truth(render_video(4, cfg, anomaly_type=anomaly_type), cfg)


def test_lengths_vary_and_fps():
    cfg = SynthConfig(fps=10.0, min_seconds=2.0, max_seconds=6.0)
    lengths = {render_video(s, cfg, anomaly_type=NORMAL).num_frames for s in range(6)}
    assert len(lengths) > 2 and min(lengths) >= 20 and max(lengths) <= 60
    assert render_video(0, cfg).fps == 10.0


def test_split_seeds_disjoint_and_schedule():
    train, test, val = (
        split_seeds("train", 500),
        split_seeds("test", 500),
        split_seeds("validation", 500),
    )
    assert (
        not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(test) & set(val))
    )
    assert len(set(train)) == 500 and split_seeds("train", 10) == train[:10]
    with pytest.raises(ValueError, match="unknown SynthVAD split"):
        split_seeds("dev", 3)
    assert video_id("test", 12) == "test_000012"
    cfg = SynthConfig()
    types = [anomaly_type_at(i, cfg) for i in range(28)]
    assert abs(sum(t != NORMAL for t in types) - 14) <= 1  # about half normal
    assert set(types) == {NORMAL, *ANOMALY_TYPES}  # every type within 2 * 7 anomalous videos
    assert [anomaly_type_at(i, cfg) for i in range(10)] == types[:10]  # prefix-stable
    only = SynthConfig(anomaly_prob=1.0, anomaly_types=("fire",))
    assert {anomaly_type_at(i, only) for i in range(5)} == {"fire"}


def test_seed_draws_type_when_not_forced():
    cfg = SynthConfig(min_seconds=1, max_seconds=2)
    types = {render_video(s, cfg).anomaly_type for s in range(30)}
    assert NORMAL in types and len(types) >= 4


def test_spatial_word_rule():
    assert spatial_word(32, 32, 64, 64) == "centre"
    assert spatial_word(2, 30, 64, 64) == "left"
    assert spatial_word(60, 35, 64, 64) == "right"
    assert spatial_word(30, 3, 64, 64) == "top"
    assert spatial_word(33, 62, 64, 64) == "bottom"


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(height=63), "even"),
        (dict(min_seconds=5, max_seconds=2), "min_seconds"),
        (dict(anomaly_prob=1.5), "anomaly_prob"),
        (dict(anomaly_types=("riot",)), "riot"),
        (dict(min_walkers=0), "min_walkers"),
    ],
)
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        SynthConfig(**bad)


_HASH_SNIPPET = """
import hashlib
from vau_jax.data.synthvad import SynthConfig, render_video
v = render_video(77, SynthConfig(min_seconds=2, max_seconds=3), anomaly_type="fighting")
print(hashlib.sha1(v.frames.tobytes() + v.masks.tobytes() + v.event_description.encode())
      .hexdigest())
"""


def test_identical_bytes_across_processes():
    import hashlib
    import os
    import subprocess
    import sys

    v = render_video(77, SynthConfig(min_seconds=2, max_seconds=3), anomaly_type="fighting")
    here = hashlib.sha1(v.frames.tobytes() + v.masks.tobytes() + v.event_description.encode())
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", _HASH_SNIPPET],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout.split()[-1]
    assert out == here.hexdigest()


def test_two_explosions_give_two_intervals():
    from vau_jax.data.synthvad.writers import ucf_lines, video_meta

    cfg = SynthConfig(min_seconds=8, max_seconds=10)
    v = render_video(10, cfg, anomaly_type="explosion")
    _check_ground_truth(v, cfg)
    assert v.intervals.shape == (2, 2) and v.intervals[0, 1] < v.intervals[1, 0]
    blasts = [tr for tr in v.tracks if tr.anomalous]
    assert len(blasts) == 2 and "second blast" in v.event_description
    for (s, e), tr in zip(v.frame_intervals(), blasts):
        np.testing.assert_array_equal(tr.frames, np.arange(s, e))
    line = ucf_lines([video_meta(v, "test")]).split()
    assert [int(x) for x in line[2:]] == v.frame_intervals().ravel().tolist()


def test_shifted_domain_changes_the_look_not_the_events():
    from vau_jax.data.synthvad import render_split_video
    from vau_jax.data.synthvad.scene import SHIFTED_GROUNDS

    base = SynthConfig(min_seconds=4.0, max_seconds=4.0)
    shifted = SynthConfig(min_seconds=4.0, max_seconds=4.0, domain="shifted")
    for i in range(4):
        a, b = render_split_video("test", i, base), render_split_video("test", i, shifted)
        assert a.anomaly_type == b.anomaly_type and a.num_frames == b.num_frames
        assert a.spatial_word == b.spatial_word
        assert np.abs(a.frames.astype(int) - b.frames).mean() > 10  # another palette
        assert any(name in b.scene_description for name, _ in SHIFTED_GROUNDS)
        # people are drawn 1.3x larger: their masks cover more pixels
        pa = sum((a.masks == k + 1).sum() for k, t in enumerate(a.tracks) if t.kind == "person")
        pb = sum((b.masks == k + 1).sum() for k, t in enumerate(b.tracks) if t.kind == "person")
        if pa:
            assert pb > 1.2 * pa
    with pytest.raises(ValueError, match="domain"):
        SynthConfig(domain="night")
