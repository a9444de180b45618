"""Follow-ups that continue the LLM's KV cache (:mod:`vau_jax.eval.chat_cache`): the same
answer as a full recompute, only the new tokens prefilled, nothing visual run again, one
compilation per length bucket, the rebuild when the cache is full; then the tiny VA-GPT run
(slow)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from tests.compiles import xla_compiles
from vau_jax.data.chat import chat_ids
from vau_jax.eval import chat_cache as C
from vau_jax.eval import generate as G
from vau_jax.eval.scoring import Scorer
from vau_jax.inference import followup_chat, followup_row
from vau_jax.methods.pretrain.vlm_parts import chat_row, encode_query
from vau_jax.models import registry
from vau_jax.models.llama import LlamaForCausalLM
from vau_jax.models.vlm import VideoLLM, VLMConfig

FRAMES, PATCHES, WIDTH = 3, 5, 16
VIDEO_TOKENS = 2 * FRAMES
OPENING = "What happens in this video?"
MAX_NEW = 8


class _CharTok:
    """One id per ASCII character (id = code + 3; 0 pad, 1 bos, 2 eos): text round-trips."""

    pad_id, bos_id, eos_id, vocab_size = 0, 1, 2, 131

    def encode(self, text: str) -> list[int]:
        return [3 + ord(ch) for ch in text if ord(ch) < 128]

    def decode(self, ids) -> str:
        return "".join(chr(int(i) - 3) for i in ids if 3 <= int(i) < self.vocab_size)


def _config(fmt: str = "vicuna_v1") -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(chat_format=fmt, system_prompt="Be brief.", max_query_length=8, max_length=96)
    )


@pytest.fixture(scope="module")
def vlm():
    """A tiny random video LLM, its scorer and one video's visual tokens."""
    llm_cfg = dataclasses.replace(
        registry.get_config("tiny-llama"),
        vocab_size=131,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        head_dim=16,
        max_position_embeddings=512,
    )
    q = dataclasses.replace(
        registry.get_config("tiny-qformer"),
        encoder_hidden_size=WIDTH,
        vocab_size=131,
        hidden_dropout_prob=0.0,
    )
    model = VideoLLM(VLMConfig(llm=llm_cfg, qformer=q, vision_width=WIDTH))
    rng = np.random.default_rng(0)
    visual = rng.normal(size=(1, FRAMES, PATCHES, WIDTH)).astype(np.float32)
    ids = jnp.zeros((1, 12), jnp.int32)
    video = jnp.zeros((1, 12), bool).at[:, 2:8].set(True)
    init = jax.jit(model.init)
    params = nn.unbox(
        init(jax.random.key(0), ids, jnp.ones((1, 12), bool), video, visual, ids[:, :4])["params"]
    )
    # Sharper than the 0.02 init, so greedy answers vary and rarely tie.
    params["llm"] = jax.tree.map(lambda x: x * 3.0 if x.ndim == 2 else x, params["llm"])
    params = jax.device_put(params, jax.local_devices()[0])  # as vau_jax.load_run puts them

    def prefix(p, b):
        return model.apply(
            {"params": p},
            b["input_ids"],
            b["video_mask"],
            b["visual"],
            b["query_ids"],
            b["query_mask"],
            method=VideoLLM.prefix_embeds,
        )

    def attach(b):
        return {**b, "visual": np.repeat(visual, len(b["video"]), 0)}

    llm = LlamaForCausalLM(llm_cfg)
    return model, params, llm, Scorer(lambda p, b: None, prefix), attach, visual, prefix


def _open(vlm, config, max_length: int = 256):
    """The opening exchange (the prediction's answer) and its chat state."""
    model, params, llm, scorer, attach, _, _ = vlm
    tok = _CharTok()
    human = f"<video>\n{OPENING}"
    row = chat_row(tok, config, human, OPENING, None, 0, VIDEO_TOKENS, "open", max_length)
    texts, gen = scorer.generate_cached(params, llm, [row], tok, attach, MAX_NEW)
    assert texts == scorer.generate(params, llm, [row], tok, attach, MAX_NEW)  # unchanged
    conv = [{"from": "human", "value": human}, {"from": "gpt", "value": texts[0]}]
    return tok, C.start(gen, 0, conv, 2, OPENING, C.capacity(max_length)), list(conv)


def _ask(vlm, config, state, turns, question, max_length: int = 256, tok=None) -> str:
    _, params, llm, scorer, attach, _, _ = vlm
    answer = followup_chat(
        state,
        scorer,
        params,
        llm,
        tok or _CharTok(),
        config,
        turns,
        question,
        VIDEO_TOKENS,
        max_length,
        attach,
        max_new_tokens=MAX_NEW,
    )
    turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return answer


def _recompute(vlm, ids: list[int], video: list[bool], length: int = 256, eos_id: int = 2):
    """Greedy tokens and first-token logits of the whole prompt ``ids`` run from scratch
    (left-padded to ``length``: one compilation), its video tokens made with the opening
    question as the Q-Former's instruction."""
    _, params, llm, _, _, visual, prefix = vlm
    q_ids, q_mask = encode_query(_CharTok(), OPENING, 8)
    pad = length - len(ids)
    b = {
        "input_ids": np.asarray([[0] * pad + ids], np.int32),
        "attention_mask": np.asarray([[False] * pad + [True] * len(ids)]),
        "video_mask": np.asarray([[False] * pad + video], bool),
        "visual": visual,
        "query_ids": q_ids[None],
        "query_mask": q_mask[None],
    }
    emb = jax.jit(prefix)(params, b)
    logits = _last_logits(llm, params["llm"], emb, b["attention_mask"])
    toks, lengths = G.generate(
        llm,
        params["llm"],
        inputs_embeds=emb,
        attention_mask=b["attention_mask"],
        max_new_tokens=MAX_NEW,
        eos_id=eos_id,
        pad_id=0,
    )
    return np.asarray(toks[0, : int(lengths[0])]).tolist(), np.asarray(logits)


@functools.partial(jax.jit, static_argnums=0)
def _last_logits(llm, params, emb, mask):
    return llm.apply({"params": params}, inputs_embeds=emb, attention_mask=mask)["logits"][0, -1]


# ------------------------------------------------------------------------------ token ids


@pytest.mark.parametrize("fmt", ["vicuna_v1", "chatml"])
@pytest.mark.parametrize("ended", [True, False])
def test_new_tokens_equal_the_template_when_the_answer_round_trips(fmt, ended):
    """Appending by ids gives the chat template's own rendering of the conversation when the
    answer's text re-tokenises to the generated ids (with or without a generated eos)."""
    tok, config = _CharTok(), _config(fmt)
    opening = [{"from": "human", "value": f"<video>\n{OPENING}"}]
    prompt, _, video = chat_ids(
        tok, opening, fmt, num_video_tokens=6, add_generation_prompt=True, system="Be brief."
    )
    text = "A man runs."
    generated = tok.encode(text) + ([tok.eos_id] if ended else [])
    state = C.ChatState(
        cache=None,
        ids=prompt + generated[:-1],
        video=video + [False] * (len(generated) - 1),
        template=prompt,
        conv=[*opening, {"from": "gpt", "value": text}],
        answer=generated,
        n_turns=2,
        slots=0,
        capacity=0,
        query=OPENING,
    )
    new, full = C.new_tokens(state, tok, config, 6, "Why?")
    whole = [*state.conv, {"from": "human", "value": "Why?"}]
    want = chat_ids(
        tok, whole, fmt, num_video_tokens=6, add_generation_prompt=True, system="Be brief."
    )[0]
    assert full == want
    assert state.ids + new == want  # an answer cut by max_new_tokens still gets its end
    # The generated answer goes in by ids even when its text would not re-tokenise to them.
    state.answer = [tok.bos_id, *generated]  # decodes to the same text
    state.ids = prompt + state.answer[:-1]
    new, _ = C.new_tokens(state, tok, config, 6, "Why?")
    assert state.ids + new != want and (state.ids + new)[len(prompt)] == tok.bos_id


def test_a_template_that_does_not_append_is_refused():
    tok, config = _CharTok(), _config()
    state = C.ChatState(
        cache=None,
        ids=[1, 5, 6],
        video=[False] * 3,
        template=[1, 5, 6, 7],  # not what the template renders
        conv=[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
        answer=[9],
        n_turns=2,
        slots=3,
        capacity=64,
        query="hi",
    )
    assert C.new_tokens(state, tok, config, 0, "Why?") is None
    assert "does not append" in state.reason


def test_vadllama_still_cannot_chat():
    from vau_jax.inference import ChatUnavailableError, Run

    run = Run("runs/v", ml_collections.ConfigDict({"method": "vadllama"}), None, None, 0, "")
    with pytest.raises(ChatUnavailableError, match="no language model"):
        run.ask(None, [], "What happened?", chat=None)


# ------------------------------------------------------------------------------ tiny model


@pytest.mark.slow
def test_cached_follow_up_equals_a_full_recompute(vlm):
    """The cached turns' greedy tokens are a full recompute's (same video tokens: the opening
    question's); the first-token logits agree to float32 error (measured max |diff| 4.8e-7
    over the two turns, on logits of std 0.5; bound 2e-6)."""
    config = _config()
    tok, state, turns = _open(vlm, config)
    worst = 0.0
    for q in ("Who is there?", "Why does it matter here?"):
        ids, video = list(state.ids), list(state.video)
        new, _ = C.new_tokens(state, tok, config, VIDEO_TOKENS, q)
        _ask(vlm, config, state, turns, q)
        assert state.path == "cache", state.reason
        want_tokens, want_logits = _recompute(vlm, ids + new, video + [False] * len(new))
        assert state.answer == want_tokens
        got = np.asarray(state.first_logits)
        worst = max(worst, float(np.max(np.abs(got - want_logits))))
        assert turns[-1]["value"] == tok.decode(t for t in want_tokens if t != 2).strip()
    assert worst < 2e-6, worst


@pytest.mark.slow
def test_a_row_of_a_batched_opening_that_ended_first(vlm):
    """T-VAU opens with a batch of questions: the chat continues row 0, which ended (on eos)
    while row 1 kept decoding, so its cache's later slots are pad tokens to hand back. The
    follow-ups still equal a full recompute, and the second compiles nothing."""
    config = _config()
    _, params, llm, scorer, attach, _, _ = vlm
    human = f"<video>\n{OPENING}"
    rows = [
        chat_row(_CharTok(), config, human, OPENING, None, 0, VIDEO_TOKENS, "open", 256),
        chat_row(_CharTok(), config, "<video>\nList 3 colours!", "List", None, 0, 6, "b", 256),
    ]
    first = scorer.generate_cached(params, llm, rows, _CharTok(), attach, MAX_NEW)[1]["tokens"]
    j = next(j for j, t in enumerate(first[0]) if t not in first[1])
    tok = _CharTok()
    tok.eos_id = int(first[0, j])  # row 0 now ends after j + 1 tokens, row 1 decodes on
    texts, gen = scorer.generate_cached(params, llm, rows, tok, attach, MAX_NEW)
    assert list(gen["lengths"]) == [j + 1, MAX_NEW] and j + 1 < MAX_NEW, first
    conv = [{"from": "human", "value": human}, {"from": "gpt", "value": texts[0]}]
    state, turns = C.start(gen, 0, conv, 2, OPENING, C.capacity(256)), list(conv)
    assert state.slots == gen["input_ids"].shape[1] + j and int(state.cache["index"]) == state.slots
    for k, q in enumerate(("Who is there, then?", "Who was here, then?")):  # one bucket
        ids, video = list(state.ids), list(state.video)
        new, _ = C.new_tokens(state, tok, config, VIDEO_TOKENS, q)
        with xla_compiles() as compiles:
            _ask(vlm, config, state, turns, q, tok=tok)
        assert state.path == "cache" and (k == 0 or compiles == []), (state.reason, compiles)
        want, logits = _recompute(vlm, ids + new, video + [False] * len(new), eos_id=tok.eos_id)
        assert state.answer == want
        np.testing.assert_allclose(np.asarray(state.first_logits), logits, atol=2e-6)


def test_a_follow_up_prefills_only_its_new_tokens_and_runs_nothing_visual(vlm, monkeypatch):
    config = _config()
    tok, state, turns = _open(vlm, config)
    first = "Who is there?"
    rebuilt = followup_row(tok, config, turns, first, VIDEO_TOKENS, 256)["attention_mask"].sum()

    def visual(*a, **k):
        raise AssertionError("a cached follow-up ran the vision side")

    _, _, _, scorer, _, _, _ = vlm
    monkeypatch.setattr(scorer, "prefix_embeds", visual)
    monkeypatch.setattr(VideoLLM, "visual_embeds", visual)
    monkeypatch.setattr("vau_jax.models.qformer.QFormer.__call__", visual)
    for q in (first, "Where?"):
        new, _ = C.new_tokens(state, tok, config, VIDEO_TOKENS, q)
        # The rest of the last answer (its last token, unless that was eos), the end of its
        # turn, the question's turn and the generation prompt: nothing before them.
        pending = int(state.answer[-1] != tok.eos_id)
        assert len(new) == pending + 1 + len(tok.encode(f" USER: {q} ASSISTANT: "))
        before = state.slots
        _ask(vlm, config, state, turns, q)
        assert state.path == "cache" and state.prefilled == len(new)
        assert state.slots == before + len(new) + len(state.answer) - 1
        assert int(state.cache["index"]) == state.slots and len(state.ids) <= state.slots
    assert state.prefilled < 30 < int(rebuilt) < len(state.ids)


def test_follow_ups_of_one_length_bucket_compile_once(vlm):
    config = _config()
    tok, state, turns = _open(vlm, config)
    _ask(vlm, config, state, turns, "Warm up?")  # grows the cache, compiles its bucket
    key = (48, state.capacity, MAX_NEW)
    traced = G.EXTEND_TRACES[key]
    widths = []
    for k, q in enumerate(("Who runs here?", "Who runs there now?", "Who runs where and why?")):
        widths.append(-(-len(C.new_tokens(state, tok, config, VIDEO_TOKENS, q)[0]) // 16) * 16)
        with xla_compiles() as compiles:
            _ask(vlm, config, state, turns, q)
        assert state.path == "cache"
        if k:
            assert compiles == [], k
    assert widths == [48, 48, 48]
    assert G.EXTEND_TRACES[key] - traced <= 1


@pytest.mark.slow
def test_a_full_cache_falls_back_to_the_rebuilt_prompt(vlm):
    """160-token chats (224 cache slots): two follow-ups fit, the third rebuilds its prompt
    (the oldest exchanges dropped to fit 80 tokens) and restarts the cache, which the fourth
    continues; a dropped cache rebuilds too."""
    config = _config()
    tok, state, turns = _open(vlm, config, 160)
    paths, prefilled = [], []
    for k in range(4):
        answer = _ask(vlm, config, state, turns, f"Question number {k}, and why?", 160)
        assert isinstance(answer, str) and state.n_turns == len(turns)
        assert state.slots <= state.capacity == 224 and int(state.cache["index"]) == state.slots
        paths.append(state.path)
        prefilled.append(state.prefilled)
    assert paths == ["cache", "cache", "rebuild", "cache"], paths
    assert state.conv[0]["value"].startswith("<video>\nQuestion number 2")  # rebuilt from there
    assert state.query == "Question number 2, and why?"  # its video tokens follow that question
    assert prefilled[2] > 50 and prefilled[3] < 50, prefilled
    state.drop()
    _ask(vlm, config, state, turns, "And now?", 160)
    assert state.path == "rebuild" and "dropped" in state.reason
    _ask(vlm, config, state, turns, "Then?", 160)
    assert state.path == "cache"


# ------------------------------------------------------------------------------ tiny runs


def _synth_frames(config) -> tuple[np.ndarray, float]:
    """An anomalous SynthVAD test video of the run's config: uint8 frames and their rate."""
    from vau_jax.data import synthvad

    synth = synthvad.SynthConfig(**dict(config.synthvad))
    for i in range(int(config.num_test_videos)):
        v = synthvad.render_split_video("test", i, synth)
        if v.anomaly_type != synthvad.NORMAL:
            return np.asarray(v.frames), float(v.fps)
    raise AssertionError("no anomalous test video")


def _no_vision(monkeypatch, scorer) -> None:
    """Encoding a frame, running the Q-Former or embedding a prompt's video now fails."""

    def refuse(*a, **k):
        raise AssertionError("a cached follow-up encoded the video or ran the Q-Former")

    for name in ("vagpt", "tvau"):
        monkeypatch.setattr(f"vau_jax.methods.{name}.predict.encode_video", refuse)
    monkeypatch.setattr("vau_jax.models.qformer.QFormer.__call__", refuse)
    monkeypatch.setattr(scorer, "prefix_embeds", refuse)


@pytest.mark.slow
def test_tiny_vagpt_run_follow_ups_continue_the_explanation_cache(vagpt_run, monkeypatch):
    """The trained tiny VA-GPT: follow-ups prefill their own tokens only, encode nothing, and
    give a full recompute's tokens (video tokens SETS-selected, the explanation's question
    as the Q-Former's instruction); first-token logits within float32 error (measured 2.4e-7
    on logits of std 0.31; bound 1e-6)."""
    import vau_jax

    run = vau_jax.load_run(vagpt_run)
    m = run.method
    frames, fps = _synth_frames(run.config)
    timeline, _ = run.predict(frames, fps)
    chat, feats, turns = m.last_chat, m.last_prediction, run.opening_turns(timeline)
    assert chat.path == "opening" and chat.query == timeline["question"]
    assert chat.conv == turns and chat.capacity == C.capacity(1024) == 1088
    keep = timeline["sets_keep_ratio"]
    scorer = m.scorer(keep)
    with monkeypatch.context() as patch:
        _no_vision(patch, scorer)
        for q in ("What happened in this video?", "Where is it?"):
            ids, video = list(chat.ids), list(chat.video)
            new, _ = C.new_tokens(chat, m.tok, run.config, m.num_video_tokens, q)
            rebuilt = followup_row(m.tok, run.config, turns, q, m.num_video_tokens, 1024)
            answer = run.ask(feats, turns, q, 32, timeline, chat=chat)
            turns += [{"from": "human", "value": q}, {"from": "gpt", "value": answer}]
            assert chat.path == "cache" and chat.prefilled == len(new) < 40, chat.reason
            assert int(rebuilt["attention_mask"].sum()) > 3 * chat.prefilled
    q_ids, q_mask = encode_query(m.query_tok or m.tok, chat.query, int(run.config.max_query_length))
    b = {
        "input_ids": np.asarray([ids + new], np.int32),
        "attention_mask": np.ones((1, len(ids + new)), bool),
        "video_mask": np.asarray([video + [False] * len(new)]),
        "query_ids": q_ids[None],
        "query_mask": q_mask[None],
        "visual": feats["visual"][None],
        "dino": feats["dino"][None],
    }
    emb = scorer.prefix_embeds(run.params, b)
    llm = LlamaForCausalLM(m.llm_cfg)
    toks, lengths = G.generate(
        llm, run.params["llm"], inputs_embeds=emb, max_new_tokens=32, eos_id=m.tok.eos_id
    )
    assert np.asarray(toks[0, : int(lengths[0])]).tolist() == chat.answer
    want = _last_logits(llm, run.params["llm"], emb, b["attention_mask"])
    np.testing.assert_allclose(np.asarray(chat.first_logits), np.asarray(want), atol=1e-6)


@pytest.mark.slow
def test_tiny_tvau_run_follow_ups_continue_the_yes_no_cache(tvau_run, monkeypatch):
    import vau_jax

    run = vau_jax.load_run(tvau_run)
    m = run.method
    frames, fps = _synth_frames(run.config)
    timeline, _ = run.predict(frames, fps)
    chat, last, turns = m.last_chat, m.last_prediction, run.opening_turns(timeline)
    assert chat.conv == turns and chat.query == "Is there an anomaly in this video?"
    from vau_jax.methods.tvau.evaluation import scorer

    with monkeypatch.context() as patch:
        _no_vision(patch, scorer(m))
        for k, q in enumerate(("What moves?", "Where does it go?")):  # one length bucket
            new, _ = C.new_tokens(chat, m.tok, run.config, m.num_video_tokens, q)
            with xla_compiles() as compiles:
                answer = run.ask(last, turns, q, 24, chat=chat)
            turns += [{"from": "human", "value": q}, {"from": "gpt", "value": answer}]
            assert chat.path == "cache" and chat.prefilled == len(new), chat.reason
            assert k == 0 or compiles == [], compiles
