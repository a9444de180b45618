"""Answer parsing, Yes/No and multiple-choice accuracy, temporal IoU and recall."""

from __future__ import annotations

import numpy as np
import pytest

from vau_jax.eval.metrics import qa

OPTIONS = [
    "Fighting from 2.0s to 5.0s",
    "Arson from 2.0s to 5.0s",
    "Fighting from 8.0s to 12.0s",
    "Explosion from 0.5s to 1.5s",
]


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("B", 1),
        ("(B)", 1),
        ("B.", 1),
        ("b", 1),
        ("C)", 2),
        ("Answer: B", 1),
        ("The answer is (D).", 3),
        ("I choose option C because of the flames", 2),
        ("A. Fighting from 2.0s to 5.0s", 0),
        ("(C) Fighting from 8.0s to 12.0s", 2),
        ("arson from 2.0s to 5.0s", 1),
        ("I think it is Explosion from 0.5s to 1.5s.", 3),
        ("A man is fighting in the street", None),  # the article "A" is not a choice
        ("E", None),  # only 4 options
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_choice(answer, expected):
    assert qa.parse_choice(answer, OPTIONS) == expected


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("A. Fighting from 2.0s to 5.0s", (0, 0)),  # letter and text agree
        ("B. Explosion from 0.5s to 1.5s", (1, 3)),  # they disagree
        ("(C) arson from 2.0s to 5.0s", (2, 1)),
        ("D.", (3, None)),  # a letter alone
        ("C. people walking", (2, None)),  # text naming no option
        ("Explosion from 0.5s to 1.5s", (None, None)),  # no opening letter
        ("A man is fighting", (None, None)),
    ],
)
def test_letter_and_text_reads_both_parts(answer, expected):
    assert qa.letter_and_text(answer, OPTIONS) == expected
    letter, _ = expected
    if letter is not None:  # the headline parse reads the letter
        assert qa.parse_choice(answer, OPTIONS) == letter


def test_option_text_inside_a_longer_option():
    opts = ["Fire", "Fire and explosion", "Normal", "Riot"]
    assert qa.parse_choice("Fire and explosion", opts) == 1  # longest containing the others
    assert qa.parse_choice("fire", opts) == 0


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("Yes", True),
        ("yes, there is a fight.", True),
        ("No.", False),
        ("NO anomaly here", False),
        ("I would say yes", True),
        ("Certainly not", None),
        ("yes and no", True),  # the first word decides
        ("maybe yes maybe no", None),
    ],
)
def test_parse_yes_no(answer, expected):
    assert qa.parse_yes_no(answer) is expected


def test_yes_no_accuracy():
    assert qa.yes_no_accuracy(["Yes.", "no", "hmm", "No"], ["yes", "no", "yes", True]) == 0.5
    with pytest.raises(ValueError, match="neither yes nor no"):
        qa.yes_no_accuracy(["yes"], ["perhaps"])


def test_mcqa_total_and_temporal():
    intervals = [[2.0, 5.0], [2.0, 5.0], [8.0, 12.0], [0.5, 1.5]]
    # q1 correct; q2 wrong type, right interval; q3 wrong interval; q4 unparsed
    chosen = [0, 1, 2, None]
    out = qa.mcqa_accuracy(chosen, [0, 0, 0, 0], [intervals] * 4)
    assert out == {"Total_Acc": 0.25, "Temporal_Acc": 0.5}


def test_mcqa_no_anomaly_option():
    # normal video: the correct option "no anomaly" has no interval (None)
    intervals = [[None, [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]] * 2
    out = qa.mcqa_accuracy([0, 1], [0, 0], intervals)
    assert out == {"Total_Acc": 0.5, "Temporal_Acc": 0.5}


def test_temporal_iou_and_recall():
    pred = np.array([[0.0, 10.0], [5.0, 15.0], [20.0, 30.0], [3.0, 3.0]])
    gt = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    # IoUs: 1, 5/15, 0, 0 (empty prediction)
    np.testing.assert_allclose(qa.temporal_iou(pred, gt), [1.0, 1 / 3, 0.0, 0.0])
    out = qa.recall_at_iou(pred, gt, thresholds=(0.3, 0.5))
    assert out == pytest.approx({"mIoU": (1 + 1 / 3) / 4, "R@0.3": 0.5, "R@0.5": 0.25})
    with pytest.raises(ValueError, match="2 predicted but 1"):
        qa.temporal_iou(pred[:2], gt[:1])


def test_mcqa_by_truth_splits_total_acc_by_the_videos_truth():
    from vau_jax.eval.metrics import mcqa_by_truth

    iv = [[None, (1.0, 2.0), (3.0, 4.0)], [(0.0, 1.0), None, (2.0, 3.0)]] * 2
    correct = [0, 1, 1, 2]  # normal, normal, anomalous, anomalous
    always_no = [0, 1, 0, 1]  # "no anomaly" every time: half right overall
    out = mcqa_by_truth(always_no, correct, iv)
    assert out == {"Total_Acc_normal": 1.0, "Total_Acc_anomalous": 0.0, "No_Anomaly_Rate": 1.0}
    out = mcqa_by_truth([1, None, 1, 0], correct, iv)
    assert out == {"Total_Acc_normal": 0.0, "Total_Acc_anomalous": 0.5, "No_Anomaly_Rate": 0.0}
    only_anomalous = mcqa_by_truth([0], [0], [[(0.0, 1.0), None]])
    assert only_anomalous["Total_Acc_anomalous"] == 1.0
    assert np.isnan(only_anomalous["Total_Acc_normal"])
    with pytest.raises(ValueError, match="same length"):
        mcqa_by_truth([0], [0, 1], iv[:2])
