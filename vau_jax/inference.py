"""The one Python inference API: a finished run folder -> ``predict(frames, fps, state)``.

    import vau_jax
    run = vau_jax.load_run("runs/vadllama-tiny")
    timeline, state = run.predict(frames, fps=8.0)            # frames: uint8 [T, H, W, 3]
    timeline2, state = run.predict(more_frames, 8.0, state)   # a stream, window by window

``load_run`` rebuilds the method from the run's ``config.json`` (registry, cheap), loads
only what prediction needs (``prepare(inference=True)``: frozen encoders and auxiliary heads,
never the training features, never training anything) and restores the latest checkpoint
onto a mesh of the local devices. Every timeline has the ``timeline.json`` schema:
``frame_probs`` (one anomaly probability per input frame), ``intervals_s`` (runs above the
threshold, ``[[start, end], ...]`` seconds, half-open), ``fps``, ``n_frames``, ``start_s``,
``method``, plus the method's extras (VA-GPT: ranked ``options``, ``explanation``, TETG's
sentence; VAD-LLaMA: ``clip_scores``).

Follow-up questions (the web app's chat, :mod:`vau_jax.serve`): ``run.ask(context, turns,
question, chat=run.method.last_chat)`` answers about the video of the last ``predict``
without decoding or encoding a frame again. ``predict`` keeps the LLM's KV cache of its
answer (``method.last_chat``, a :class:`vau_jax.eval.chat_cache.ChatState`: system prompt,
video tokens, prompt, answer); a follow-up prefills only its own new tokens (end of the last
answer, the question, the generation prompt) onto that cache and decodes from there, and its
answer stays in the cache for the next one. No vision encoder or Q-Former runs, so the video
tokens it attends to are the opening prompt's: the Q-Former's instruction for them is the
*opening* question (VA-GPT: the explanation's question; T-VAU: "Is there an anomaly in this
video?"), not the follow-up. When the conversation outgrows the cache (or the cache was
dropped) the prompt is rebuilt as without a cache (:func:`followup_row`: from the
frozen-encoder features in ``context = run.method.last_prediction``, the oldest follow-ups
dropped, the new question as the Q-Former's instruction) and the cache starts again from it;
``chat.path`` says which ran. Without ``chat`` every follow-up is rebuilt that way. Methods
whose prediction has no language model (VAD-LLaMA) raise :class:`ChatUnavailableError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class RunError(ValueError):
    """A run folder that cannot be used for prediction; the message starts with the path."""


class ChatUnavailableError(ValueError):
    """The run's prediction has no language model to answer a follow-up question."""


#: Methods whose prediction ends in a language model (follow-up questions possible).
CHAT_METHODS = ("vagpt", "tvau")


@dataclasses.dataclass
class Run:
    """A restored run (see the module docstring).

    Attributes:
      workdir: the run folder.
      config: its config.
      method: the prepared (inference) method object.
      params: the trained params of the latest checkpoint.
      step: that checkpoint's global step; ``stage`` its stage name.
    """

    workdir: str
    config: Any
    method: Any
    params: Any
    step: int
    stage: str

    @property
    def name(self) -> str:
        """The method's registry name."""
        return str(self.config.method)

    def frame_rate(self) -> float:
        """Frames per second the method's encoders see (decode at this rate)."""
        m = self.method
        if hasattr(m, "predict_fps"):  # methods whose encoders see every native frame
            return float(m.predict_fps)
        spec = m.spec if hasattr(m, "spec") else m.specs["cls"]
        return float(spec.fps)

    def frame_size(self) -> int:
        """Encoder input side in pixels (decode to this size, centre crop)."""
        m = self.method
        spec = m.spec if hasattr(m, "spec") else m.specs["cls"]
        return int(spec.size)

    def predict(
        self, frames: np.ndarray, fps: float, state: Any = None, **kwargs: Any
    ) -> tuple[dict[str, Any], Any]:
        """uint8 ``[T, H, W, 3]`` frames at ``fps`` -> ``(timeline, state)``; ``state=None``
        starts a new video. ``kwargs`` go to the method (VA-GPT: ``question``,
        ``num_options``, ``free_form``, ``max_new_tokens``)."""
        if self.name == "vagpt":
            from vau_jax.methods.vagpt.predict import predict

            keep = 1.0 if self.stage == "stage1" else None
            return predict(self.method, self.params, frames, fps, state, keep=keep, **kwargs)
        if kwargs:
            raise TypeError(f"{self.name}.predict takes no options, got {sorted(kwargs)}")
        return self.method.predict(self.params, frames, fps, state)

    @property
    def can_chat(self) -> bool:
        """Whether :meth:`ask` can answer (the method predicts with a language model)."""
        return self.name in CHAT_METHODS

    def opening_turns(self, timeline: dict[str, Any]) -> list[dict[str, str]]:
        """The conversation a chat about ``timeline`` starts from (the prediction's own
        question and answer, ``[{"from": "human"|"gpt", "value": str}, ...]``)."""
        if not self.can_chat:
            return []
        if self.name == "vagpt":
            from vau_jax.methods.vagpt.predict import opening_turns
        else:
            from vau_jax.methods.tvau.predict import opening_turns
        return opening_turns(timeline)

    def ask(
        self,
        context: Any,
        turns: list[dict[str, str]],
        question: str,
        max_new_tokens: int = 32,
        timeline: dict[str, Any] | None = None,
        chat: Any = None,
    ) -> str:
        """The language model's greedy answer to ``question`` about the video of an earlier
        :meth:`predict` (module docstring).

        Args:
          context: ``self.method.last_prediction`` right after that ``predict``.
          turns: the conversation so far (:meth:`opening_turns`, then questions and answers).
          timeline: that prediction's timeline (VA-GPT: its SETS ratio).
          chat: ``self.method.last_chat`` right after that ``predict`` (a
            :class:`~vau_jax.eval.chat_cache.ChatState`, updated in place: the answer is
            continued from its KV cache); ``None``: rebuild the prompt every turn.
        Raises:
          ChatUnavailableError: the method has no language model in its prediction.
          ValueError: the question alone is longer than the model's prompt length.
        """
        if self.name == "vagpt":
            from vau_jax.methods.vagpt.predict import ask

            keep = (timeline or {}).get("sets_keep_ratio")
            keep = (1.0 if self.stage == "stage1" else None) if keep is None else keep
            return ask(
                self.method,
                self.params,
                context,
                turns,
                question,
                keep=keep,
                max_new_tokens=max_new_tokens,
                chat=chat,
            )
        if self.name == "tvau":
            from vau_jax.methods.tvau.predict import ask

            return ask(
                self.method,
                self.params,
                context,
                turns,
                question,
                max_new_tokens=max_new_tokens,
                chat=chat,
            )
        phase3 = self.config.get("phase3", None)
        extra = (
            "; its phase-3 LLM is not part of prediction"
            if phase3 is not None and phase3.get("enabled", False)
            else " (phases 1-2 only)"
        )
        raise ChatUnavailableError(
            f"{self.workdir}: a {self.name} run predicts with its anomaly scorer only: "
            f"no language model to ask{extra}"
        )


def clean_question(question: str) -> str:
    """A follow-up question as asked: video markers removed, whitespace collapsed."""
    from vau_jax.data import templates as T

    return " ".join(question.replace(T.VIDEO_MARKER, " ").split())


def followup_row(
    tok: Any,
    config: Any,
    turns: list[dict[str, str]],
    question: str,
    num_video_tokens: int,
    max_length: int,
    query_tok: Any = None,
    source: str = "chat",
) -> dict[str, np.ndarray]:
    """The left-padded generation row (the ``chat_row`` keys) of the conversation ``turns``
    followed by the human ``question``; the Q-Former's instruction is ``question``.

    The first human turn carries the ``<video>`` marker (without turns the question gets it).
    A conversation longer than ``max_length`` tokens loses its oldest follow-up exchanges
    first, then its opening exchange. Raises the chat tokenizer's ``TooLongError`` (a
    ``ValueError``) when the question alone does not fit.
    """
    row, _ = _followup(
        tok, config, turns, question, num_video_tokens, max_length, query_tok, source
    )
    return row


def _followup(
    tok: Any,
    config: Any,
    turns: list[dict[str, str]],
    question: str,
    num_video_tokens: int,
    max_length: int,
    query_tok: Any,
    source: str,
) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
    """:func:`followup_row` and the conversation the row holds (what was kept of ``turns``,
    then the question)."""
    from vau_jax.data import templates as T
    from vau_jax.data.chat import TooLongError, tokenize_chat
    from vau_jax.methods.pretrain.vlm_parts import encode_query

    question = clean_question(question)
    opening, rest = list(turns[:2]), list(turns[2:])
    while True:
        if opening:
            conv = [*opening, *rest, {"from": "human", "value": question}]
        else:
            conv = [{"from": "human", "value": f"{T.VIDEO_MARKER}\n{question}"}]
        try:
            ex = tokenize_chat(
                tok,
                conv,
                int(max_length),
                str(config.chat_format),
                num_video_tokens=int(num_video_tokens),
                add_generation_prompt=True,
                left_pad=True,
                system=config.system_prompt,
                source=source,
            )
            break
        except TooLongError:
            if rest:
                rest = rest[2:]
            elif opening:
                opening = []
            else:
                raise
    ex["query_ids"], ex["query_mask"] = encode_query(
        query_tok or tok, question, int(config.max_query_length)
    )
    ex["video"] = np.int32(0)
    return ex, conv


def load_config(workdir: str) -> Any:
    """The run's config from ``workdir/config.json`` (``RunError`` naming the path)."""
    import ml_collections

    if not os.path.isdir(workdir):
        raise RunError(f"{workdir}: no such run folder")
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing; not a run folder of python -m vau_jax.main")
    try:
        with open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: cannot read the run's config: {err}") from None


def load_run(workdir: str, config: Any = None) -> Run:
    """Restores the run in ``workdir`` for prediction (see the module docstring).

    Raises:
      RunError: not a run folder, a method without prediction, no checkpoint, or a frozen
        encoder / auxiliary head the run needs is missing (the message names the path).
    """
    import jax
    import ml_collections

    from vau_jax import methods
    from vau_jax.train.checkpoint import CheckpointCorruptError
    from vau_jax.train.trainer import Trainer

    config = load_config(workdir) if config is None else config
    name = str(config.get("method", ""))
    if name not in methods.PREDICTORS:
        raise RunError(
            f"{workdir}: a {name!r} run; prediction needs one of {list(methods.PREDICTORS)}"
        )
    ckpts = os.path.join(workdir, "checkpoints")
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.async_checkpointing = False
    steps = os.listdir(ckpts) if os.path.isdir(ckpts) else []
    if not any(n.isdigit() for n in steps):  # before preparing: a cheap, more useful answer
        raise RunError(f"{ckpts}: no checkpoint; train first with python -m vau_jax.main")
    method = methods.build(config, workdir)
    try:
        method.prepare(inference=True)
    except FileNotFoundError as err:
        raise RunError(
            f"{err} (run from the folder the run was started in: data_dir="
            f"{config.get('data_dir', '')!r})"
        ) from None
    trainer = Trainer(method, config, workdir)
    try:
        if trainer.ckpt.latest_step() is None and not trainer.ckpt.step_dirs():
            raise RunError(f"{ckpts}: no checkpoint; train first with python -m vau_jax.main")
        try:
            step, params, meta = trainer.restore_latest()
        except CheckpointCorruptError as err:
            raise RunError(str(err)) from None
    finally:
        trainer.close()
    params = jax.device_put(jax.device_get(params), jax.local_devices()[0])  # one video: one device
    return Run(workdir, config, method, params, step, str(meta.get("stage", "")))


def followup_answer(
    scorer: Any,
    params: Any,
    llm: Any,
    row: dict[str, np.ndarray],
    tok: Any,
    attach: Any,
    max_new_tokens: int = 32,
    bucket: int = 128,
) -> str:
    """Greedy answer to one :func:`followup_row` (``Scorer.generate`` with the prompt
    cut to a multiple of ``bucket`` tokens: a growing conversation compiles once per bucket,
    not once per 16 tokens). ``params["llm"]`` are the LLM's params."""
    answers = scorer.generate(
        params, llm, [row], tok, attach, max_new_tokens, batch_size=1, bucket=bucket
    )
    return answers[0]


def followup_chat(
    chat: Any,
    scorer: Any,
    params: Any,
    llm: Any,
    tok: Any,
    config: Any,
    turns: list[dict[str, str]],
    question: str,
    num_video_tokens: int,
    max_length: int,
    attach: Any,
    query_tok: Any = None,
    source: str = "chat",
    max_new_tokens: int = 32,
) -> str:
    """A follow-up answered from the chat's KV cache (module docstring).

    ``chat`` (a :class:`~vau_jax.eval.chat_cache.ChatState`, updated in place) continues
    when the conversation fits its cache. Otherwise the prompt is rebuilt
    (:func:`followup_row`, generated as :func:`followup_answer` does) and ``chat`` starts
    again from that generation; the rebuilt conversation keeps at most ``max_length // 2``
    tokens (``max_length`` when the question alone needs more), so the next follow-ups fit
    the cache again instead of each rebuilding. ``chat=None`` is the path without a cache:
    every follow-up rebuilt with up to ``max_length`` tokens. ``params["llm"]`` are the LLM's
    params; ``scorer``/``attach`` embed a rebuilt prompt's video tokens.
    """
    from vau_jax.eval import chat_cache

    question = clean_question(question)
    if chat is not None:
        text = chat_cache.answer(
            chat,
            llm,
            params["llm"],
            tok,
            config,
            num_video_tokens,
            turns,
            question,
            int(max_new_tokens),
        )
        if text is not None:
            log.info("follow-up from the KV cache: %d tokens prefilled", chat.prefilled)
            return text
        log.info("follow-up rebuilt: %s", chat.reason)
    if chat is None:
        row = followup_row(
            tok, config, turns, question, num_video_tokens, max_length, query_tok, source
        )
        return followup_answer(scorer, params, llm, row, tok, attach, max_new_tokens)
    from vau_jax.data.chat import TooLongError

    try:  # half the limit at most: the cache then has room for the next follow-ups again
        row, conv = _followup(
            tok, config, turns, question, num_video_tokens, max_length // 2, query_tok, source
        )
    except TooLongError:
        row, conv = _followup(
            tok, config, turns, question, num_video_tokens, max_length, query_tok, source
        )
    texts, gen = scorer.generate_cached(
        params, llm, [row], tok, attach, int(max_new_tokens), bucket=128
    )
    conv = [*conv, {"from": "gpt", "value": texts[0]}]
    chat_cache.restart(chat, gen, conv, len(turns) + 2, question)
    return texts[0]
