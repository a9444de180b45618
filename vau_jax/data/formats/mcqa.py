"""VA-GPT's multiple-choice benchmark files (JSONL), read into questions per video.

One question per line (the ground-truth format of ``python -m vau_jax.evaluate
--metric=mcqa``, plus the video it asks about)::

    {"id": "q1", "video": "Abuse028_x264", "question": "Which option ...?",
     "options": ["Abuse from 5.5s to 8.0s", "..."], "intervals": [[5.5, 8.0], null, ...],
     "answer_index": 0}

or ``"options": [{"text": ..., "interval": [s, e] | null}, ...]``; intervals in seconds,
``null`` = "no anomaly". ``question`` is optional. Errors are :class:`FormatError` naming
``path:line``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from vau_jax.data.formats.record import FormatError, format_error, load_json, text_lines


def _interval(value: Any) -> tuple[float, float] | None:
    ok = isinstance(value, list) and len(value) == 2
    if ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        start, end = float(value[0]), float(value[1])  # OverflowError past 1e308: caught
        if math.isfinite(start) and math.isfinite(end):
            return (start, end)
    if value is None:
        return None
    raise ValueError(value)


def mc_options(obj: dict, where: str) -> tuple[list[str], list[tuple[float, float] | None]]:
    """Option texts and intervals of one MC-QA object.

    Either ``"options": [str, ...]`` with ``"intervals": [[s, e] | null, ...]`` or
    ``"options": [{"text": str, "interval": [s, e] | null}, ...]`` (null = no anomaly).
    Raises :class:`FormatError` starting with ``where``.
    """
    options = obj.get("options")
    try:
        if not isinstance(options, list):
            raise ValueError(options)
        if options and all(isinstance(o, dict) for o in options):
            texts = [o["text"] for o in options]
            ivs = [_interval(o.get("interval")) for o in options]
        else:
            texts, raw = list(options), obj.get("intervals")
            if not isinstance(raw, list) or len(raw) != len(texts):
                raise ValueError(raw)
            ivs = [_interval(x) for x in raw]
    except (KeyError, ValueError, OverflowError):
        raise FormatError(
            f"{where}: expected 'options' (strings) with one 'intervals' entry [start, end] or "
            'null per option, or \'options\' of {"text", "interval"} objects'
        ) from None
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise FormatError(f"{where}: option texts must be non-empty strings")
    return texts, ivs


def read_mc_questions(path: str | os.PathLike, default_question: str) -> dict[str, list[Any]]:
    """``video id -> [MCQuestion, ...]`` (file order) of a benchmark file."""
    from vau_jax.data.benchmark import LETTERS, MCOption, MCQuestion
    from vau_jax.data.instruct import NORMAL

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise format_error(path, None, "missing")
    out: dict[str, list[Any]] = {}
    for lineno, raw in text_lines(path):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        obj = load_json(raw, path, lineno)
        if not isinstance(obj, dict) or not isinstance(obj.get("video"), str):
            raise FormatError(f"{where}: expected an object with a 'video' id")
        texts, ivs = mc_options(obj, where)
        if len(texts) > len(LETTERS):
            raise FormatError(f"{where}: {len(texts)} options > {len(LETTERS)} letters")
        ans = obj.get("answer_index")
        if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < len(texts):
            raise FormatError(f"{where}: 'answer_index' must index 'options'")
        options = tuple(
            MCOption(LETTERS[k], NORMAL if iv is None else "", iv, t)
            for k, (t, iv) in enumerate(zip(texts, ivs))
        )
        question = str(obj.get("question") or default_question)
        out.setdefault(obj["video"], []).append(MCQuestion(obj["video"], question, options, ans))
    if not out:
        raise format_error(path, None, "no questions")
    return out
