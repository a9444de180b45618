"""Conversations -> token ids for the multimodal LLM, with the chat format as data.

One function lays out every example the language half trains or evaluates on:
:func:`tokenize_chat` renders a LLaVA-style conversation (``[{"from": "human"|"gpt",
"value": str}, ...]``) in a chat format of :data:`vau_jax.data.templates.CHAT_FORMATS`
(Vicuna v1.1 or ChatML), expands the ``<video>`` marker into ``num_video_tokens`` placeholder
positions (flagged in ``video_mask``; the model splices visual embeddings there), and marks
the assistant tokens (answer, its suffix and EOS) in ``loss_mask``. With
``add_generation_prompt=True`` the last turn must be human and the assistant prefix is
appended: the prompt a model continues at evaluation time.

Placeholders carry the pad id, so any vocabulary works (SmolLM2 has no ``<video>`` token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vau_jax.data import templates as T


def chat_format(name: str) -> Mapping[str, Any]:
    """The chat format called ``name`` (``vicuna_v1`` or ``chatml``)."""
    if name not in T.CHAT_FORMATS:
        raise ValueError(f"unknown chat format {name!r}; known: {sorted(T.CHAT_FORMATS)}")
    return T.CHAT_FORMATS[name]


def _encode_human(tok: Any, text: str, num_video_tokens: int) -> tuple[list[int], list[bool]]:
    ids: list[int] = []
    video: list[bool] = []
    for i, piece in enumerate(text.split(T.VIDEO_MARKER)):
        if i > 0:
            ids += [tok.pad_id] * num_video_tokens
            video += [True] * num_video_tokens
            piece = piece.removeprefix("\n")
        if piece:
            enc = list(tok.encode(piece))
            ids += enc
            video += [False] * len(enc)
    return ids, video


def chat_ids(
    tok: Any,
    conversation: Sequence[Mapping[str, str]],
    fmt: str = "vicuna_v1",
    *,
    num_video_tokens: int = 0,
    add_generation_prompt: bool = False,
    system: str | None = None,
) -> tuple[list[int], list[bool], list[bool]]:
    """Unpadded ``(ids, loss, video)`` lists of one conversation (see the module docstring)."""
    f = chat_format(fmt)
    ids: list[int] = [tok.bos_id] if f["bos"] and tok.bos_id is not None else []
    loss = [False] * len(ids)
    video = [False] * len(ids)

    def add(new: list[int], is_loss: bool, is_video: list[bool] | None = None) -> None:
        ids.extend(new)
        loss.extend([is_loss] * len(new))
        video.extend(is_video if is_video is not None else [False] * len(new))

    sys_text = f["system"] if system is None else system
    if sys_text:
        add(list(tok.encode(str(f["system_format"]).format(system=sys_text))), False)
    user_prefix, user_suffix = str(f["user_format"]).split("{text}")
    for turn in conversation:
        role, value = turn["from"], turn["value"]
        if role == "human":
            if user_prefix:
                add(list(tok.encode(user_prefix)), False)
            body, vid = _encode_human(tok, value, num_video_tokens)
            add(body, False, vid)
            if user_suffix:
                add(list(tok.encode(user_suffix)), False)
        elif role == "gpt":
            add(list(tok.encode(str(f["assistant_prefix"]))), False)
            target = list(tok.encode(value + str(f["assistant_suffix"])))
            if f["eos_after_assistant"]:
                target.append(tok.eos_id)
            add(target, True)
        else:
            raise ValueError(f"unknown role {role!r} in conversation; expected 'human' or 'gpt'")
    if add_generation_prompt:
        if not conversation or conversation[-1]["from"] != "human":
            raise ValueError("add_generation_prompt needs a conversation ending in a human turn")
        add(list(tok.encode(str(f["assistant_prefix"]))), False)
    return ids, loss, video


class TooLongError(ValueError):
    """A conversation longer than ``max_length`` tokens (:func:`tokenize_chat`)."""

    def __init__(self, source: str, length: int, max_length: int):
        super().__init__(f"{source}: {length} tokens > max_length={max_length}; raise max_length")
        self.source, self.length, self.max_length = source, length, max_length


def tokenize_chat(
    tok: Any,
    conversation: Sequence[Mapping[str, str]],
    max_length: int,
    fmt: str = "vicuna_v1",
    *,
    num_video_tokens: int = 0,
    add_generation_prompt: bool = False,
    left_pad: bool = False,
    system: str | None = None,
    source: str = "conversation",
) -> dict[str, np.ndarray]:
    """One conversation -> fixed-length arrays (``S = max_length``).

    Returns ``input_ids`` int32 ``[S]`` (pad id at padding and at video placeholders),
    ``attention_mask`` bool ``[S]``, ``loss_mask`` bool ``[S]`` (True where ``input_ids[i]``
    is an assistant target, predicted from positions ``< i``; the caller shifts) and
    ``video_mask`` bool ``[S]``. Right padding for training, left padding (``left_pad``) for
    generation prompts.

    Raises:
      TooLongError: (a ``ValueError``) naming ``source``, when the example is longer than
        ``max_length`` (it would cut visual tokens or the answer; raise ``max_length``).
    """
    ids, loss, video = chat_ids(
        tok,
        conversation,
        fmt,
        num_video_tokens=num_video_tokens,
        add_generation_prompt=add_generation_prompt,
        system=system,
    )
    n = len(ids)
    if n > max_length:
        raise TooLongError(source, n, max_length)
    sl = slice(max_length - n, max_length) if left_pad else slice(0, n)
    out = {
        "input_ids": np.full((max_length,), tok.pad_id, np.int32),
        "attention_mask": np.zeros((max_length,), bool),
        "loss_mask": np.zeros((max_length,), bool),
        "video_mask": np.zeros((max_length,), bool),
    }
    out["input_ids"][sl] = ids
    out["attention_mask"][sl] = True
    out["loss_mask"][sl] = loss
    out["video_mask"][sl] = video
    return out


def weight_letter(
    tok: Any, row: dict[str, np.ndarray], letter: str | None, weight: float, last: bool
) -> np.ndarray:
    """``row``'s loss mask as float32 weights ``[S]`` with its answer's letter token weighted
    ``weight`` (``letter`` None: the mask unchanged, as float32, so that every row of a
    weighted set batches alike). The letter is the first target token that decodes to exactly
    ``letter`` (``"letter"`` answers) or, with ``last``, the last one (``"evidence"`` /
    ``"option"`` answers, whose letter ends the answer). Raises ValueError when no target
    token is the letter."""
    w = row["loss_mask"].astype(np.float32)
    if letter is None:
        return w
    targets = np.flatnonzero(w)
    if last:
        targets = targets[::-1]
    for pos in targets:
        if tok.decode([int(row["input_ids"][pos])]).strip() == letter:
            w[pos] = weight
            return w
    raise ValueError(f"no target token is the answer's letter {letter!r}")


def letter_weighted_row(
    tok: Any, row: dict[str, np.ndarray], conversation: list[dict[str, str]], weight: float
) -> dict[str, np.ndarray]:
    """``row`` (of ``conversation``) with float32 loss weights and, when the conversation is
    one lettered multiple-choice answer (:func:`vau_jax.data.benchmark.lettered_answer`),
    that letter's token weighted ``weight`` (:func:`weight_letter`, from the end of the
    answer when its letter ends it). The letter and where it stands are read from the answer
    itself, never from a config's answer style: text pretraining and the video stages both
    mix letter-first rows (object questions) with whatever style the rest use. Every row of
    a set weighted this way must pass through here, so that all carry float32 weights and
    batch alike."""
    from vau_jax.data.benchmark import lettered_answer

    answers = [t["value"] for t in conversation if t["from"] == "gpt"]
    found = lettered_answer(answers[0]) if len(answers) == 1 else None
    letter, last = found if found else (None, False)
    return {**row, "loss_mask": weight_letter(tok, row, letter, weight, last)}
