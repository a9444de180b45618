"""Template descriptions of SynthVAD videos. The templates are data: edit the tables below.

Placeholders (``{a_X}`` is ``{X}`` with its article, "an orange"): ``{colour}``, ``{colour2}`` (appearance), ``{size}``, ``{path}`` (path
orientation), ``{where}`` (spatial word of the anomaly), ``{start}``/``{end}`` and
``{trajectory}`` ("from the left to the right" / "around the centre"), ``{place}`` (fire),
``{again}`` (a second explosion).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Event descriptions, several phrasings per type (one is drawn per video).
EVENT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "running": (
        "A person in {a_colour} shirt runs fast along the {path} path {trajectory} of the frame.",
        "Someone wearing {a_colour} shirt sprints along the {path} path, moving {trajectory}.",
    ),
    "fighting": (
        "Two people, one in {a_colour} shirt and one in {a_colour2} shirt, meet on the {path} "
        "path at the {where} of the frame and fight, pushing and punching each other.",
        "A fight breaks out at the {where}: a person in {colour} and a person in {colour2} "
        "scuffle on the {path} path.",
    ),
    "falling": (
        "A person in {a_colour} shirt walking along the {path} path suddenly falls down at the "
        "{where} of the frame and lies on the ground without getting up.",
        "At the {where}, someone wearing {colour} collapses onto the {path} path and stays "
        "lying there.",
    ),
    "explosion": (
        "{a_size} explosion with a bright yellow flash, smoke and flying debris bursts at the "
        "{where} of the frame{again}.",
        "Something explodes at the {where}: {a_size} flash of light followed by smoke and "
        "debris{again}.",
    ),
    "fire": (
        "{a_size} orange fire breaks out {place} at the {where} of the frame and keeps growing "
        "and flickering.",
        "Flames appear {place} at the {where}; the {size} fire flickers and spreads.",
    ),
    "vehicle": (
        "{a_colour} car drives along the {path} footpath among the pedestrians, {trajectory} of "
        "the frame.",
        "{a_colour} vehicle moves on the walkway where only people should be, going {trajectory}.",
    ),
    "abandoned_object": (
        "A person in {a_colour2} shirt drops {a_size} {colour} bag on the {path} path at the "
        "{where} of the frame and walks away, leaving it behind.",
        "{a_size} {colour} bag is left unattended at the {where} after a person in {colour2} puts "
        "it down and leaves.",
    ),
    "normal": (
        "{walk} calmly along the paths{wearing}; nothing unusual happens.",
        "Ordinary pedestrian traffic: {walk} along the paths{wearing}.",
    ),
}

# Per-frame captions for contrastive pretraining (one fixed phrasing per situation).
FRAME_CAPTIONS: dict[str, str] = {
    "running": "a person running on the path at the {where}",
    "fighting": "two people fighting at the {where}",
    "falling": "a person lying on the ground at the {where}",
    "explosion": "an explosion at the {where}",
    "fire": "a fire burning at the {where}",
    "vehicle": "a car driving on the footpath at the {where}",
    "abandoned_object": "an abandoned bag on the path at the {where}",
    "empty": "an empty scene with paths and buildings",
    "one": "a person walking on the path",
    "many": "people walking on the paths",
}

SCENE_TEMPLATE = (
    "A fixed surveillance camera looks down on an area of {ground} crossed by a horizontal "
    "path and a {second} path of {paving}{buildings}{trees}."
)
FIRE_PLACES = {"building": "at the foot of a building", "ground": "on the open ground"}
AGAIN = ", and a second blast follows a few seconds later"
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def spatial_word(x: float, y: float, width: int, height: int) -> str:
    """Word for a point: "centre" inside the middle third box, else the dominant side.

    ``max(|x/W - 1/2|, |y/H - 1/2|) < 1/6`` gives "centre"; otherwise "left"/"right" when
    the horizontal offset is at least the vertical one, else "top"/"bottom".
    """
    dx, dy = x / width - 0.5, y / height - 0.5
    if max(abs(dx), abs(dy)) < 1.0 / 6.0:
        return "centre"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def trajectory(start: str, end: str) -> str:
    """ "from the left to the right", or "around the centre" when both words agree."""
    return f"around the {start}" if start == end else f"from the {start} to the {end}"


def with_article(word: str) -> str:
    """ "an orange", "a red"."""
    return ("an " if word[:1] in "aeiou" else "a ") + word if word else ""


def number(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


def join_words(words: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def scene_description(
    ground: str, second_path: str, paving: str, building_colours: list[str], num_trees: int
) -> str:
    """The static scene in one sentence."""
    if building_colours:
        n = len(building_colours)
        noun = "building" if n == 1 else "buildings"
        unique = list(dict.fromkeys(building_colours))
        if len(unique) == 1:
            buildings = f", with {number(n)} {unique[0]} {noun}"
        else:
            buildings = f", with {number(n)} {noun} ({join_words(unique)})"
    else:
        buildings = ""
    trees = f" and {number(num_trees)} tree{'s' * (num_trees != 1)}" if num_trees else ""
    return SCENE_TEMPLATE.format(
        ground=ground, second=second_path, paving=paving, buildings=buildings, trees=trees
    )


def event_description(rng: np.random.Generator, anomaly_type: str, fields: dict[str, str]) -> str:
    """One phrasing of the event, drawn with ``rng``, filled with ``fields``."""
    options = EVENT_TEMPLATES[anomaly_type]
    articled = {f"a_{k}": with_article(fields.get(k, "")) for k in ("colour", "colour2", "size")}
    text = options[int(rng.integers(len(options)))].format(**fields, **articled)
    return text[0].upper() + text[1:]


def normal_fields(shirts: list[str]) -> dict[str, str]:
    """Fields for the "normal" event template from the visible walkers' shirt colours."""
    n = len(shirts)
    walk = "one person walks" if n == 1 else f"{number(n)} people walk"
    wearing = f" (wearing {join_words(shirts)})" if shirts else ""
    return {"walk": walk, "wearing": wearing}


def frame_caption(anomaly_type: str | None, where: str, num_people: int) -> str:
    """Caption of one frame: the anomaly if one is visible, else the normal activity."""
    if anomaly_type:
        return FRAME_CAPTIONS[anomaly_type].format(where=where)
    key = "empty" if num_people == 0 else "one" if num_people == 1 else "many"
    return FRAME_CAPTIONS[key]
