"""``Stage.before_data``: called with the stage's starting params before ``make_data``,
on a fresh stage and on a resumed one."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from tests.train.toy_method import ToyMethod, config
from vau_jax.train.trainer import Trainer


class Recording(ToyMethod):
    """The toy method with every stage's ``before_data`` / ``make_data`` calls recorded."""

    def __init__(self, events, **kw):
        super().__init__(**kw)
        self.events = events

    def stages(self):
        out = []
        for st in super().stages():
            make = st.make_data

            def before(params, name=st.name):
                kernel = np.asarray(params["enc"]["kernel"]).copy()
                self.events.append(("before", name, kernel))

            def data(name=st.name, make=make):
                self.events.append(("data", name, None))
                return make()

            out.append(dataclasses.replace(st, before_data=before, make_data=data))
        return out


def test_before_data_sees_each_stages_starting_params(tmp_path):
    events = []
    trainer = Trainer(Recording(events, steps=3, checkpoint_every=3), config(), str(tmp_path))
    init = np.asarray(trainer.method.init_params(jax.random.key(0))["enc"]["kernel"])
    params = trainer.train()
    trainer.close()
    assert [(e[0], e[1]) for e in events] == [
        ("before", "warm"),
        ("data", "warm"),
        ("before", "finetune"),
        ("data", "finetune"),
    ]
    warm_start, finetune_start = events[0][2], events[2][2]
    np.testing.assert_allclose(warm_start, init, rtol=0, atol=1e-7)  # the seed-0 init
    # "finetune" starts from the trained "warm" params; it freezes enc/, so its starting
    # enc/kernel is the final one, and "warm" has changed it
    np.testing.assert_array_equal(finetune_start, np.asarray(params["enc"]["kernel"]))
    assert not np.array_equal(warm_start, finetune_start)


def test_before_data_on_a_resumed_stage_gets_the_restored_params(tmp_path):
    events = []
    method = Recording(events, steps=4, checkpoint_every=2, script={(1, 3): "crash"})
    trainer = Trainer(method, config(), str(tmp_path))
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train()
    trainer.close()
    finetune_start = [e[2] for e in events if e[:2] == ("before", "finetune")][0]
    events.clear()
    again = Recording(events, steps=4, checkpoint_every=2, script={(1, 99): "crash"})  # no crash
    trainer = Trainer(again, config(), str(tmp_path))
    params = trainer.train()
    trainer.close()
    # resumed inside "finetune" (its step-2 checkpoint): one before_data, then make_data
    assert [(e[0], e[1]) for e in events] == [("before", "finetune"), ("data", "finetune")]
    np.testing.assert_array_equal(events[0][2], finetune_start)  # enc/ is frozen there
    np.testing.assert_array_equal(events[0][2], np.asarray(params["enc"]["kernel"]))
