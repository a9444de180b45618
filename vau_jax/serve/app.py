"""The web app's routes (FastAPI): the page, its static files and the JSON API.

``create_app(workdirs, Settings(...))`` builds the app over finished runs (checked at once,
restored on first use). The event loop never runs a model: explain jobs go to a small pool
of worker threads (each run used by one job at a time, :class:`RunPool`), follow-up
questions to another, and the handlers await them.

API (errors are ``{"detail": "one line"}`` with a 4xx/5xx status):

* ``GET /api/runs`` -> ``{"runs": [{"name", "method", "workdir"}]}``;
* ``GET /api/examples?run=NAME`` -> ``{"examples": [{"id", "label"}]}``;
* ``GET /api/limits`` -> ``{"max_upload_mb", "max_seconds"}``;
* ``POST /api/explain`` (multipart: ``run``, ``video`` file or ``example`` id, optional
  ``max_seconds``, VA-GPT's ``question``, ``num_options``, ``free_form``,
  ``max_new_tokens``) -> the ``timeline.json`` record + ``session`` + ``view``; 413 an
  upload over the limit, 415 a file that is not a video;
* ``POST /api/jobs`` (the same form) -> 202 ``{"job"}``; ``GET /api/jobs/ID`` -> its
  stage, progress and, when done, ``result`` (or ``status`` + ``error``);
* ``POST /api/chat`` JSON ``{"session", "message"}`` -> ``{"answer"}``; 409 for a run
  without a language model, 404 an unknown (or dropped) session;
* ``GET /api/sessions/ID/frames.jpg``: the decoded frames as one sprite sheet.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vau_jax.serve import work
from vau_jax.serve.runs import RunEntry, RunPool
from vau_jax.serve.sessions import Job, JobFailed, JobStore, SessionStore

STATIC = os.path.join(os.path.dirname(__file__), "static")
MAX_MESSAGE_CHARS = 2000
MB = 2**20


@dataclasses.dataclass
class Settings:
    """Server limits and places.

    Attributes:
      max_upload_mb: the largest upload accepted (413 above it).
      max_seconds: explain at most the first seconds of a video (``None``: no limit); a
        request's ``max_seconds`` can only lower it.
      upload_dir: where uploads are copied, one temporary folder each, deleted when the job
        ends (``None``: a fresh folder under the system's temporary folder).
      max_sessions: explained videos kept for follow-up questions (oldest dropped).
      max_chat_caches: sessions whose LLM KV cache is kept (the newest; an older one's next
        question rebuilds its prompt), bounding the caches' device memory
        (:class:`~vau_jax.serve.sessions.SessionStore`).
      workers: explain jobs run at once (different runs; one run does one at a time).
      vtest: the real example clip (default: ``$VAU_JAX_VTEST``).
    """

    max_upload_mb: float = 200.0
    max_seconds: float | None = None
    upload_dir: str | None = None
    max_sessions: int = 16
    max_chat_caches: int = 4
    workers: int = 2
    vtest: str | None = dataclasses.field(default_factory=lambda: os.environ.get("VAU_JAX_VTEST"))


def _save(src: BinaryIO, dest: str, limit: int) -> int:
    """Copies ``src`` to ``dest`` in chunks; returns the size; 413 past ``limit`` bytes."""
    size = 0
    with open(dest, "wb") as out:
        while chunk := src.read(MB):
            size += len(chunk)
            if size > limit:
                raise JobFailed(413, "")
            out.write(chunk)
    return size


def _number(form: Any, key: str, kind: type, default: Any) -> Any:
    """Form field ``key`` as ``kind`` (``default`` when absent or empty; 400 otherwise)."""
    raw = form.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return kind(str(raw).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise HTTPException(400, f"{key}={str(raw)[:40]!r}: not {what}") from None


def create_app(workdirs: Sequence[str], settings: Settings | None = None) -> FastAPI:
    """The app over the finished runs in ``workdirs`` (``RunError`` for an unusable one)."""
    s = settings or Settings()
    pool = RunPool(workdirs)
    own_dir = {"path": None}  # the server's own upload folder, made on the first upload
    limit = int(s.max_upload_mb * MB)
    sessions, jobs = SessionStore(s.max_sessions, s.max_chat_caches), JobStore()
    explainers = ThreadPoolExecutor(max(1, s.workers), thread_name_prefix="vau-serve-explain")
    chatters = ThreadPoolExecutor(1, thread_name_prefix="vau-serve-chat")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        explainers.shutdown(wait=False, cancel_futures=True)
        chatters.shutdown(wait=False, cancel_futures=True)
        if own_dir["path"]:
            shutil.rmtree(own_dir["path"], ignore_errors=True)

    app = FastAPI(title="vau_jax", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.pool, app.state.sessions = pool, sessions
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def upload_root() -> str:
        """``Settings.upload_dir``, or the server's own folder (removed when it stops)."""
        if s.upload_dir is not None:
            os.makedirs(s.upload_dir, exist_ok=True)
            return s.upload_dir
        if own_dir["path"] is None:
            own_dir["path"] = tempfile.mkdtemp(prefix="vau_jax_serve_")
            atexit.register(shutil.rmtree, own_dir["path"], True)
        return own_dir["path"]

    def entry_of(name: Any) -> RunEntry:
        if not name:
            raise HTTPException(400, f"no run chosen (field 'run'); runs: {sorted(pool.entries)}")
        try:
            return pool.get(str(name))
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None

    def too_large(size: float) -> HTTPException:
        return HTTPException(
            413,
            f"upload too large: {size / MB:.1f} MB > the server's limit of "
            f"{s.max_upload_mb:g} MB (--max_upload_mb)",
        )

    async def accept(request: Request) -> tuple[RunEntry, work.ExplainRequest]:
        """The explain form -> the run and the request (the upload saved and probed)."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + MB:  # refused before reading the body
            raise too_large(int(length))
        form = await request.form(max_files=1, max_fields=16)
        folder = None
        try:
            entry = entry_of(form.get("run"))
            seconds = _number(form, "max_seconds", float, None)
            if seconds is not None and seconds <= 0:
                seconds = None
            if s.max_seconds is not None:
                seconds = s.max_seconds if seconds is None else min(seconds, s.max_seconds)
            options: dict[str, Any] = {}
            if entry.method == "vagpt":
                options = {
                    "question": str(form.get("question") or "").strip() or None,
                    "num_options": _number(form, "num_options", int, 8),
                    "free_form": str(form.get("free_form", "")).lower() in ("1", "true", "on"),
                    "max_new_tokens": min(128, max(1, _number(form, "max_new_tokens", int, 32))),
                }
                if options["num_options"] not in (4, 8):
                    raise HTTPException(400, "num_options must be 4 or 8")
            video, example = form.get("video"), str(form.get("example") or "")
            folder = tempfile.mkdtemp(prefix="upload_", dir=upload_root())
            if isinstance(video, UploadFile) and (video.filename or video.size):
                name = os.path.basename(video.filename or "upload") or "upload"
                path = os.path.join(folder, "video" + os.path.splitext(name)[1][:8])
                try:
                    await run_in_threadpool(_save, video.file, path, limit)
                except JobFailed:
                    raise too_large(video.size or limit + 1) from None
                req = work.ExplainRequest(path, name, folder, seconds, options=options)
                await run_in_threadpool(probe_upload, req)
            elif example:
                known = {e["id"] for e in work.examples(entry, s.vtest)}
                if example not in known:
                    raise HTTPException(404, f"unknown example {example!r} for run {entry.name}")
                if example == "vtest":
                    req = work.ExplainRequest(s.vtest, os.path.basename(s.vtest), folder, seconds)
                else:
                    req = work.ExplainRequest(None, example, folder, seconds, example=example)
                req.options = options
            else:
                raise HTTPException(400, "send a video file (field 'video') or an example id")
            return entry, req
        except BaseException:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            await form.close()

    def probe_upload(req: work.ExplainRequest) -> None:
        from vau_jax.data.video import VideoDecodeError, probe

        try:
            probe(req.path)
        except VideoDecodeError as err:
            raise HTTPException(415, str(err).replace(req.path, req.name)) from None

    def submit(entry: RunEntry, req: work.ExplainRequest) -> Job:
        job = Job(entry.name)
        jobs.put(job)
        try:
            job.future = explainers.submit(work.explain, entry, job, req, sessions)
        except RuntimeError:  # shutting down
            shutil.rmtree(req.cleanup or "", ignore_errors=True)
            raise HTTPException(503, "the server is shutting down") from None
        return job

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(os.path.join(STATIC, "index.html"))

    @app.get("/api/runs")
    async def runs() -> dict[str, Any]:
        return {"runs": pool.listing()}

    @app.get("/api/limits")
    async def limits() -> dict[str, Any]:
        return {"max_upload_mb": s.max_upload_mb, "max_seconds": s.max_seconds}

    @app.get("/api/examples")
    async def examples(run: str = "") -> dict[str, Any]:
        entry = entry_of(run)
        return {"examples": await run_in_threadpool(work.examples, entry, s.vtest)}

    @app.post("/api/explain")
    async def explain(request: Request) -> dict[str, Any]:
        job = submit(*await accept(request))
        try:
            return await asyncio.wrap_future(job.future)
        except JobFailed as err:
            raise HTTPException(err.status, err.message) from None

    @app.post("/api/jobs", status_code=202)
    async def start_job(request: Request) -> dict[str, Any]:
        job = submit(*await accept(request))
        return {"job": job.id}

    @app.get("/api/jobs/{jid}")
    async def job_state(jid: str) -> dict[str, Any]:
        job = jobs.get(jid)
        if job is None:
            raise HTTPException(404, f"unknown job {jid!r}")
        return job.snapshot()

    @app.get("/api/sessions/{sid}/frames.jpg")
    async def frames(sid: str) -> Response:
        session = sessions.get(sid)
        if session is None:
            raise HTTPException(404, f"unknown session {sid!r}")
        headers = {"Cache-Control": "private, max-age=3600"}
        return Response(session.sheet, media_type="image/jpeg", headers=headers)

    @app.post("/api/chat")
    async def chat(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            raise HTTPException(400, 'send JSON {"session": ID, "message": TEXT}')
        session = sessions.get(str(body.get("session", "")))
        if session is None:
            raise HTTPException(404, "unknown or expired session; explain the video again")
        entry = entry_of(session.run)
        if not entry.can_chat:
            raise HTTPException(409, entry.chat_note())
        message = " ".join(body["message"].split())
        if not message:
            raise HTTPException(400, "empty question")
        if len(message) > MAX_MESSAGE_CHARS:
            raise HTTPException(413, f"question longer than {MAX_MESSAGE_CHARS} characters")
        future = chatters.submit(work.ask, entry, session, message)
        try:
            return {"answer": await asyncio.wrap_future(future)}
        except JobFailed as err:
            raise HTTPException(err.status, err.message) from None

    @app.exception_handler(JobFailed)
    async def failed(request: Request, err: JobFailed) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    return app
