"""T-VAU's language data: the dataset-construction pipeline's output as LVLM rows.

:func:`ensure_questions` runs :func:`vau_jax.data.tvau_dataset.build` once per layout tree and
annotator (cached in the data dir, written into a temporary folder and renamed) and reads its
``tvau_annotations.json`` and ``questions.jsonl``. From them:

* **narration** rows (curriculum step 1, T-VAU "Loss & Training": appearance-motion
  narration): "Describe the objects in this video and how they move." answered with one
  sentence per object timeline (colour, kind, trajectory), normal walkers included, in order
  of appearance;
* **anomaly** rows (step 2, anomaly-focused answers): the pipeline's Yes/No, target,
  trajectory and spatial questions of the split's videos;
* **evaluation** rows: the test split's questions as left-padded generation prompts, with
  the truth kept beside them (:func:`eval_rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np
from absl import logging

from vau_jax.data import templates as T
from vau_jax.data.chat import TooLongError

#: The largest fraction of training rows that may be left out for length.
MAX_DROPPED_FRACTION = 0.02
NARRATION_QUESTION = "Describe the objects in this video and how they move."
#: At most this many objects are narrated per video (the earliest to appear).
MAX_NARRATED = 4


def questions_dir(config: Any, root: str) -> str:
    """``<data_dir>/tvau_questions_<hash>``: keyed by the tree, the annotator and the splits
    built (validation questions since 2026-12-05)."""
    body = json.dumps(
        {
            "root": os.path.abspath(root),
            "dataset": str(config.dataset),
            "ann": str(config.annotator),
            "splits": 3,  # train, validation (where the layout has one) and test
        },
        sort_keys=True,
    )
    return os.path.join(
        str(config.data_dir), f"tvau_questions_{hashlib.sha1(body.encode()).hexdigest()[:10]}"
    )


def ensure_questions(config: Any, root: str) -> dict[str, Any]:
    """``{"videos": {id: annotation}, "questions": [line, ...]}`` of the whole tree."""
    from vau_jax.data.tvau_dataset import build

    out = questions_dir(config, root)
    if not os.path.isfile(os.path.join(out, "questions.jsonl")):
        tmp = out + ".tmp"
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        build(
            str(config.dataset),
            root,
            tmp,
            annotator=str(config.annotator),
            split="all",
            seed=0,
            write_refined=False,
        )
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    with open(os.path.join(out, "tvau_annotations.json"), encoding="utf-8") as f:
        ann = json.load(f)
    with open(os.path.join(out, "questions.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(x) for x in f if x.strip()]
    return {"videos": ann["videos"], "questions": lines, "dir": out}


def narration(entry: dict[str, Any]) -> str:
    """One sentence per object of a video's annotation: "A red person moves to the right."."""
    objects = sorted(entry.get("objects", []), key=lambda o: (o["first_frame"], o["object_id"]))
    out = []
    for o in objects[:MAX_NARRATED]:
        kind = T.TARGET_PHRASES.get(o["kind"], o["kind"])
        colour = f"{o['colour']} " if o.get("colour") else ""
        motion = T.TRAJECTORY_PHRASES.get(o.get("trajectory") or "", "appears")
        article = "An" if (colour or kind)[:1] in "aeiou" else "A"
        out.append(f"{article} {colour}{kind} {motion}.")
    return " ".join(out) if out else "The scene is empty."


def _index(method: Any, split: str) -> dict[str, int]:
    return {v.id: i for i, v in enumerate(method.dataset.split(split))}


def _row(method: Any, conv: list[dict[str, str]], video: int, source: str) -> dict[str, Any]:
    from vau_jax.methods.pretrain.video_llm import conversation_row

    c = method.config
    return conversation_row(
        method.tok,
        c,
        conv,
        video,
        method.num_video_tokens,
        source,
        max_length=int(c.rae_max_length),
        query_tok=method.query_tok,
    )


def rae_rows(method: Any, split: str, kind: str) -> list[dict[str, np.ndarray]]:
    """Training rows of a curriculum step (``"narration"`` or ``"anomaly"``)."""
    qa, index = method.qa, _index(method, split)
    rows: list[dict[str, np.ndarray]] = []
    convs: list[tuple[list[dict[str, str]], int, str]] = []
    if kind == "narration":
        for vid, i in index.items():
            entry = qa["videos"].get(vid)
            if entry is None:
                continue
            conv = [
                {"from": "human", "value": f"{T.VIDEO_MARKER}\n{NARRATION_QUESTION}"},
                {"from": "gpt", "value": narration(entry)},
            ]
            convs.append((conv, i, f"{vid} narration"))
    elif kind == "anomaly":
        for k, q in enumerate(qa["questions"]):
            if q["video"] in index:
                convs.append((q["conversations"], index[q["video"]], f"{q['video']} {k}"))
    else:
        raise ValueError(f"unknown curriculum step {kind!r}")
    too_long = []
    for conv, i, source in convs:
        try:
            rows.append(_row(method, conv, i, source))
        except TooLongError as e:
            too_long.append(e)
    if len(too_long) > MAX_DROPPED_FRACTION * len(convs):
        raise ValueError(
            f"{len(too_long)} of {len(convs)} {kind} rows are longer than rae_max_length="
            f"{method.config.rae_max_length} (e.g. {too_long[0]}); raise rae_max_length"
        )
    if too_long:
        logging.warning("%d of %d %s rows are too long: left out", len(too_long), len(convs), kind)
    if not rows:
        raise ValueError(f"no {kind} rows for the {split} split ({qa['dir']})")
    # one length per stage (one compiled step each), so no bucket: every position costs
    return with_target_positions(trim_padding(rows, left=False, bucket=1))


def with_target_positions(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Rows with ``target_pos`` / ``target_weight [K]`` (:func:`vau_jax.models.vlm.
    target_positions`, one ``K`` for the whole stage): the loss then projects to the
    vocabulary only where an answer token is predicted (an answer is ~10-40 of ~180 tokens)."""
    from vau_jax.models.vlm import target_positions

    pos, weight = target_positions(np.stack([r["loss_mask"] for r in rows]))
    return [{**r, "target_pos": p, "target_weight": w} for r, p, w in zip(rows, pos, weight)]


#: Trimmed row lengths are multiples of this (few compiled shapes across configs).
LENGTH_BUCKET = 16
SEQUENCE_KEYS = ("input_ids", "attention_mask", "loss_mask", "video_mask")


def trim_padding(
    rows: list[dict[str, np.ndarray]], left: bool, bucket: int = LENGTH_BUCKET
) -> list[dict[str, np.ndarray]]:
    """Rows padded to ``rae_max_length`` cut to the longest row's length, rounded up to
    ``bucket`` (at most the padded length): only padding is removed, so a causal LM's
    outputs on the kept tokens are the same, and a stage of short rows (the anomaly questions
    are about half as long as the narrations) costs what its rows need. ``left``: the rows
    are left-padded (generation prompts)."""
    full = len(rows[0]["input_ids"])
    longest = max(int(np.sum(r["attention_mask"])) for r in rows)
    length = min(full, -(-longest // bucket) * bucket)
    cut = slice(full - length, full) if left else slice(0, length)
    return [{k: (v[cut] if k in SEQUENCE_KEYS else v) for k, v in r.items()} for r in rows]


def eval_rows(method: Any, split: str) -> tuple[list[dict[str, np.ndarray]], list[dict]]:
    """Generation prompts of a split's questions and ``{"video", "kind", "question",
    "truth"}`` per prompt."""
    from vau_jax.methods.pretrain.video_llm import chat_row

    index = _index(method, split)
    rows, items = [], []
    for k, q in enumerate(method.qa["questions"]):
        if q["video"] not in index:
            continue
        human = q["conversations"][0]["value"]
        try:
            row = chat_row(
                method.tok,
                method.config,
                human,
                q["question"],
                None,
                index[q["video"]],
                method.num_video_tokens,
                f"{q['video']} question {k}",
                max_length=int(method.config.rae_max_length),
                query_tok=method.query_tok,
            )
        except TooLongError as e:
            raise ValueError(f"{e}; raise rae_max_length") from None
        rows.append(row)
        items.append(
            {
                "video": q["video"],
                "kind": q["kind"],
                "question": q["question"],
                "truth": q["answer"],
            }
        )
    if not rows:
        raise ValueError(f"no evaluation question for the {split} split ({method.qa['dir']})")
    return trim_padding(rows, left=True), items
