"""The SynthVAD text corpus and the tiny presets' sentencepiece tokenizers trained on it.

The corpus is every sentence the tiny presets will ever tokenise: per-frame captions at every
spatial word, scene/event descriptions and the instruction data (questions, answers,
multiple-choice prompts) of SynthVAD *train* videos, plus the chat-template markers. A
tokenizer is trained once, offline, and cached as ``<data_dir>/tokenizer_<name>_<V>.model``.

Three tokenizers (:data:`TOKENIZERS`), all on the same corpus:

* ``"synthvad"``: the chat markers as single tokens. The tiny CLIP's text tower reads it.
* ``"synthvad_letters"``: also the option letters ``A``-``H`` as single tokens. With
  ``"synthvad"`` an option letter is one token where it opens an option line (``"\nB."`` ->
  ``B``, ``.``) but another where an answer writes it: ``" B."`` -> ``▁``, ``B``, ``.``, and
  ``" A."`` -> ``▁A``, the article's token, which no option line ever holds. Here every
  letter is the same token in the prompt and in the answer (``" A."`` -> ``▁``, ``A``,
  ``.``), so the letter an answer writes is the token of the option line it chose. The
  tiny LLM reads it (``text_pretrain.tokenizer`` / ``llm_pretrain.tokenizer``).
* ``"synthvad_times"`` (ours, off): also every time an answer or option can write, 0.0s to
  20.0s in 0.1 s steps (:data:`TIME_TOKENS`), as one token each: ``" 4.9s"`` -> ``▁4.9s``
  where ``"synthvad"`` writes ``▁``, ``4``, ``.``, ``9``, ``s``, so that matching an interval
  among options compares two tokens, not ten. Its 201 symbols take vocabulary slots: 712
  pieces leave it about the other tokenizers' 512-piece word pieces (512 is too few to hold
  the corpus's characters beside them). The tiny LLM reads it with
  ``text_pretrain.tokenizer=synthvad_times`` and ``text_pretrain.vocab_size=712``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from vau_jax import timing
from vau_jax.data import synthvad
from vau_jax.data.benchmark import MCQuestion
from vau_jax.data.instruct import synth_instructions
from vau_jax.data.synthvad import text as synth_text
from vau_jax.data.tokenizer import SentencePieceTokenizer, train_sentencepiece

#: Markers kept as single tokens (chat templates and the video placeholder).
SPECIAL_SYMBOLS = ("<video>", "USER:", "ASSISTANT:", "<|im_start|>", "<|im_end|>")
#: Letters of up to 8 options (SynthVAD's 7 anomaly types and "no anomaly").
OPTION_LETTERS = tuple("ABCDEFGH")
#: Every time an interval can be written with (``format_time``: 0.1 s steps; SynthVAD's
#: videos last 6-16 s, 20 s leaves room), each after its space: ``" 4.9s"`` -> ``▁4.9s``.
TIME_TOKENS = tuple(f"\u2581{t / 10:.1f}s" for t in range(201))
#: Tokenizer name -> its single-token symbols (see the module docstring).
TOKENIZERS = {
    "synthvad": SPECIAL_SYMBOLS,
    "synthvad_letters": SPECIAL_SYMBOLS + OPTION_LETTERS,
    "synthvad_times": SPECIAL_SYMBOLS + TIME_TOKENS,
}


def _video_sentences(split: str, index: int, config: synthvad.SynthConfig) -> list[str]:
    """The corpus sentences of video ``index`` of ``split``: its scene and event descriptions
    and its instruction data (run in a render worker; only the text travels back)."""
    v = synthvad.render_split_video(split, index, config)
    lines = [v.scene_description, v.event_description]
    for item in synth_instructions(v).values():
        if isinstance(item, MCQuestion):
            lines.append(item.prompt())
            lines.extend(o.text for o in item.options)
        else:
            lines.extend(turn["value"].replace("<video>", " ") for turn in item)
    return lines


def synthvad_corpus(
    num_videos: int = 200,
    config: synthvad.SynthConfig | None = None,
    workers: int | None = None,
) -> list[str]:
    """Sentences of the SynthVAD text corpus (deterministic): every caption template at every
    spatial word, then the sentences of train videos ``0 .. num_videos-1``, rendered in
    ``workers`` processes (default: one per CPU from 16 videos up; the same list for any
    number)."""
    from vau_jax.data.synthvad.parallel import map_videos

    config = config or synthvad.SynthConfig()
    lines: list[str] = []
    for caption in synth_text.FRAME_CAPTIONS.values():
        if "{where}" in caption:
            lines.extend(caption.format(where=w) for w in synthvad.SPATIAL_WORDS)
        else:
            lines.append(caption)
    for sentences in map_videos(_video_sentences, "train", num_videos, config, workers):
        lines.extend(sentences)
    return lines


def ensure_tokenizer(
    data_dir: str, vocab_size: int = 512, num_videos: int = 200, name: str = "synthvad"
) -> SentencePieceTokenizer:
    """The cached SynthVAD tokenizer ``name`` of :data:`TOKENIZERS`, trained on
    :func:`synthvad_corpus` when missing. Raises ValueError for another name."""
    if name not in TOKENIZERS:
        raise ValueError(f"tokenizer {name!r}: choose from {sorted(TOKENIZERS)}")
    path = os.path.join(data_dir, f"tokenizer_{name}_{vocab_size}.model")
    if not os.path.isfile(path):
        cfg = dataclasses.replace(synthvad.SynthConfig(), height=64, width=64)
        tmp = path[: -len(".model")] + f".tmp{os.getpid()}.model"
        with timing.phase("tokenizer"):
            train_sentencepiece(
                synthvad_corpus(num_videos, cfg),
                tmp,
                vocab_size,
                user_defined_symbols=TOKENIZERS[name],
            )
        os.replace(tmp, path)
        vocab = tmp[: -len(".model")] + ".vocab"
        if os.path.exists(vocab):
            os.remove(vocab)
    return SentencePieceTokenizer(path)


def config_tokenizer(config: Any) -> SentencePieceTokenizer:
    """:func:`ensure_tokenizer` of a pretraining config: ``config.data_dir``,
    ``config.vocab_size`` and ``config.tokenizer`` (``"synthvad"`` when the config has no such
    field, as configs saved before it existed)."""
    return ensure_tokenizer(
        config.data_dir, int(config.vocab_size), name=str(config.get("tokenizer", "synthvad"))
    )
