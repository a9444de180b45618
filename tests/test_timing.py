"""Phase clocks: nested phases count exclusively, folded phases, other threads ignored."""

import threading
import time

from vau_jax import timing


def test_nested_phases_count_each_second_once():
    timing.reset()
    with timing.phase("features"):
        time.sleep(0.05)
        with timing.phase("render"):
            time.sleep(0.1)
        time.sleep(0.05)
    time.sleep(0.05)
    secs = timing.seconds()
    assert 0.1 <= secs["seconds_render"] < 0.2
    assert 0.1 <= secs["seconds_features"] < 0.2  # the inner render is not counted twice
    assert 0.0 < secs["seconds_other"] < 0.2
    parts = sum(v for k, v in secs.items() if k != "seconds_total")
    assert abs(parts - secs["seconds_total"]) <= 0.15  # rounding of 0.1 s per entry
    text = timing.table(secs)
    assert text.splitlines()[1].startswith("render") and "features" in text and "total" in text


def test_within_folds_inner_phases_but_keeps_render():
    timing.reset()
    with timing.phase("pretrain"), timing.within("pretrain"):
        with timing.phase("train"):
            time.sleep(0.1)
        with timing.phase("render"):
            time.sleep(0.1)
    secs = timing.seconds()
    assert "seconds_train" not in secs
    assert 0.1 <= secs["seconds_pretrain"] < 0.2 and 0.1 <= secs["seconds_render"] < 0.2


def test_phases_in_helper_threads_are_ignored():
    timing.reset()

    def work():
        with timing.phase("render"):
            time.sleep(0.05)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "seconds_render" not in timing.seconds()
