"""VideoRecord helpers: frame labels, seconds, ids."""

import numpy as np
import pytest

from vau_jax.data.formats import FormatError, VideoRecord
from vau_jax.data.formats.record import video_id


def test_frame_labels_half_open_and_clipped():
    rec = VideoRecord(id="v", n_frames=10, label="Abuse", intervals=[(2, 4), (8, 15)])
    np.testing.assert_array_equal(rec.frame_labels(), [0, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    assert rec.frame_labels(5).tolist() == [0, 0, 1, 1, 0]
    assert rec.frame_labels().dtype == np.uint8
    assert rec.is_anomalous


def test_frame_labels_needs_length():
    with pytest.raises(ValueError, match="n_frames unknown"):
        VideoRecord(id="v").frame_labels()


def test_intervals_seconds():
    rec = VideoRecord(id="v", fps=10.0, intervals=[(15, 20)])
    assert rec.intervals_seconds() == [(1.5, 2.0)]
    assert rec.intervals_seconds(fps=5) == [(3.0, 4.0)]


def test_video_id_strips_only_known_extensions():
    assert video_id("/a/b/Abuse028_x264.mp4") == "Abuse028_x264"
    assert video_id("A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A") == (
        "A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"
    )
    assert video_id("x/Abuse/Abuse001_x264__3.npy") == "Abuse001_x264__3"


def test_format_error_is_value_error():
    assert issubclass(FormatError, ValueError)
