"""ShanghaiTech frame-label / pixel-mask reader."""

import numpy as np
import pytest

from vau_jax.data.formats import FormatError, read_shanghaitech


def _make(root):
    (root / "test_frame_mask").mkdir(parents=True)
    (root / "test_pixel_mask").mkdir()
    labels = np.zeros(12, np.uint8)
    labels[3:6] = 1
    labels[9:] = 1
    np.save(root / "test_frame_mask" / "01_0014.npy", labels)
    masks = np.zeros([12, 10, 16], np.uint8)
    for t in (3, 4, 5, 9, 10, 11):
        masks[t, 2:5, t : t + 3] = 1
    np.save(root / "test_pixel_mask" / "01_0014.npy", masks)
    np.save(root / "test_frame_mask" / "02_0161.npy", np.zeros(7, np.uint8))


def test_reads_labels_and_boxes(tmp_path):
    _make(tmp_path)
    (tmp_path / "testing" / "frames" / "01_0014").mkdir(parents=True)
    ab, normal = read_shanghaitech(tmp_path, boxes=True)
    assert ab.id == "01_0014" and ab.n_frames == 12
    assert ab.intervals == [(3, 6), (9, 12)]
    assert ab.label == "Anomaly" and normal.label == "Normal"
    assert ab.path.endswith("testing/frames/01_0014") and normal.path is None
    np.testing.assert_array_equal(ab.tracks[1][0], [3, 3, 2, 5, 4])
    np.testing.assert_array_equal(ab.tracks[1][:, 0], [3, 4, 5, 9, 10, 11])
    assert normal.masks_path is None and normal.n_frames == 7
    assert read_shanghaitech(tmp_path)[0].tracks == {}


def test_bad_labels(tmp_path):
    _make(tmp_path)
    np.save(tmp_path / "test_frame_mask" / "03_0001.npy", np.array([0, 2, 1]))
    with pytest.raises(FormatError, match=r"03_0001.npy: frame labels must be 0/1"):
        read_shanghaitech(tmp_path)


def test_pickled_npy_refused(tmp_path):
    _make(tmp_path)
    np.save(tmp_path / "test_frame_mask" / "04_0001.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(FormatError, match=r"04_0001.npy: cannot read"):
        read_shanghaitech(tmp_path)
