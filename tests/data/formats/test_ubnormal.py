"""UBnormal reader: tracks.txt + per-frame id masks -> intervals, per-frame boxes."""

import numpy as np
import pytest
from PIL import Image

from vau_jax.data.formats import FormatError, read_ubnormal

H, W = 24, 32


def _write_video_annotations(scene, vid, n_frames, objects, tracks_text=None):
    """objects: track_id -> (start, end_inclusive, fn(frame) -> (x1, y1, x2, y2))."""
    annot = scene / f"{vid}_annotations"
    annot.mkdir(parents=True)
    lines = [f"{tid},{s},{e}" for tid, (s, e, _) in objects.items()]
    (annot / f"{vid}_tracks.txt").write_text(tracks_text or "\n".join(lines) + "\n")
    for frame in range(n_frames):
        mask = np.zeros([H, W], np.uint8)
        for tid, (s, e, box_fn) in objects.items():
            if s <= frame <= e:
                x1, y1, x2, y2 = box_fn(frame)
                mask[y1 : y2 + 1, x1 : x2 + 1] = tid
        Image.fromarray(mask).save(annot / f"{vid}_{frame:04d}_gt.png")
    return annot


def test_reads_root_with_normal_and_abnormal(tmp_path):
    scene = tmp_path / "Scene1"
    scene.mkdir()
    objects = {
        1: (2, 5, lambda f: (f, 3, f + 4, 10)),
        2: (4, 7, lambda f: (20, 12, 25, 20)),
    }
    _write_video_annotations(scene, "abnormal_scene_1_scenario_1", 10, objects)
    (scene / "normal_scene_1_scenario_2.mp4").write_bytes(b"")  # existence is enough
    recs = read_ubnormal(tmp_path)
    assert [r.id for r in recs] == ["abnormal_scene_1_scenario_1", "normal_scene_1_scenario_2"]
    ab, normal = recs
    assert normal.label == "Normal" and normal.intervals == []
    assert ab.label == "Anomaly"
    assert ab.n_frames == 10
    assert ab.intervals == [(2, 8)]  # union of inclusive spans 2..5 and 4..7
    np.testing.assert_array_equal(ab.frame_labels(), [0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    assert sorted(ab.tracks) == [1, 2]
    expected1 = np.array([[f, f, 3, f + 4, 10] for f in range(2, 6)])
    np.testing.assert_array_equal(ab.tracks[1], expected1)
    np.testing.assert_array_equal(ab.tracks[2][:, 0], [4, 5, 6, 7])
    np.testing.assert_array_equal(ab.tracks[2][0, 1:], [20, 12, 25, 20])
    assert ab.masks_path.endswith("abnormal_scene_1_scenario_1_annotations")
    # single video directory gives the same record
    (one,) = read_ubnormal(ab.masks_path)
    np.testing.assert_array_equal(one.tracks[1], expected1)


def test_binary_masks_assigned_to_single_active_track(tmp_path):
    annot = _write_video_annotations(tmp_path, "v", 4, {3: (1, 2, lambda f: (1, 1, 4, 5))})
    for frame in (1, 2):  # rewrite as binary 255 masks
        p = annot / f"v_{frame:04d}_gt.png"
        m = (np.asarray(Image.open(p)) > 0).astype(np.uint8) * 255
        Image.fromarray(m).save(p)
    (rec,) = read_ubnormal(annot)
    np.testing.assert_array_equal(rec.tracks[3], [[1, 1, 1, 4, 5], [2, 1, 1, 4, 5]])
    assert "unassigned_boxes" not in rec.extra


def test_malformed_tracks_line(tmp_path):
    annot = _write_video_annotations(
        tmp_path, "v", 2, {1: (0, 1, lambda f: (0, 0, 1, 1))}, tracks_text="1,0,1\n2,0\n"
    )
    with pytest.raises(
        FormatError, match=r"v_tracks.txt:2: expected 'track_id,start_frame,end_frame'"
    ):
        read_ubnormal(annot)


def test_float_numbers_accepted(tmp_path):
    annot = _write_video_annotations(
        tmp_path, "v", 3, {1: (0, 1, lambda f: (0, 0, 1, 1))}, tracks_text="1.0, 0.0, 1.0\n"
    )
    (rec,) = read_ubnormal(annot)
    assert rec.intervals == [(0, 2)]


def test_ambiguous_binary_mask_kept_not_dropped(tmp_path):
    objects = {1: (0, 1, lambda f: (0, 0, 3, 3)), 2: (0, 1, lambda f: (10, 10, 12, 14))}
    annot = _write_video_annotations(tmp_path, "v", 2, objects)
    p = annot / "v_0001_gt.png"
    m = (np.asarray(Image.open(p)) > 0).astype(np.uint8) * 255
    Image.fromarray(m).save(p)
    (rec,) = read_ubnormal(annot)
    np.testing.assert_array_equal(rec.tracks[1], [[0, 0, 0, 3, 3]])
    np.testing.assert_array_equal(rec.extra["unassigned_boxes"], [[1, 255, 0, 0, 12, 14]])


def test_masks_read_again_only_when_their_bytes_change(tmp_path, monkeypatch):
    # A main job reads a layout's masks twice (the dataset index and tvau_build): the second
    # read reuses the boxes while every mask file has the same bytes, and not after a change.
    from vau_jax.data.formats import ubnormal

    annot = _write_video_annotations(tmp_path, "v", 3, {1: (0, 2, lambda f: (f, 1, f + 2, 4))})
    decoded = []
    real = ubnormal.load_mask
    monkeypatch.setattr(
        ubnormal, "load_mask", lambda p, data=None: decoded.append(data) or real(p, data)
    )
    (a,) = read_ubnormal(annot)
    (b,) = read_ubnormal(annot)
    assert len(decoded) == 3  # decoded once
    # from the bytes read for the digest, not from a second read of the file
    assert all(isinstance(data, bytes) for data in decoded)
    np.testing.assert_array_equal(a.tracks[1], b.tracks[1])
    b.tracks[1][:] = -1  # callers get copies
    (c,) = read_ubnormal(annot)
    np.testing.assert_array_equal(c.tracks[1], a.tracks[1])
    mask = np.zeros([H, W], np.uint8)
    mask[5:9, 10:20] = 1  # frame 1 rewritten: its box moves
    Image.fromarray(mask).save(annot / "v_0001_gt.png")
    (d,) = read_ubnormal(annot)
    assert len(decoded) == 6
    np.testing.assert_array_equal(d.tracks[1][1], [1, 10, 5, 19, 8])
