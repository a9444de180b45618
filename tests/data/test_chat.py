"""Chat formats as data: ids, loss/video masks, padding and errors."""

import numpy as np
import pytest

from vau_jax.data import chat
from vau_jax.data import pipeline as P
from vau_jax.data import templates as T


class CharTokenizer:
    """Byte-level toy tokenizer: id = byte + 3; 0 pad, 1 bos, 2 eos."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = [b + 3 for b in text.encode()]
        return [self.bos_id] + ids if add_bos else ids


CONV = [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "ok"}]


def test_vicuna_matches_the_pipeline_layout_and_expands_video():
    tok = CharTokenizer()
    legacy = P.TokenizeConversation(tok, 300).tokenize(CONV)
    out = chat.tokenize_chat(tok, CONV, 300, "vicuna_v1")
    for key in ("input_ids", "attention_mask", "loss_mask"):
        np.testing.assert_array_equal(out[key], legacy[key])
    assert not out["video_mask"].any()
    vid = chat.tokenize_chat(tok, CONV, 300, "vicuna_v1", num_video_tokens=6)
    assert vid["video_mask"].sum() == 6
    pos = np.flatnonzero(vid["video_mask"])
    assert (np.diff(pos) == 1).all()  # one contiguous block where <video> was
    assert (vid["input_ids"][pos] == tok.pad_id).all()
    after = vid["input_ids"][pos[-1] + 1 : pos[-1] + 6].tolist()
    assert after == tok.encode("What?")
    # Targets: the answer and EOS only.
    assert vid["input_ids"][vid["loss_mask"]].tolist() == tok.encode("ok") + [2]
    assert vid["attention_mask"].sum() == out["attention_mask"].sum() + 6


def test_chatml_layout_and_generation_prompt():
    tok = CharTokenizer()
    ids, loss, video = chat.chat_ids(tok, CONV, "chatml", num_video_tokens=2)
    text = bytes(i - 3 for i, v in zip(ids, video) if not v).decode()
    sys_text = T.CHAT_FORMATS["chatml"]["system"]
    assert text == (
        f"<|im_start|>system\n{sys_text}<|im_end|>\n<|im_start|>user\nWhat?<|im_end|>\n"
        "<|im_start|>assistant\nok<|im_end|>"
    )
    target = bytes(i - 3 for i, m in zip(ids, loss) if m).decode()
    assert target == "ok<|im_end|>"  # <|im_end|> is SmolLM2's EOS: learned, no extra id
    prompt = chat.tokenize_chat(
        tok, CONV[:1], 200, "chatml", add_generation_prompt=True, left_pad=True
    )
    real = prompt["input_ids"][prompt["attention_mask"]]
    assert bytes((real - 3).astype(np.uint8)).decode().endswith("<|im_start|>assistant\n")
    assert prompt["attention_mask"][-1] and not prompt["attention_mask"][0]  # left-padded
    assert not prompt["loss_mask"].any()


def test_errors_name_the_problem():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="ex7: .* tokens > max_length=10"):
        chat.tokenize_chat(tok, CONV, 10, source="ex7")
    with pytest.raises(ValueError, match="unknown chat format"):
        chat.tokenize_chat(tok, CONV, 300, "alpaca")
    with pytest.raises(ValueError, match="unknown role"):
        chat.chat_ids(tok, [{"from": "system", "value": "x"}])
    with pytest.raises(ValueError, match="ending in a human turn"):
        chat.chat_ids(tok, CONV, add_generation_prompt=True)
