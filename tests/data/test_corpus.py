"""The SynthVAD text corpus: every caption template, then each train video's sentences, the
same list whether the videos render in this process or in a spawn pool."""

from vau_jax.data import synthvad
from vau_jax.data.corpus import synthvad_corpus
from vau_jax.data.synthvad import text as synth_text

TINY = synthvad.SynthConfig(min_seconds=1.0, max_seconds=2.5)


def test_pooled_corpus_equals_the_in_process_corpus():
    alone = synthvad_corpus(3, TINY, workers=1)
    pooled = synthvad_corpus(3, TINY, workers=2)
    assert pooled == alone
    templates = sum(
        len(synthvad.SPATIAL_WORDS) if "{where}" in c else 1
        for c in synth_text.FRAME_CAPTIONS.values()
    )
    # after the templates come video 0's scene and event descriptions, in that order
    v0 = synthvad.render_split_video("train", 0, TINY)
    assert alone[templates : templates + 2] == [v0.scene_description, v0.event_description]
    v2 = synthvad.render_split_video("train", 2, TINY)
    assert v2.event_description in alone[templates + 2 :]
    assert len(alone) > templates + 6


def test_letters_tokenizer_writes_an_answers_letter_as_its_option_lines_token(tmp_path):
    """With "synthvad" the answer " A." starts with the article's token, which no option line
    holds; with "synthvad_letters" every letter is one token in the prompt and the answer."""
    import pytest

    from vau_jax.data import corpus

    prompt = "Which?\nA. A person falling\nB. People walking"
    plain = corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="synthvad")
    letters = corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="synthvad_letters")
    assert (tmp_path / "tokenizer_synthvad_512.model").is_file()
    assert (tmp_path / "tokenizer_synthvad_letters_512.model").is_file()

    def pieces(tok, text):
        return [tok.sp.id_to_piece(i) for i in tok.encode(text)]

    for name, tok in (("plain", plain), ("letters", letters)):
        in_prompt = pieces(tok, prompt)
        assert "A" in in_prompt and "B" in in_prompt, (name, in_prompt)

    def answer(tok, letter):  # the pieces an answer "X." writes after the chat marker
        p = pieces(tok, f"ASSISTANT: {letter}.")
        return p[p.index("ASSISTANT:") + 1 :]

    assert answer(plain, "A") == ["▁A", "."]  # the article's token: no option line holds it
    assert answer(plain, "B") == ["▁", "B", "."]
    for letter in "ABCD":
        assert answer(letters, letter) == ["▁", letter, "."]
    assert pieces(letters, prompt).count("A") == 2  # the option letter and the article
    assert letters.decode(letters.encode(prompt)) == prompt
    with pytest.raises(ValueError, match="tokenizer 'bpe'"):
        corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="bpe")


def test_times_tokenizer_writes_each_time_as_one_token(tmp_path):
    """With "synthvad_times" a time as answers and options write it ("4.9s") is one token,
    the same in the prior sentence, in an option line and in an answer; with "synthvad" it
    is five pieces ("▁", "4", ".", "9", "s")."""
    from vau_jax.data import corpus
    from vau_jax.data.instruct import format_interval

    plain = corpus.ensure_tokenizer(str(tmp_path), 512, num_videos=3, name="synthvad")
    times = corpus.ensure_tokenizer(str(tmp_path), 712, num_videos=3, name="synthvad_times")

    def pieces(tok, text):
        return [tok.sp.id_to_piece(i) for i in tok.encode(text)]

    line = f"B. A fire {format_interval((4.9, 12.3))}"
    assert "▁4.9s" in pieces(times, line) and "▁12.3s" in pieces(times, line)
    assert "▁4.9s" not in pieces(plain, line) and "9" in pieces(plain, line)
    assert len(pieces(times, line)) < len(pieces(plain, line)) - 4
    for t in (0.0, 6.5, 16.0, 20.0):
        text = f"ASSISTANT: C. A fire {format_interval((t, t))}."
        assert pieces(times, text).count(f"▁{t:.1f}s") == 2, pieces(times, text)
        assert times.decode(times.encode(text)) == text
    assert len(corpus.TIME_TOKENS) == 201 and corpus.TIME_TOKENS[49] == "▁4.9s"
