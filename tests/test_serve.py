"""``python -m vau_jax.serve``: CLI errors, upload checks and the page's files (fast, fake run
folders), then the JSON API on the tiny VA-GPT, VAD-LLaMA and T-VAU runs (slow)."""

import io
import json
import os
import re
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from vau_jax import explain as E  # noqa: E402
from vau_jax.serve import __main__ as M  # noqa: E402
from vau_jax.serve.app import STATIC, Settings, create_app  # noqa: E402
from vau_jax.serve.sessions import Session, SessionStore  # noqa: E402
from vau_jax.serve.work import sprite_sheet  # noqa: E402


def _fake_run(root, name: str = "fake", method: str = "vagpt", step: bool = True, **cfg) -> str:
    d = root / name
    (d / "checkpoints").mkdir(parents=True)
    if step:
        (d / "checkpoints" / "3").mkdir()
    (d / "config.json").write_text(json.dumps({"method": method, "preset": "tiny", **cfg}))
    return str(d)


def _cli(argv, capsys) -> tuple[int, list[str]]:
    try:
        code = M.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


# ------------------------------------------------------------------------------ fast


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    ok = _fake_run(tmp_path)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cases = [
        ([], "--workdir"),
        (["--workdir", str(tmp_path / "none")], "no such run folder"),
        (["--workdir", str(tmp_path)], "config.json"),
        (["--workdir", _fake_run(tmp_path, "clip", "clip_pretrain")], "clip_pretrain"),
        (["--workdir", _fake_run(tmp_path, "nockpt", step=False)], "no checkpoint"),
        (["--workdir", _fake_run(tmp_path, "nodata", data_dir=str(tmp_path / "x"))], "data_dir"),
        (["--workdir", ok, "--port", "http"], "--port=http: not an integer"),
        (["--workdir", ok, "--port", "70000"], "not a port number"),
        (["--workdir", ok, "--port", str(port)], "cannot listen"),
        (["--workdir", ok, "--max_upload_mb", "-1"], "must be positive"),
        (["--workdir", ok, "--workdir", ok], "twice"),
    ]
    try:
        for argv, needle in cases:
            code, err = _cli(argv, capsys)
            assert code == 2, argv
            assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (argv, err)
    finally:
        busy.close()


def test_page_is_offline():
    """Every static file is local: no CDN script, font or style (only the SVG namespace)."""
    names = sorted(os.listdir(STATIC))
    assert {"index.html", "app.js", "app.css", "player.js", "timeline.js"} <= set(names)
    for name in names:
        text = open(os.path.join(STATIC, name), encoding="utf-8").read()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text)) - {"http://www.w3.org"}
        assert not urls, (name, urls)
        assert "@import" not in text and "googleapis" not in text


def test_uploads_are_checked_before_any_model_loads(tmp_path):
    up = tmp_path / "uploads"
    runs = [_fake_run(tmp_path, "a"), _fake_run(tmp_path, "b", "vadllama")]
    app = create_app(runs, Settings(max_upload_mb=0.01, upload_dir=str(up)))
    with TestClient(app) as c:
        assert c.get("/api/runs").json() == {
            "runs": [
                {"name": "a", "method": "vagpt", "workdir": runs[0]},
                {"name": "b", "method": "vadllama", "workdir": runs[1]},
            ]
        }
        page = c.get("/")
        assert page.status_code == 200 and 'id="timeline"' in page.text
        assert c.get("/static/app.js").status_code == 200
        r = c.post("/api/explain", data={"run": "a"}, files={"video": ("notes.txt", b"hi\n")})
        assert r.status_code == 415 and r.json()["detail"].startswith("notes.txt: ")
        assert str(up) not in r.json()["detail"]
        r = c.post("/api/jobs", data={"run": "a"}, files={"video": ("v.mp4", os.urandom(50_000))})
        assert r.status_code == 413 and "--max_upload_mb" in r.json()["detail"]
        r = c.post("/api/explain", data={"run": "a"}, files={"video": ("v.mp4", bytes(2 << 20))})
        assert r.status_code == 413  # refused on its Content-Length, before the body is read
        assert c.post("/api/explain", data={"run": "zz", "example": "vtest"}).status_code == 404
        assert c.post("/api/explain", data={"run": "a"}).status_code == 400
        r = c.post("/api/explain", data={"run": "a", "example": "x", "max_seconds": "abc"})
        assert r.status_code == 400 and "max_seconds" in r.json()["detail"]
        assert c.post("/api/chat", json={"session": "nope", "message": "hi"}).status_code == 404
        assert c.post("/api/chat", content=b"{").status_code == 400
        assert c.get("/api/jobs/nope").status_code == 404
    assert os.listdir(up) == []


def test_session_store_drops_the_least_recently_used():
    store = SessionStore(2)
    s = [Session("r", np.zeros((1, 2, 2, 3), np.uint8), 8.0, {}, None, []) for _ in range(3)]
    store.put(s[0])
    store.put(s[1])
    assert store.get(s[0].id) is s[0]  # now newer than s[1]
    store.put(s[2])
    assert store.get(s[1].id) is None and store.get(s[0].id) is s[0] and len(store) == 2


def test_sprite_sheet_lays_frames_row_by_row():
    from PIL import Image

    frames = np.zeros((5, 4, 6, 3), np.uint8)
    frames[4] = 255  # frame 4: row 1, column 1 (3 columns)
    jpeg, cols, fw, fh = sprite_sheet(frames, quality=95)
    img = np.asarray(Image.open(io.BytesIO(jpeg)))
    assert (cols, fw, fh) == (3, 6, 4) and img.shape == (8, 18, 3)
    assert img[4:8, 6:12].mean() > 200 and img[0:4, 0:6].mean() < 50


class _CharTok:
    """One id per character (pad 0, bos 1, eos 2)."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return [3 + ord(ch) % 250 for ch in text]


def test_followup_row_keeps_the_video_and_drops_the_oldest_follow_ups():
    import ml_collections

    from vau_jax.data.chat import TooLongError
    from vau_jax.inference import followup_row

    tok = _CharTok()
    cfg = ml_collections.ConfigDict(
        {"chat_format": "vicuna_v1", "system_prompt": "", "max_query_length": 6}
    )
    turns = [
        {"from": "human", "value": "<video>\nWhich option?"},
        {"from": "gpt", "value": "H"},
        {"from": "human", "value": "first follow-up " * 4},
        {"from": "gpt", "value": "answer one"},
        {"from": "human", "value": "second"},
        {"from": "gpt", "value": "two"},
    ]

    def row(max_length: int, question: str = "Why <video>?", conv=turns) -> dict:
        return followup_row(tok, cfg, conv, question, 5, max_length)

    full = row(400)
    assert full["video_mask"].sum() == 5  # one video, in the first turn; the question's is cut
    assert full["attention_mask"][-1] and not full["attention_mask"][0]  # left-padded
    assert list(full["query_ids"]) == tok.encode("Why ?")[:5] + [0]  # the question, cut to 6
    n = int(full["attention_mask"].sum())
    shorter = row(n - 1)  # the oldest follow-up exchange goes first, the opening one stays
    np.testing.assert_array_equal(
        shorter["input_ids"], row(n - 1, conv=turns[:2] + turns[4:])["input_ids"]
    )
    alone = row(40)  # only the question (with the video) is left
    np.testing.assert_array_equal(alone["input_ids"], row(40, conv=[])["input_ids"])
    assert alone["video_mask"].sum() == 5
    with pytest.raises(TooLongError):
        row(10)


# ------------------------------------------------------------------------------ tiny runs


def _synth_mp4(run_dir: str, path: str) -> str:
    """An anomalous SynthVAD test video of the run's config, as an mp4."""
    import ml_collections

    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.writers import write_mp4

    c = ml_collections.ConfigDict(json.load(open(os.path.join(run_dir, "config.json"))))
    synth = synthvad.SynthConfig(**dict(c.synthvad))
    i = next(
        i for i in range(int(c.num_test_videos)) if synthvad.anomaly_type_at(i, synth) != "normal"
    )
    v = synthvad.render_split_video("test", i, synth)
    write_mp4(path, v.frames, v.fps)
    return path


@pytest.fixture(scope="module")
def served(vagpt_run, vadllama_run, tmp_path_factory):
    up = tmp_path_factory.mktemp("uploads")
    app = create_app([vagpt_run, vadllama_run], Settings(upload_dir=str(up), vtest=None))
    video = _synth_mp4(vagpt_run, str(tmp_path_factory.mktemp("videos") / "synth.mp4"))
    with TestClient(app) as client:
        yield client, app, str(up), video


def _explain(client, run: str, video: str, **fields) -> dict:
    with open(video, "rb") as f:
        files = {"video": (os.path.basename(video), f.read(), "video/mp4")}
    r = client.post("/api/explain", data={"run": run, **fields}, files=files)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_explain_and_chat_vagpt(served, vagpt_run, tmp_path, monkeypatch):
    client, app, up, video = served
    got = _explain(client, "vagpt", video)
    loaded = app.state.pool.get("vagpt").restored()
    ref = E.run(vagpt_run, video, str(tmp_path / "out"), loaded=loaded)
    assert set(got) - {"session", "view"} == set(ref) - {"paths"}  # the timeline.json record
    assert got["video"] == "synth.mp4" and got["run"] == ref["run"]
    np.testing.assert_allclose(got["frame_probs"], ref["frame_probs"], atol=1e-6)
    assert [o["text"] for o in got["options"]] == [o["text"] for o in ref["options"]]
    view = got["view"]
    assert view["chat"] and view["sheet"]["n"] == got["n_frames"] and view["fps"] == got["fps"]
    sets = view["sets"]
    assert len(sets["masks"]) == len(sets["times_s"]) == len(got["sampled_frames_s"])
    kept = np.asarray(sets["masks"]).reshape(len(sets["times_s"]), -1).mean(1)
    np.testing.assert_allclose(kept, got["sets_keep_ratio"], atol=1 / sets["grid"] ** 2)
    jpg = client.get(view["frames_url"])
    assert jpg.status_code == 200 and jpg.headers["content-type"] == "image/jpeg"
    assert os.listdir(up) == []  # the upload is gone

    # Follow-ups reuse the session's frozen-encoder features: nothing is decoded or encoded.
    session = app.state.sessions.get(got["session"])
    context = session.context

    def no_encoding(*a, **k):
        raise AssertionError("a follow-up encoded the video again")

    monkeypatch.setattr("vau_jax.methods.vagpt.predict.video_features", no_encoding)
    monkeypatch.setattr("vau_jax.explain.decode", no_encoding)
    for question in ("What happened in this video?", "Where is it?"):
        r = client.post("/api/chat", json={"session": got["session"], "message": question})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"answer"} and isinstance(r.json()["answer"], str)
    assert session.context is context and len(session.turns) == 2 + 4
    assert session.turns[2] == {"from": "human", "value": "What happened in this video?"}
    r = client.post("/api/chat", json={"session": got["session"], "message": "   "})
    assert r.status_code == 400


@pytest.mark.slow
def test_vadllama_has_no_chat(served):
    client, _, up, video = served
    got = _explain(client, "vadllama", video)
    assert got["method"] == "vadllama" and "clip_scores" in got and not got["view"]["chat"]
    r = client.post("/api/chat", json={"session": got["session"], "message": "What happened?"})
    assert r.status_code == 409 and "no language model" in r.json()["detail"]
    assert os.listdir(up) == []


@pytest.mark.slow
def test_two_uploads_at_once_both_finish(served):
    client, _, up, video = served
    jobs: dict[str, str] = {}

    def start(run: str) -> None:
        with open(video, "rb") as f:
            files = {"video": ("v.mp4", f.read(), "video/mp4")}
        r = client.post("/api/jobs", data={"run": run, "max_seconds": "2"}, files=files)
        assert r.status_code == 202, r.text
        jobs[run] = r.json()["job"]

    threads = [threading.Thread(target=start, args=(run,)) for run in ("vagpt", "vadllama")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(jobs) == {"vagpt", "vadllama"}
    t0 = time.monotonic()
    assert client.get("/api/runs").status_code == 200  # the event loop is not blocked
    assert time.monotonic() - t0 < 5.0
    done: dict[str, dict] = {}
    deadline = time.monotonic() + 300
    while len(done) < 2 and time.monotonic() < deadline:
        for run, jid in jobs.items():
            s = client.get(f"/api/jobs/{jid}").json()
            assert s["state"] != "error", s
            if s["state"] == "done":
                done[run] = s["result"]
        time.sleep(0.2)
    assert set(done) == {"vagpt", "vadllama"}
    for run, result in done.items():
        assert result["method"] == run and result["n_frames"] == 16 and result["max_seconds"] == 2
    assert os.listdir(up) == []


@pytest.mark.slow
def test_tvau_heatmaps_boxes_and_chat(tvau_run, tmp_path):
    video = _synth_mp4(tvau_run, str(tmp_path / "synth.mp4"))
    app = create_app([tvau_run], Settings(upload_dir=str(tmp_path / "up")))
    with TestClient(app) as client:
        got = _explain(client, "tvau", video)
        n, (g, _) = got["n_frames"], got["heatmap_grid"]
        assert np.asarray(got["heatmaps"]).shape == (n, g, g)
        assert all(len(b) == 6 and 0 <= b[0] < n for b in got["boxes"])
        assert [a["kind"] for a in got["answers"]] == ["yes_no", "target", "trajectory", "spatial"]
        assert got["view"]["chat"] and got["view"]["sets"] is None
        r = client.post("/api/chat", json={"session": got["session"], "message": "What moves?"})
        assert r.status_code == 200 and isinstance(r.json()["answer"], str)
    assert os.listdir(tmp_path / "up") == []
