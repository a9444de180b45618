"""VA-GPT's TETG helpers: the prior sentence and the frame AUC."""

import numpy as np
import pytest

from vau_jax.data import templates as T
from vau_jax.methods.vagpt.tetg import tetg_auc, tetg_prompt


def test_tetg_prompt():
    names = ["Shooting", "Arson", "Arrest"]
    probs = np.array([0.1, 0.7, 0.8, 0.2, 0.9, 0.95, 0.99, 0.3])
    text, interval = tetg_prompt(probs, 2.0, 0.5, names)
    assert interval == (2.0, 3.5)
    # the paper's wording (VA-GPT §3.3), the dataset's class list in it
    assert text == (
        "Known common crime types are: 'Shooting', 'Arson', 'Arrest'. "
        "There is one of the crime types occurring from 2.0s to 3.5s."
    )
    cold, none = tetg_prompt(np.full(8, 0.2), 2.0, 0.5, names)
    assert none is None and cold.endswith(T.TETG_NONE) and "'Arson'" in cold
    named, _ = tetg_prompt(probs, 2.0, 0.5, names, types_word="anomaly")
    assert named == text.replace("crime types", "anomaly types")


def test_tetg_types_word_of_a_config():
    import ml_collections

    from vau_jax.methods.vagpt.tetg import tetg_types_word

    c = ml_collections.ConfigDict({"tetg": {"threshold": 0.5}})
    assert tetg_types_word(c) == "anomaly"  # a run saved before the field: what it trained
    c.tetg.types_word = "event"
    assert tetg_types_word(c) == "event"


def test_tetg_auc_against_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 2, n).astype(np.uint8) for n in (7, 12, 5)]
    probs = [rng.random(len(lab)) for lab in labels]
    want = roc_auc_score(np.concatenate(labels), np.concatenate(probs))
    assert abs(tetg_auc(probs, labels, ["a", "b", "c"]) - want) < 1e-12


def test_tetg_prompt_smoothing_bridges_a_flicker_and_drops_a_lone_spike():
    names = ["Arson"]
    # 8 fps: a run broken by one cold frame, then a lone spike at the end.
    probs = np.array([0.1] * 8 + [0.9, 0.9, 0.2, 0.9, 0.9, 0.9] + [0.1] * 8 + [0.95] + [0.1] * 8)
    _, raw = tetg_prompt(probs, 8.0, 0.5, names)
    assert raw == (1.4, 1.8)  # the paper's per-frame threshold: the longer half only
    _, smooth = tetg_prompt(probs, 8.0, 0.5, names, smooth_s=0.125)
    assert smooth == (1.0, 1.8)  # one run across the flicker; the spike falls under 0.5
    _, same = tetg_prompt(probs, 8.0, 0.5, names, smooth_s=0.0)
    assert same == raw


def test_prior_reader_accuracy_reads_the_smoothed_sentence():
    from vau_jax.data.benchmark import multiple_choice
    from vau_jax.data.instruct import VideoFacts
    from vau_jax.methods.vagpt.tetg import prior_reader_accuracy

    vocab = ("running", "fighting", "fire")
    fps = 4.0
    anomalous = VideoFacts("a", 10.0, "running", ((4.0, 6.0),))
    normal = VideoFacts("n", 10.0, "normal")
    hot = np.full(40, 0.1)
    hot[16:24] = 0.9  # 4.0 s to 6.0 s
    hot[19] = 0.2  # one cold frame: the per-frame run stops at 4.8 s
    cold = np.full(40, 0.1)
    cold[30] = 0.8  # a lone spike on a normal video
    qs = [(0, multiple_choice(anomalous, vocab, s)) for s in range(6)]
    qs += [(1, multiple_choice(normal, vocab, s)) for s in range(6)]
    # per frame: the anomalous questions are read right (the longest run still overlaps the
    # true interval most) and the spike answers the normal ones with an anomaly
    assert prior_reader_accuracy([hot, cold], qs, fps, 0.5, 0.0) == 0.5
    # smoothed by 0.25 s (one frame): the spike drops below 0.5, every answer is right
    assert prior_reader_accuracy([hot, cold], qs, fps, 0.5, 0.25) == 1.0
    with pytest.raises(ValueError, match="no question"):
        prior_reader_accuracy([hot], [], fps, 0.5, 0.0)


class _CountingStore:
    """A per-video ``cls`` store that counts its reads (FrameSource's feature set)."""

    def __init__(self, videos: list[np.ndarray]):
        self.videos, self.reads = videos, 0

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, v: int) -> dict[str, np.ndarray]:
        self.reads += 1
        return {"cls": self.videos[v]}


def test_frame_source_reads_each_video_once_within_its_budget():
    from vau_jax.methods.base import standardise
    from vau_jax.methods.vagpt.tetg import FrameSource

    rng = np.random.default_rng(0)
    videos = [rng.normal(size=(n, 6)).astype(np.float32) for n in (5, 3, 7, 4)]
    labels = [rng.integers(0, 2, len(z)).astype(np.uint8) for z in videos]
    order = rng.permutation(sum(len(z) for z in videos))  # a shuffled epoch, twice
    store = _CountingStore(videos)
    src = FrameSource(store, labels)
    for i in np.concatenate([order, order]):
        v, t = src.index[i]
        ex = src[int(i)]
        np.testing.assert_array_equal(ex["z"], standardise(videos[v])[t])
        assert ex["label"] == labels[v][t]
    assert store.reads == len(videos)  # all fit the default budget: one read per video

    # past its budget a video is read again (the memo's own rules: tests/data/test_memo.py)
    small = _CountingStore(videos)
    tight = FrameSource(small, labels, cache_bytes=2 * 5 * 6 * 4)
    for i in order:
        tight[int(i)]
        assert tight.memo.nbytes <= tight.memo.budget
    assert small.reads > len(videos)
