"""One tokenizer interface over HF ``tokenizers``, sentencepiece and GGUF-embedded vocabularies.

    tok = load_tokenizer("tokenizer.json" | "spm.model" | "model.gguf" | "hf_folder/")
    ids = tok.encode("What happens at 3.5s?", add_bos=True)
    text = tok.decode(ids)
    prompt = render_chat(tok.chat_template, [{"role": "user", "content": "Hi"}])

GGUF vocabularies are rebuilt as HF ``tokenizers`` objects: ``gpt2`` (byte-level BPE from
tokens + merges) and ``llama`` (sentencepiece-style BPE: merges are derived from the piece
scores, with byte fallback, as HF does for sentencepiece BPE models). Tokens typed CONTROL or
USER_DEFINED in the file become special tokens, so ``<|im_start|>`` is a single id.

``train_sentencepiece`` trains the small tokenizer of the tiny presets offline.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

# GGUF token types (llama.cpp ``llama_token_type``).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<|im_start|>", "<|endoftext|>")
_EOS_NAMES = ("</s>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>")
_PAD_NAMES = ("<pad>", "<|pad|>", "<unk>")


@runtime_checkable
class Tokenizer(Protocol):
    """The interface every tokenizer implements.

    Attributes:
      vocab_size: number of ids (including special tokens).
      bos_id, eos_id, pad_id: special ids (``pad_id`` falls back to ``eos_id``).
      chat_template: a name understood by :func:`render_chat` (``"chatml"``,
        ``"vicuna_v1"``, ``"llama2"``) or ``None``.
    """

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    chat_template: str | None = None

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Text -> ids; special-token strings in ``text`` map to their single ids."""
        ...

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Ids -> text, optionally dropping special tokens."""
        ...

    def token_to_id(self, token: str) -> int | None:
        """The id of one token string, or ``None``."""
        ...


class HFTokenizer:
    """A tokenizer backed by an HF ``tokenizers.Tokenizer`` (``tokenizer.json``)."""

    def __init__(
        self,
        backend: Any,
        *,
        bos_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.backend = backend
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.bos_id = bos_id if bos_id is not None else self._first(_BOS_NAMES)
        self.eos_id = eos_id if eos_id is not None else self._first(_EOS_NAMES)
        pad = pad_id if pad_id is not None else self._first(_PAD_NAMES)
        self.pad_id = pad if pad is not None else self.eos_id
        self.chat_template = chat_template

    def _first(self, names: Iterable[str]) -> int | None:
        for name in names:
            i = self.backend.token_to_id(name)
            if i is not None:
                return i
        return None

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if add_bos and self.bos_id is not None else []) + list(ids)

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def save(self, path: str) -> None:
        """Writes ``path`` (``tokenizer.json``) and a sibling ``tokenizer_config.json``."""
        self.backend.save(path)
        meta: dict[str, Any] = {"chat_template_name": self.chat_template}
        for key, i in (
            ("bos_token", self.bos_id),
            ("eos_token", self.eos_id),
            ("pad_token", self.pad_id),
        ):
            meta[key] = None if i is None else self.backend.id_to_token(i)
        with open(os.path.join(os.path.dirname(path) or ".", "tokenizer_config.json"), "w") as f:
            json.dump(meta, f, indent=2)


class SentencePieceTokenizer:
    """A tokenizer over a sentencepiece ``.model`` file."""

    def __init__(self, model_file: str, chat_template: str | None = None) -> None:
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=model_file)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{model_file}: not a readable sentencepiece model: {e}") from None
        self.vocab_size = self.sp.get_piece_size()
        as_id = lambda i: None if i < 0 else int(i)
        self.bos_id, self.eos_id = as_id(self.sp.bos_id()), as_id(self.sp.eos_id())
        pad = as_id(self.sp.pad_id())
        self.pad_id = pad if pad is not None else self.eos_id
        self.chat_template = chat_template
        self._special = {
            self.sp.id_to_piece(i): i
            for i in range(self.vocab_size)
            if self.sp.is_control(i) or self.sp.is_unknown(i)
        }
        self._special_ids = set(self._special.values())

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        return ([self.bos_id] if add_bos and self.bos_id is not None else []) + list(
            self.sp.encode(text)
        )

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if not skip_special:
            # sentencepiece drops control pieces; keep them by decoding around them.
            out, run = [], []
            for i in ids:
                if i in self._special_ids:
                    out.append(self.sp.decode(run))
                    out.append(self.sp.id_to_piece(i))
                    run = []
                else:
                    run.append(i)
            out.append(self.sp.decode(run))
            return "".join(out)
        return self.sp.decode([i for i in ids if i not in self._special_ids])

    def token_to_id(self, token: str) -> int | None:
        i = self.sp.piece_to_id(token)
        return None if i == self.sp.unk_id() and token != self.sp.id_to_piece(i) else int(i)


# ----------------------------------------------------------------------------------- GGUF


def from_gguf_metadata(meta: Mapping[str, Any], *, source: str = "gguf") -> HFTokenizer:
    """Builds the tokenizer embedded in a GGUF file from its metadata values (``tokenizer.*``)."""
    from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as Backend
    from tokenizers.models import BPE

    kind = meta.get("tokenizer.ggml.model")
    tokens = meta.get("tokenizer.ggml.tokens")
    if kind is None or tokens is None:
        raise ValueError(f"{source}: no embedded tokenizer (tokenizer.ggml.model/tokens missing)")
    tokens = list(tokens)
    types = list(meta.get("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    if kind == "gpt2":
        merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
        backend = Backend(BPE(vocab, merges, fuse_unk=False))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        pre = meta.get("tokenizer.ggml.pre", "default")
        if pre == "smollm":  # SmolLM's tokenizer.json splits digits first
            backend.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level]
            )
        else:
            backend.pre_tokenizer = byte_level
        backend.decoder = decoders.ByteLevel()
    elif kind == "llama":
        scores = list(meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens))
        unk = meta.get("tokenizer.ggml.unknown_token_id", 0)
        merges = _merges_from_scores(tokens, scores, types)
        backend = Backend(
            BPE(vocab, merges, unk_token=tokens[unk], byte_fallback=True, fuse_unk=True)
        )
        norm = [normalizers.Replace(" ", "\u2581")]
        if meta.get("tokenizer.ggml.add_space_prefix", True):
            norm.insert(0, normalizers.Prepend("\u2581"))
        backend.normalizer = normalizers.Sequence(norm)
        backend.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
            + (
                [decoders.Strip(" ", 1, 0)]
                if meta.get("tokenizer.ggml.add_space_prefix", True)
                else []
            )
        )
    else:
        raise ValueError(f"{source}: unsupported GGUF tokenizer model {kind!r} (gpt2, llama)")
    special = [
        AddedToken(t, special=True, normalized=False)
        for t, ty in zip(tokens, types)
        if ty in (_CONTROL, _USER_DEFINED, _UNKNOWN)
    ]
    backend.add_special_tokens(special)

    def opt(key: str) -> int | None:
        v = meta.get(key)
        return None if v is None else int(v)

    template = meta.get("tokenizer.chat_template")
    return HFTokenizer(
        backend,
        bos_id=opt("tokenizer.ggml.bos_token_id"),
        eos_id=opt("tokenizer.ggml.eos_token_id"),
        pad_id=opt("tokenizer.ggml.padding_token_id"),
        chat_template=_template_name(template) if template else None,
    )


def _merges_from_scores(
    tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]
) -> list[tuple[str, str]]:
    """BPE merges of a sentencepiece-BPE vocabulary: every split ``a + b`` of a normal piece
    into two pieces of the vocabulary, ranked by the piece's score (higher merges first)."""
    vocab = {t: i for i, t in enumerate(tokens) if types[i] == _NORMAL}
    found = []
    for piece, pid in vocab.items():
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                found.append((-scores[pid], vocab[a], vocab[b], a, b))
    found.sort()
    return [(a, b) for _, _, _, a, b in found]


def read_gguf_metadata(path: str) -> dict[str, Any]:
    """All key/value metadata of a GGUF file (no tensor data is read)."""
    return open_gguf(path)[0]


def open_gguf(path: str) -> tuple[dict[str, Any], Any]:
    """``(metadata, gguf.GGUFReader)`` of a GGUF file (tensors are views into a memory map).

    The reader is bounded (:func:`_bounded_gguf_reader`): every count, length and dims field
    is checked against the bytes left in the file before it is used, so a lying header fails
    at once instead of looping over 10^12 phantom array items.

    Raises:
      CheckpointMismatchError: ``"{path}: not a readable GGUF file: ..."`` for anything the
        reader refuses (bad magic, short or lying counts / lengths / dims, bad UTF-8).
    """
    from vau_jax.tree import CheckpointMismatchError

    try:
        reader = _bounded_gguf_reader()(path)
        meta = {k: f.contents() for k, f in reader.fields.items()}
    except Exception as e:  # ValueError, IndexError, KeyError, UnicodeDecodeError, ...
        raise CheckpointMismatchError(
            f"{path}: not a readable GGUF file: {type(e).__name__}: {e}"
        ) from None
    return meta, reader


@functools.cache
def _bounded_gguf_reader() -> type:
    """``gguf.GGUFReader`` whose reads never run past the end of the file.

    The stock reader (gguf 0.19) slices its memory map, so a field past the end reads as an
    empty array; an array field whose count claims 10^12 scalars then loops 10^12 times over
    empty reads (a hang). Here a read past the end, or an array count needing more bytes than
    remain, raises ``ValueError`` naming the offset.
    """
    import gguf

    min_item = {gguf.GGUFValueType.STRING: 8, gguf.GGUFValueType.ARRAY: 12}

    class BoundedGGUFReader(gguf.GGUFReader):
        def _get(
            self, offset: int, dtype: Any, count: int = 1, override_order: Any = None
        ) -> np.ndarray:
            need = int(np.dtype(dtype).itemsize) * int(count)
            if offset < 0 or int(count) < 0 or offset + need > len(self.data):
                raise ValueError(
                    f"a field at byte {offset} needs {need} bytes; the file has {len(self.data)}"
                )
            return super()._get(offset, dtype, count, override_order)

        def _get_field_parts(self, orig_offs: int, raw_type: int) -> Any:
            if int(raw_type) == gguf.GGUFValueType.ARRAY:
                item_type = int(self._get(orig_offs, np.uint32)[0])
                count = int(self._get(orig_offs + 4, np.uint64)[0])
                nptype = self.gguf_scalar_to_np.get(item_type)
                size = np.dtype(nptype).itemsize if nptype else min_item.get(item_type, 1)
                left = len(self.data) - orig_offs - 12
                if count * size > left:
                    raise ValueError(
                        f"an array at byte {orig_offs} claims {count} items; {left} bytes remain"
                    )
            return super()._get_field_parts(orig_offs, raw_type)

    return BoundedGGUFReader


def _template_name(template: str) -> str | None:
    if "<|im_start|>" in template:
        return "chatml"
    if "[INST]" in template:
        return "llama2"
    if "USER:" in template and "ASSISTANT:" in template:
        return "vicuna_v1"
    return None


# ------------------------------------------------------------------------------ chat text

_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions."
)


def render_chat(
    template: str | None,
    messages: Sequence[Mapping[str, str]],
    *,
    add_generation_prompt: bool = True,
) -> str:
    """Formats ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` as text.

    ``chatml`` (SmolLM2, Qwen), ``vicuna_v1`` (Vicuna / LLaMA-VID), ``llama2`` (``[INST]``).
    Special tokens are written as text; :meth:`Tokenizer.encode` maps them to their ids.
    """
    if template == "chatml":
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")
    if template == "vicuna_v1":
        system = next((m["content"] for m in messages if m["role"] == "system"), _VICUNA_SYSTEM)
        parts = [system]
        for m in messages:
            if m["role"] == "user":
                parts.append(f"USER: {m['content']}")
            elif m["role"] == "assistant":
                parts.append(f"ASSISTANT: {m['content']}</s>")
        return " ".join(parts) + (" ASSISTANT:" if add_generation_prompt else "")
    if template == "llama2":
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        out = ""
        for m in messages:
            if m["role"] == "user":
                content = m["content"]
                if system is not None and not out:
                    content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
                out += f"<s>[INST] {content} [/INST]"
            elif m["role"] == "assistant":
                out += f" {m['content']} </s>"
        return out
    raise ValueError(f"unknown chat template {template!r}; known: chatml, vicuna_v1, llama2")


# ------------------------------------------------------------------------- load and train


def load_tokenizer(path: str, chat_template: str | None = None) -> Tokenizer:
    """Picks the implementation by file type: ``tokenizer.json``, ``*.model``, ``*.gguf``, or
    a folder holding one of the first two (HF ``tokenizer_config.json`` supplies bos/eos/pad)."""
    if os.path.isdir(path):
        for name in ("tokenizer.json", "tokenizer.model", "spm.model"):
            if os.path.isfile(os.path.join(path, name)):
                return load_tokenizer(os.path.join(path, name), chat_template)
        raise FileNotFoundError(f"{path}: no tokenizer.json or tokenizer.model in this folder")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such tokenizer file")
    if path.endswith(".gguf"):
        tok = from_gguf_metadata(read_gguf_metadata(path), source=path)
    elif path.endswith(".model"):
        tok = SentencePieceTokenizer(path)
    elif path.endswith(".json"):
        tok = _load_tokenizer_json(path)
    else:
        raise ValueError(f"{path}: unknown tokenizer file type (.json, .model or .gguf)")
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def _load_tokenizer_json(path: str) -> HFTokenizer:
    from tokenizers import Tokenizer as Backend

    try:
        backend = Backend.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception subclass
        raise ValueError(f"{path}: not a valid tokenizer.json: {e}") from None
    ids: dict[str, int | None] = {}
    template = None
    cfg_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            try:
                cfg = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{cfg_path}: not valid JSON: {e}") from None
        for key in ("bos_token", "eos_token", "pad_token"):
            tok = cfg.get(key)
            tok = tok.get("content") if isinstance(tok, dict) else tok
            ids[key] = backend.token_to_id(tok) if tok else None
        template = cfg.get("chat_template_name")
        if template is None and isinstance(cfg.get("chat_template"), str):
            template = _template_name(cfg["chat_template"])
    return HFTokenizer(
        backend,
        bos_id=ids.get("bos_token"),
        eos_id=ids.get("eos_token"),
        pad_id=ids.get("pad_token"),
        chat_template=template,
    )


def train_sentencepiece(
    lines: Iterable[str],
    model_path: str,
    vocab_size: int,
    *,
    model_type: str = "bpe",
    user_defined_symbols: Sequence[str] = (),
    byte_fallback: bool = True,
) -> SentencePieceTokenizer:
    """Trains a sentencepiece model offline on ``lines`` and writes ``model_path`` (``.model``).

    Ids: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3, then ``user_defined_symbols``
    (e.g. chat markers), then bytes (with ``byte_fallback``, any text encodes) and pieces.
    ``vocab_size`` is an upper bound on small corpora. Lossless (identity normalisation,
    whitespace kept, byte fallback) and deterministic for the same input.
    """
    import sentencepiece as spm

    if not model_path.endswith(".model"):
        raise ValueError(f"{model_path}: model_path must end with .model")
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ValueError(f"{model_path}: no non-empty training lines")
    os.makedirs(os.path.dirname(os.path.abspath(model_path)), exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=model_path[: -len(".model")],
        vocab_size=int(vocab_size),
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=byte_fallback,
        # lossless like LLaMA's tokenizer: no NFKC, whitespace kept, digits one by one
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        hard_vocab_limit=False,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=list(user_defined_symbols),
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return SentencePieceTokenizer(model_path)


def encode_left_padded(
    tok: Tokenizer, texts: Sequence[str], length: int, *, add_bos: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Encodes ``texts`` left-padded with ``pad_id`` (truncated from the left) to
    ``ids [len(texts), length]`` int32 and ``mask`` int32 (1 = token), the layout
    :func:`vau_jax.eval.generate.generate` expects."""
    ids = np.full((len(texts), length), tok.pad_id if tok.pad_id is not None else 0, np.int32)
    mask = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        row = tok.encode(text, add_bos=add_bos)[-length:]
        ids[i, length - len(row) :] = row
        mask[i, length - len(row) :] = 1
    return ids, mask
