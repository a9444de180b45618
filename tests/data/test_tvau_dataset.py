"""T-VAU dataset construction on tiny SynthVAD trees read back by the real readers: the
oracle equals the renderer, the noisy annotator's contradictions are exactly the ones
dropped, the refined frames blur only outside the anomaly mask."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from vau_jax.data import instruct, tvau_dataset
from vau_jax.data import templates as T
from vau_jax.data.synthvad import SynthConfig, render_video
from vau_jax.data.synthvad.layouts import write_layout

# 64x64, 2-3 s at 8 fps; per split: video 0 abandoned object, 1-2 normal, 3 running.
CONFIG = SynthConfig(
    min_seconds=2.0,
    max_seconds=3.0,
    min_walkers=1,
    max_walkers=2,
    anomaly_types=("abandoned_object", "running"),
)
SPLITS = {"train": 2, "test": 4}
KINDS = {"yes_no", "target", "trajectory", "spatial"}
ENTRY_KEYS = {
    "split",
    "fps",
    "n_frames",
    "width",
    "height",
    "anomaly_type",
    "intervals_frames",
    "intervals_seconds",
    "objects",
    "targets",
    "target",
    "trajectory",
    "spatial_word",
    "dropped",
}
OBJECT_KEYS = {
    "object_id",
    "kind",
    "colour",
    "size",
    "action",
    "anomalous",
    "first_frame",
    "last_frame",
    "frames",
    "boxes",
    "spatial_word",
    "trajectory",
    "displacement",
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """``{layout: root}`` of lossless ubnormal and shanghaitech trees."""
    base = tmp_path_factory.mktemp("tvau")
    out = {}
    for layout in tvau_dataset.DATASETS:
        out[layout] = str(base / layout)
        write_layout(out[layout], layout, SPLITS, CONFIG, codec="ffv1")
    return out


def _meta(root):
    with open(os.path.join(root, "meta.json")) as f:
        return {v["name"]: v for v in json.load(f)["videos"]}


def _read_outputs(out):
    with open(os.path.join(out, "tvau_annotations.json")) as f:
        doc = json.load(f)
    with open(os.path.join(out, "questions.jsonl")) as f:
        questions = [json.loads(line) for line in f]
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    return doc, questions, stats


@pytest.fixture(scope="module")
def oracle_builds(trees, tmp_path_factory):
    """``{layout: (out, returned stats)}`` of the oracle build of every split."""
    base = tmp_path_factory.mktemp("oracle")
    return {
        layout: (str(base / layout), tvau_dataset.build(layout, root, str(base / layout)))
        for layout, root in trees.items()
    }


@pytest.mark.parametrize("layout", tvau_dataset.DATASETS)
def test_oracle_matches_the_renderer(layout, trees, oracle_builds):
    out, stats = oracle_builds[layout]
    doc, questions, written = _read_outputs(out)
    assert written == stats
    assert doc["format"] == tvau_dataset.FORMAT and doc["annotator"] == "oracle"
    meta = _meta(trees[layout])
    assert set(doc["videos"]) == set(meta)  # every video of both splits
    assert stats["videos"] == 6 and stats["anomalous_videos"] == 3
    assert stats["dropped"] == {"static_moves": 0, "running_still": 0}
    for vid, entry in doc["videos"].items():
        m = meta[vid]
        assert set(entry) == ENTRY_KEYS
        assert (entry["split"], entry["n_frames"], entry["fps"]) == (
            m["split"],
            m["n_frames"],
            m["fps"],
        )
        assert entry["anomaly_type"] == m["anomaly_type"]
        assert entry["intervals_frames"] == m["intervals_frames"]
        for obj in entry["objects"]:
            assert set(obj) == OBJECT_KEYS
            assert len(obj["frames"]) == len(obj["boxes"])
            assert (obj["first_frame"], obj["last_frame"]) == (obj["frames"][0], obj["frames"][-1])
        video = render_video(m["seed"], CONFIG, m["anomaly_type"], m["id"])
        assert len(entry["objects"]) == len(video.tracks)  # walkers too
        facts = instruct.facts_from_synth(video)
        got = (entry["target"], entry["trajectory"], entry["spatial_word"])
        assert got == (facts.target, facts.trajectory, facts.spatial_word)
        if m["anomaly_type"] != "normal":
            assert entry["target"] and entry["trajectory"]
            first = next(t for t in video.tracks if t.anomalous)
            assert entry["targets"][0] == first.track_id
    by_video = {}
    for q in questions:
        assert set(q) == {"video", "split", "kind", "question", "answer", "conversations"}
        assert [t["from"] for t in q["conversations"]] == ["human", "gpt"]
        assert q["conversations"][0]["value"] == f"{T.VIDEO_MARKER}\n{q['question']}"
        by_video.setdefault(q["video"], {})[q["kind"]] = q["answer"]
    assert {q["kind"] for q in questions} == KINDS
    for vid, answers in by_video.items():
        if meta[vid]["anomaly_type"] == "normal":
            assert answers["yes_no"] == T.NO_ANSWER and answers["yes_no"].startswith("No")
            assert "trajectory" not in answers
        else:
            assert set(answers) == KINDS and answers["yes_no"].startswith("Yes")
    assert stats["questions"] == len(questions)


def test_splits_and_determinism(trees, oracle_builds, tmp_path):
    root = trees["ubnormal"]
    stats = tvau_dataset.build("ubnormal", root, str(tmp_path / "test"), split="test")
    doc, _, _ = _read_outputs(str(tmp_path / "test"))
    assert stats["videos"] == 4 and {e["split"] for e in doc["videos"].values()} == {"test"}
    # again, annotated in two worker processes (the default for 16 videos or more): the
    # same bytes as the in-process build
    tvau_dataset.build("ubnormal", root, str(tmp_path / "again"), write_refined=False, workers=2)
    for name in ("tvau_annotations.json", "questions.jsonl"):
        with open(os.path.join(oracle_builds["ubnormal"][0], name), "rb") as a:
            with open(os.path.join(tmp_path / "again", name), "rb") as b:
                assert a.read() == b.read()
    assert not os.path.exists(tmp_path / "again" / "refined")


def test_noisy_drops_exactly_the_injected_contradictions(trees, oracle_builds, tmp_path):
    root = trees["shanghaitech"]
    stats = tvau_dataset.build(
        "shanghaitech", root, str(tmp_path / "n"), "noisy", seed=3, noise="contradict=1.0"
    )
    assert stats["injected"] == {"static_moves": 6, "running_still": 6}  # one each, 6 videos
    assert stats["dropped"] == stats["injected"]
    doc, _, _ = _read_outputs(str(tmp_path / "n"))
    oracle, _, _ = _read_outputs(oracle_builds["shanghaitech"][0])
    for vid, entry in doc["videos"].items():
        assert sorted(d["reason"] for d in entry["dropped"]) == ["running_still", "static_moves"]
        real = oracle["videos"][vid]["objects"]
        assert all(d["object_id"] >= len(real) for d in entry["dropped"])  # only the fakes
        assert [o["object_id"] for o in entry["objects"]] == [o["object_id"] for o in real]
        # boxes jittered, frames kept; anomalous objects found from the layout's masks
        assert [o["frames"] for o in entry["objects"]] == [o["frames"] for o in real]
        assert entry["targets"] == oracle["videos"][vid]["targets"]
    half = tvau_dataset.build(
        "shanghaitech", root, str(tmp_path / "h"), "noisy", seed=3, noise="contradict=0.5"
    )
    assert half["dropped"] == half["injected"]
    assert 0 < sum(half["injected"].values()) < 12
    tvau_dataset.build(
        "shanghaitech", root, str(tmp_path / "o"), "noisy", seed=4, noise="contradict=1.0"
    )
    assert _read_outputs(str(tmp_path / "o"))[0] != doc
    pooled = tvau_dataset.build(
        "shanghaitech", root, str(tmp_path / "p"), "noisy", seed=3, noise="contradict=1.0",
        workers=2,
    )  # fmt: skip
    assert (
        pooled == stats
        and _read_outputs(str(tmp_path / "p"))[:2] == _read_outputs(str(tmp_path / "n"))[:2]
    )


def test_annotators_not_declared_parallel_stay_in_this_process(trees, oracle_builds, tmp_path):
    # A registered annotator without `parallel = True` (one holding state or a connection)
    # is called here, in order, even when workers are asked for; a local class could not
    # be pickled into a worker, and the calls are seen in this process.
    seen = []

    class Counting(tvau_dataset.OracleAnnotator):
        parallel = False

        def annotate(self, video, frames):
            seen.append(video.record.id)
            return super().annotate(video, frames)

    tvau_dataset.register("counting", Counting)
    try:
        out = str(tmp_path / "c")
        stats = tvau_dataset.build(
            "shanghaitech", trees["shanghaitech"], out, "counting", workers=2
        )
    finally:
        del tvau_dataset.ANNOTATORS["counting"]
    assert len(seen) == stats["videos"] == 6
    assert _read_outputs(out)[1] == _read_outputs(oracle_builds["shanghaitech"][0])[1]


def _timeline(action, xs, fps_frames, kind="person"):
    boxes = np.array([[x, 10, x + 3, 20] for x in xs])
    frames = np.arange(len(xs)) * fps_frames
    return tvau_dataset.build_timelines(
        [
            tvau_dataset.make_record(t, 0, kind, None, action, b, 64, 64)
            for t, b in zip(frames, boxes)
        ],
        64,
        64,
    )[0]


def test_consistency_rules():
    check = tvau_dataset.contradiction
    assert check(_timeline("static", np.linspace(0, 60, 8), 1, "object"), 8.0) == "static_moves"
    assert check(_timeline("static", [5, 6, 5, 6, 5], 1, "object"), 8.0) is None
    assert check(_timeline("running", [30] * 8, 1), 8.0) == "running_still"
    assert check(_timeline("running", [30] * 2, 1), 8.0) is None  # too short to judge
    assert check(_timeline("running", np.linspace(0, 40, 8), 1), 8.0) is None
    assert check(_timeline("walking", [30] * 8, 1), 8.0) is None


def test_parse_noise():
    assert tvau_dataset.parse_noise("") == tvau_dataset.NoiseConfig()
    assert tvau_dataset.parse_noise("jitter=2,contradict=1").contradict == 1.0
    for bad in ("blur=1", "swap=x", "swap=2"):
        with pytest.raises(ValueError, match="--noise"):
            tvau_dataset.parse_noise(bad)


def _hf_energy(img, keep):
    """Mean |horizontal gradient| over pixel pairs both in ``keep``."""
    grad = np.abs(np.diff(img.astype(np.float64), axis=1)).sum(-1)  # [H, W-1]
    return grad[keep[:, 1:] & keep[:, :-1]].mean()


def test_blur_outside_keeps_the_mask_sharp():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), bool)
    mask[8:20, 10:25] = True
    out = tvau_dataset.blur_outside(frame, mask, sigma=2.0)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    np.testing.assert_array_equal(out[mask], frame[mask])
    assert out[~mask].astype(float).var() < 0.25 * frame[~mask].astype(float).var()


def test_refined_frames_on_disk(trees, oracle_builds):
    root, (out, stats) = trees["shanghaitech"], oracle_builds["shanghaitech"]
    doc, _, _ = _read_outputs(out)
    n = 0
    for vid, entry in doc["videos"].items():
        hot = [t for s, e in entry["intervals_frames"] for t in range(s, e)]
        folder = os.path.join(out, "refined", vid)
        if not hot:
            assert not os.path.exists(folder)
            continue
        masks = np.load(os.path.join(root, "testing", "test_pixel_mask", f"{vid}.npy"))
        for t in hot:
            mask = masks[t] > 0
            path = os.path.join(folder, f"{t:06d}.png")
            assert os.path.isfile(path) == bool(mask.any())
            if not mask.any():
                continue
            refined = np.asarray(Image.open(path))
            source = np.asarray(
                Image.open(os.path.join(root, "testing", "frames", vid, f"{t:03d}.png"))
            )
            np.testing.assert_array_equal(refined[mask], source[mask])
            assert _hf_energy(refined, ~mask) < 0.6 * _hf_energy(source, ~mask)
            n += 1
    assert n == stats["refined_frames"] > 0


def test_oracle_needs_synthvad_ground_truth(trees, tmp_path):
    import shutil

    root = str(tmp_path / "real")
    shutil.copytree(trees["ubnormal"], root)
    os.remove(os.path.join(root, "meta.json"))
    with pytest.raises(ValueError, match="oracle annotator needs SynthVAD"):
        tvau_dataset.build("ubnormal", root, str(tmp_path / "out"))
    with pytest.raises(ValueError, match="unknown annotator 'vlm'"):
        tvau_dataset.build("ubnormal", root, str(tmp_path / "out"), annotator="vlm")


def test_validation_videos_get_questions_where_the_layout_has_them(tmp_path):
    """UBnormal's validation lists: ``split="validation"`` builds those videos' records and
    questions (as for the test split: frame truth from the layout), ``"all"`` includes them
    beside train and test, and the other splits' lines are the same as built on their own;
    a layout without validation videos (ShanghaiTech) says so in one line."""
    root = str(tmp_path / "ub")
    write_layout(root, "ubnormal", {"train": 1, "validation": 2, "test": 1}, CONFIG, "ffv1")
    val = tvau_dataset.build("ubnormal", root, str(tmp_path / "val"), split="validation",
                             write_refined=False)  # fmt: skip
    doc, questions, _ = _read_outputs(str(tmp_path / "val"))
    assert val["videos"] == 2 and {e["split"] for e in doc["videos"].values()} == {"validation"}
    assert {q["split"] for q in questions} == {"validation"}
    assert sum(q["kind"] == "yes_no" for q in questions) == 2
    truth = {n: v for n, v in _meta(root).items() if v["split"] == "validation"}
    assert set(truth) == {q["video"] for q in questions}
    for q in questions:
        if q["kind"] == "yes_no":
            assert q["answer"].startswith("Yes") == bool(truth[q["video"]]["intervals_frames"])
    tvau_dataset.build("ubnormal", root, str(tmp_path / "all"), write_refined=False)
    _, every, stats = _read_outputs(str(tmp_path / "all"))
    assert stats["videos"] == 4
    assert [q for q in every if q["split"] == "validation"] == questions
    tvau_dataset.build("ubnormal", root, str(tmp_path / "test"), split="test", write_refined=False)
    _, test_only, _ = _read_outputs(str(tmp_path / "test"))
    assert [q for q in every if q["split"] == "test"] == test_only
    sh = str(tmp_path / "sh")
    write_layout(sh, "shanghaitech", {"train": 1, "test": 1}, CONFIG, "ffv1")
    from vau_jax.data.formats.record import FormatError

    with pytest.raises(FormatError, match="no validation videos in this shanghaitech layout"):
        tvau_dataset.build("shanghaitech", sh, str(tmp_path / "shv"), split="validation")


def test_colour_word_counts_named_pixels_and_breaks_ties_by_first_pixel():
    from vau_jax.data.synthvad.actors import CARS, SHIRTS, SKINS
    from vau_jax.data.tvau_dataset.records import colour_word

    (a, ca), (b, cb) = SHIRTS[0], next(x for x in (*SHIRTS, *CARS) if x[0] != SHIRTS[0][0])
    skin = SKINS[0]
    px = lambda *cs: np.asarray(cs, np.uint8)  # noqa: E731
    assert colour_word(px(cb, ca, ca)) == a  # the most frequent word
    assert colour_word(px(cb, ca, ca, cb)) == b  # a tie: the word whose first pixel is first
    assert colour_word(px(ca, cb, cb, ca)) == a
    assert colour_word(px(skin, skin, skin, cb)) == b  # skin tones have no word
    assert colour_word(px(skin)) is None
    from vau_jax.data.tvau_dataset.records import _palette

    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 15)] * 3, indexing="ij"), -1).reshape(-1, 3)
    dist = np.linalg.norm(grid[:, None] - _palette()[1][None], axis=-1).min(1)
    far = grid[np.argmax(dist)]  # the grid colour farthest from every palette colour
    assert dist.max() > 60 and colour_word(px(far, ca)) == a  # beyond 60: not counted
    assert colour_word(np.zeros((0, 3), np.uint8)) is None
