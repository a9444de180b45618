"""The scene-invariant encoder input: causal background subtraction of SynthVAD frames."""

import numpy as np
import pytest

from vau_jax.data import synthvad
from vau_jax.methods.synth_features import background_subtracted, prepare_frames


def _scene_with_blob(t: int = 24, start: int = 18) -> np.ndarray:
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    frames = np.repeat(scene[None], t, 0)
    frames[start:, 4:8, 4:8] = [255, 0, 0]  # an object that appears and stays
    return frames


def test_static_scene_becomes_grey_and_a_new_object_stands_out():
    out = background_subtracted(_scene_with_blob())
    assert out.dtype == np.uint8 and out.shape == (24, 16, 16, 3)
    np.testing.assert_array_equal(out[:18], 128)  # the scene itself is gone
    blob = out[20, 4:8, 4:8].astype(int) - 128
    assert (np.abs(blob).max(-1) > 0).all()
    np.testing.assert_array_equal(np.delete(out[20], np.s_[4:8], axis=0), 128)


def test_global_light_change_is_removed():
    frames = _scene_with_blob(start=99).astype(np.int16)
    frames[20:] += 10  # the whole image brightens (light drift)
    out = background_subtracted(np.clip(frames, 0, 255).astype(np.uint8))
    far = np.abs(out[20].astype(int) - 128)
    assert np.median(far) == 0


def test_background_subtraction_is_causal():
    v = synthvad.render_video(7, synthvad.SynthConfig(min_seconds=3.0, max_seconds=3.0))
    full = background_subtracted(v.frames)
    changed = v.frames.copy()
    changed[12:] = 255 - changed[12:]
    np.testing.assert_array_equal(background_subtracted(changed)[:12], full[:12])


def test_prepare_frames_modes():
    f = _scene_with_blob()
    assert prepare_frames(f, "rgb") is f
    np.testing.assert_array_equal(prepare_frames(f, "background"), background_subtracted(f))
    with pytest.raises(ValueError, match="input mode"):
        prepare_frames(f, "depth")
