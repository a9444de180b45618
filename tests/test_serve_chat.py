"""The web app's chat keeps each session's LLM KV cache (:mod:`vau_jax.eval.chat_cache`):
the store bounds how many sessions hold one (fast), and the tiny VA-GPT's follow-ups continue
the explanation's cache through the API (slow)."""

import os

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from vau_jax.serve.app import Settings, create_app  # noqa: E402
from vau_jax.serve.sessions import Session, SessionStore  # noqa: E402


class _Chat:
    """Stands for a ChatState: ``cache`` until dropped."""

    def __init__(self):
        self.cache = object()

    def drop(self):
        self.cache = None


def _session(chat=None) -> Session:
    return Session("r", np.zeros((1, 2, 2, 3), np.uint8), 8.0, {}, None, [], chat=chat)


def test_store_keeps_the_caches_of_the_newest_sessions_only():
    store = SessionStore(capacity=4, max_chat_caches=2)
    s = [_session(_Chat()) for _ in range(3)] + [_session(None)]
    for x in s[:3]:
        store.put(x)
    assert store.cached_chats() == 2 and s[0].chat.cache is None  # the oldest lost its cache
    s[0].chat.cache = object()  # its next question rebuilt and restarted one
    store.get(s[0].id)  # ... after the store had made it the newest
    assert s[1].chat.cache is None and s[2].chat.cache is not None and store.cached_chats() == 2
    store.put(s[3])  # a session without a language model counts as one of the newest
    assert s[2].chat.cache is None and s[0].chat.cache is not None and store.cached_chats() == 1
    busy = _session(_Chat())
    store = SessionStore(capacity=4, max_chat_caches=0)
    with busy.lock:  # answering a question now: its cache stays until the next call
        store.put(busy)
        assert busy.chat.cache is not None
    store.get(busy.id)
    assert busy.chat.cache is None
    with pytest.raises(ValueError, match="max_chat_caches"):
        SessionStore(2, -1)


@pytest.mark.slow
def test_served_follow_ups_continue_the_explanation_cache(vagpt_run, tmp_path, monkeypatch):
    from tests.test_serve import _explain, _synth_mp4

    video = _synth_mp4(vagpt_run, str(tmp_path / "synth.mp4"))
    app = create_app([vagpt_run], Settings(upload_dir=str(tmp_path / "up"), max_chat_caches=1))
    with TestClient(app) as client:
        got = _explain(client, "vagpt", video)
        session = app.state.sessions.get(got["session"])
        chat = session.chat
        assert chat is not None and chat.path == "opening" and chat.conv == session.turns
        assert app.state.pool.get("vagpt").restored().method.last_chat is None  # handed over

        def refuse(*a, **k):
            raise AssertionError("a follow-up encoded the video")

        with monkeypatch.context() as patch:
            patch.setattr("vau_jax.methods.vagpt.predict.encode_video", refuse)
            for question in ("What happened in this video?", "Where is it?"):
                r = client.post("/api/chat", json={"session": got["session"], "message": question})
                assert r.status_code == 200, r.text
                assert chat.path == "cache" and chat.prefilled < 40 < len(chat.ids), chat.reason
        assert session.chat is chat and chat.n_turns == len(session.turns) == 6
        # A newer session takes the only cache slot: the first one's next question rebuilds.
        other = app.state.sessions.get(_explain(client, "vagpt", video)["session"]).chat
        assert chat.cache is None and other.cache is not None
        r = client.post("/api/chat", json={"session": got["session"], "message": "And then?"})
        assert r.status_code == 200 and chat.path == "rebuild" and chat.cache is not None
        assert other.cache is None and app.state.sessions.cached_chats() == 1
    assert not os.listdir(tmp_path / "up")
