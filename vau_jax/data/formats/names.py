"""Class names implied by dataset video names (UCF-Crime style ``Abuse028_x264``)."""

from __future__ import annotations

import re

from vau_jax.data.formats.record import NORMAL

_UCF_NAME = re.compile(r"^(?P<cls>[A-Za-z]+?)_?\d+_x264$")


def ucf_class_from_name(vid: str) -> str | None:
    """``"Abuse028_x264"`` → ``"Abuse"``; ``"Normal_Videos_003_x264"`` → ``"Normal"``.

    ``"RoadAccidents001_x264"`` → ``"RoadAccidents"``. ``None`` when the name has no such form.
    """
    if vid.startswith("Normal_Videos") or vid.startswith("Normal"):
        return NORMAL
    m = _UCF_NAME.match(vid)
    return m.group("cls") if m else None
