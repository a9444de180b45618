"""Feature extraction CLI/library: layout, batching/padding, reruns, bad videos, preprocessing."""

import json
import os

import av
import jax
import numpy as np
import pytest

from vau_jax import extract
from vau_jax.data.video import read_frames
from vau_jax.models import registry


def _write_video(path, n, fps=8, w=80, h=60, seed=0, smooth=False):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=[h, w, 3], dtype=np.uint8)
    if smooth:  # low-frequency colour gradients
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        chans = [np.sin(3 * xx + 1), np.cos(2 * yy + 2 * xx), np.sin(4 * yy)]
        base = (127.5 + 100 * np.stack(chans, -1)).astype(np.uint8)
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast"}
        for k in range(n):
            img = np.roll(base, 3 * k, axis=1)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    _write_video(videos / "a.mp4", 14, seed=0)
    _write_video(videos / "sub" / "b.mp4", 9, seed=1)
    (videos / "broken.mp4").write_text("not a video at all\n")
    out = root / "feats"
    result = extract.run(
        str(videos),
        str(out),
        encoder="tiny-clip-vit",
        fps=4.0,
        batch_size=3,
        patch_tokens=True,
        dtype="float32",
        seed=7,
    )
    return videos, out, result


def test_layout_and_shapes(extracted):
    videos, out, result = extracted
    assert result["done"] == ["a", "b"]
    with np.load(out / "a.npz") as z:
        assert set(z.files) == {"cls", "patches", "timestamps", "indices"}
        assert z["cls"].shape == (7, 64) and z["cls"].dtype == np.float32
        assert z["patches"].shape == (7, 64, 64)  # (64/8)^2 patches, class token dropped
        np.testing.assert_allclose(z["timestamps"], np.arange(7) / 4)
        np.testing.assert_array_equal(z["indices"], np.arange(0, 14, 2))
    meta = json.loads((out / "a.json").read_text())
    assert meta["n_frames"] == 7 and meta["normalisation"] == "clip"
    assert meta["source"]["n_frames"] == 14 and meta["encoder"] == "random:tiny-clip-vit:seed=7"
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def test_features_match_unbatched_model(extracted):
    videos, out, _ = extracted
    module, params, desc = extract.load_encoder("tiny-clip-vit", None, seed=7)
    assert desc == "random:tiny-clip-vit:seed=7"
    frames = read_frames(str(videos / "sub" / "b.mp4"), fps=4.0, size=64).frames
    pixels = extract.normalise(frames, extract.preprocess_for(module.config))
    ref = jax.jit(module.apply)({"params": params}, pixels)
    with np.load(out / "b.npz") as z:
        np.testing.assert_allclose(z["cls"], ref["pooler_output"], atol=1e-4)
        np.testing.assert_allclose(z["patches"], ref["last_hidden_state"][:, 1:], atol=1e-4)


def test_bad_video_reported_and_rerun_skips(extracted, capsys):
    videos, out, result = extracted
    assert len(result["failed"]) == 1 and "broken.mp4" in result["failed"][0]
    assert "cannot open as a video" in result["failed"][0]
    assert not (out / "broken.npz").exists()
    before = os.stat(out / "a.npz").st_mtime_ns
    code = extract.main(
        [
            f"--video={videos}",
            "--encoder=tiny-clip-vit",
            f"--out={out}",
            "--fps=4",
            "--batch_size=3",
            "--patch_tokens",
            "--seed=7",
        ]
    )
    assert code == 1  # the broken video still fails
    assert os.stat(out / "a.npz").st_mtime_ns == before
    err = capsys.readouterr().err
    assert "skip a: already extracted" in err and "FAILED" in err and "broken.mp4" in err


def test_vtest_first_seconds(vtest_path, tmp_path):
    result = extract.run(
        vtest_path,
        str(tmp_path),
        encoder="tiny-clip-vit",
        fps=2.0,
        batch_size=3,
        max_seconds=3.0,
        patch_tokens=True,
        dtype="float32",
        seed=7,
    )
    assert result["done"] == ["vtest"]
    with np.load(tmp_path / "vtest.npz") as z:
        assert z["cls"].shape == (6, 64)
        np.testing.assert_allclose(z["timestamps"], np.arange(6) / 2)
        np.testing.assert_array_equal(z["indices"], np.arange(0, 30, 5))
        assert np.isfinite(z["cls"]).all()
    meta = json.loads((tmp_path / "vtest.json").read_text())
    assert meta["source"]["n_frames"] == 795 and meta["max_seconds"] == 3.0


@pytest.mark.slow
def test_converted_checkpoint_gives_same_features(extracted, tmp_path):
    from vau_jax.convert.checkpoint import save_converted

    videos, out, _ = extracted
    module, params, _ = extract.load_encoder("tiny-clip-vit", None, seed=7)
    save_converted(str(tmp_path / "ckpt"), module, params, source="test")
    result = extract.run(
        str(videos / "a.mp4"),
        str(tmp_path / "o"),
        checkpoint=str(tmp_path / "ckpt"),
        fps=4.0,
        batch_size=3,
        dtype="float32",
    )
    assert result["done"] == ["a"]
    with np.load(tmp_path / "o" / "a.npz") as got, np.load(out / "a.npz") as want:
        np.testing.assert_allclose(got["cls"], want["cls"], atol=1e-5)
    meta = json.loads((tmp_path / "o" / "a.json").read_text())
    assert meta["encoder"] == f"checkpoint:{tmp_path / 'ckpt'}"


@pytest.mark.slow
def test_float16_dinov2_single_file(tmp_path):
    video = _write_video(tmp_path / "c.mp4", 5, fps=5)
    result = extract.run(
        video, str(tmp_path / "o"), encoder="tiny-dinov2", fps=None, batch_size=8, dtype="float16"
    )
    assert result == {"done": ["c"], "skipped": [], "failed": []}
    with np.load(tmp_path / "o" / "c.npz") as z:
        assert z["cls"].shape == (5, 64) and z["cls"].dtype == np.float16
        assert "patches" not in z.files
    meta = json.loads((tmp_path / "o" / "c.json").read_text())
    assert meta["normalisation"] == "imagenet" and meta["image_size"] == 56


def test_preprocess_constants():
    clip = extract.preprocess_for(registry.get_config("clip-vit-l/14"))
    assert (clip.resize, clip.crop, clip.name) == (224, 224, "clip")
    dino = extract.preprocess_for(registry.get_config("dinov2-l/14"))
    assert (dino.resize, dino.crop) == (256, 224)
    assert dino.mean == (0.485, 0.456, 0.406) and dino.std == (0.229, 0.224, 0.225)


@pytest.mark.parity
def test_preprocessing_close_to_hf_clip_processor(tmp_path):
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    video = _write_video(tmp_path / "d.mp4", 1, w=96, h=72, smooth=True)
    frame = read_frames(video).frames[0]  # [72, 96, 3] decoded RGB
    ours = extract.normalise(
        read_frames(video, size=64).frames,
        extract.preprocess_for(registry.get_config("tiny-clip-vit")),
    )[0]
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size=64)
    hf = np.asarray(proc(images=Image.fromarray(frame), return_tensors="np")["pixel_values"][0])
    hf = hf.transpose(1, 2, 0)  # CHW -> HWC
    diff = np.abs(ours - hf)
    # Same constants and geometry; the only difference is swscale vs PIL bicubic resampling.
    # Measured: mean 0.021, max 0.085 (one uint8 level is 0.015 here).
    assert diff.mean() < 0.03 and diff.max() < 0.15, (diff.mean(), diff.max())
