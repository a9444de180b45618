"""The heavy work of the web app, run in worker threads: explain a video, answer a question.

:func:`explain` is ``python -m vau_jax.explain`` without files: the run (restored once,
under its lock) decodes the video at its frame rate and size and predicts; the response is
the ``timeline.json`` record (:func:`vau_jax.explain.describe`) plus ``session`` (the id
follow-up questions name) and ``view`` (what the page draws: the decoded frames as a sprite
sheet, VA-GPT's SETS patches). The uploaded file is deleted when the job ends, whatever
happens. :func:`ask` answers a follow-up from the session's LLM KV cache, or rebuilt from its
cached features when the conversation outgrows it (:meth:`vau_jax.inference.Run.ask`).
Failures are :class:`JobFailed` with an HTTP status.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import shutil
from typing import Any

import numpy as np

from vau_jax.serve.runs import RunEntry
from vau_jax.serve.sessions import Job, JobFailed, Session, SessionStore

log = logging.getLogger(__name__)

#: SynthVAD test videos offered as examples (at most).
MAX_EXAMPLES = 8
#: Side of the frames in the page's sprite sheet (larger decoded frames are shrunk) and of
#: the whole sheet (long videos get smaller frames; browsers decode images up to ~16k px).
SHEET_SIDE = 224
SHEET_MAX = 8192


@dataclasses.dataclass
class ExplainRequest:
    """One video to explain.

    Attributes:
      path: the video file (an upload's temporary copy, or a shared example file); ``None``
        for a SynthVAD example rendered in the job (``example``).
      name: what the response calls the video (the upload's file name).
      cleanup: a temporary folder deleted when the job ends (``None``: keep ``path``).
      max_seconds: only the first seconds (``None``: the whole video).
      example: ``synthvad:<i>`` (test video ``i`` of the run's SynthVAD config) or ``None``.
      options: the method's prediction options (VA-GPT: ``question``, ``num_options``, ...).
    """

    path: str | None
    name: str
    cleanup: str | None = None
    max_seconds: float | None = None
    example: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def synth_config(entry: RunEntry) -> Any:
    """The run's SynthVAD config when its test videos can be rendered, else ``None``."""
    c = entry.config
    if "synthvad" not in c or str(c.get("dataset_dir", "") or ""):
        return None
    from vau_jax.data import synthvad

    return synthvad.SynthConfig(**dict(c.synthvad))


def examples(entry: RunEntry, vtest: str | None) -> list[dict[str, str]]:
    """``[{"id", "label"}]``: the run's first SynthVAD test videos (with their anomaly
    type) and the real clip ``vtest`` when that file exists."""
    out = []
    synth = synth_config(entry)
    if synth is not None:
        from vau_jax.data import synthvad

        n = min(MAX_EXAMPLES, int(entry.config.get("num_test_videos", MAX_EXAMPLES)))
        for i in range(n):
            kind = synthvad.anomaly_type_at(i, synth)
            out.append({"id": f"synthvad:{i}", "label": f"SynthVAD test {i}: {kind}"})
    if vtest and os.path.isfile(vtest):
        out.append({"id": "vtest", "label": f"{os.path.basename(vtest)} (real footage)"})
    return out


def render_example(entry: RunEntry, example: str, folder: str) -> tuple[str, str]:
    """SynthVAD example ``synthvad:<i>`` written as an mp4 into ``folder``: ``(path, name)``."""
    from vau_jax.data import synthvad
    from vau_jax.data.synthvad.writers import write_mp4

    synth = synth_config(entry)
    index = int(example.split(":", 1)[1])
    video = synthvad.render_split_video("test", index, synth)
    name = f"{video.video_id}_{video.anomaly_type}.mp4"
    path = os.path.join(folder, name)
    write_mp4(path, video.frames, video.fps)
    return path, name


def sprite_sheet(frames: np.ndarray, quality: int = 90) -> tuple[bytes, int, int, int]:
    """uint8 ``[T, H, W, 3]`` -> ``(jpeg, cols, frame_w, frame_h)``: the frames row by row,
    ``cols = ceil(sqrt(T))`` per row, shrunk to at most :data:`SHEET_SIDE` pixels a side and
    the sheet to at most :data:`SHEET_MAX`."""
    from PIL import Image

    t, h, w = frames.shape[:3]
    cols = max(1, math.ceil(math.sqrt(t)))
    scale = min(1.0, SHEET_SIDE / max(h, w), SHEET_MAX / (cols * max(h, w)))
    fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
    rows = math.ceil(t / cols)
    sheet = Image.new("RGB", (cols * fw, rows * fh))
    for i, f in enumerate(frames):
        img = Image.fromarray(np.ascontiguousarray(f))
        if (fw, fh) != (w, h):
            img = img.resize((fw, fh), Image.BILINEAR)
        sheet.paste(img, ((i % cols) * fw, (i // cols) * fh))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), cols, fw, fh


def sets_view(timeline: dict[str, Any], context: Any) -> dict[str, Any] | None:
    """VA-GPT's SETS selection for the page: ``grid``, ``keep``, ``times_s`` of the sampled
    frames and their keep-masks ``[S][g][g]`` (0/1); ``None`` for other methods or when SETS
    keeps every patch."""
    if timeline.get("method") != "vagpt" or not isinstance(context, dict):
        return None
    keep = float(timeline.get("sets_keep_ratio", 1.0))
    if keep >= 1.0 or "dino" not in context:
        return None
    from vau_jax.methods.vagpt.report import sets_masks

    masks = sets_masks(context["dino"], keep)
    return {
        "grid": int(masks.shape[-1]),
        "keep": keep,
        "times_s": [round(float(t), 4) for t in context["sample_times"]],
        "masks": masks.astype(np.uint8).tolist(),
    }


def _decode_error(err: Exception, req: ExplainRequest) -> JobFailed:
    msg = str(err)
    if req.path and req.cleanup:
        msg = msg.replace(req.path, req.name)
    return JobFailed(415, msg)


def explain(entry: RunEntry, job: Job, req: ExplainRequest, sessions: SessionStore) -> dict:
    """Runs one explain job (module docstring); returns the response.

    Raises:
      JobFailed: 415 an undecodable video, 503 a run that cannot be restored, 422 a video
        the method cannot predict on (e.g. too short), 500 anything else.
    """
    from vau_jax.data.video import VideoDecodeError
    from vau_jax.explain import decode, describe
    from vau_jax.inference import RunError

    try:
        job.advance("waiting for the run", 0.02)
        with entry.lock:
            job.advance("loading the run", 0.05)
            try:
                run = entry.restored()
            except RunError as err:
                raise JobFailed(503, f"run {entry.name} cannot be restored: {err}") from None
            path = req.path
            if req.example and req.example.startswith("synthvad:"):
                job.advance("rendering the example", 0.1)
                path, req.name = render_example(entry, req.example, req.cleanup)
            job.advance("decoding the video", 0.2)
            fps = run.frame_rate()
            try:
                frames = decode(path, fps, run.frame_size(), req.max_seconds)
            except VideoDecodeError as err:
                raise _decode_error(err, req) from None
            job.advance("scoring", 0.45)
            kwargs = {**req.options, "source": req.name} if run.name == "vagpt" else {}
            try:
                timeline, _ = run.predict(frames, fps, None, **kwargs)
            except ValueError as err:
                raise JobFailed(422, f"{req.name}: {err}") from None
            last = getattr(run.method, "last_prediction", None)
            record = describe(run, req.name, timeline, req.max_seconds)
            turns = run.opening_turns(record) if run.can_chat else []
            sets = sets_view(record, last)
            context = last if run.can_chat else None
            chat = getattr(run.method, "last_chat", None) if run.can_chat else None
            if chat is not None:  # the session owns the KV cache now (its store bounds them)
                run.method.last_chat = None
        job.advance("preparing the page", 0.9)
        sheet, cols, fw, fh = sprite_sheet(frames)
        session = Session(entry.name, frames, fps, record, context, turns, sheet, cols, chat)
        sid = sessions.put(session)
        view = {
            "frames_url": f"/api/sessions/{sid}/frames.jpg",
            "sheet": {"cols": cols, "frame_w": fw, "frame_h": fh, "n": int(len(frames))},
            "size": [int(frames.shape[2]), int(frames.shape[1])],
            "fps": fps,
            "chat": entry.can_chat,
            "chat_note": entry.chat_note(),
            "sets": sets,
        }
        return {**record, "session": sid, "view": view}
    except JobFailed:
        raise
    except Exception as err:  # a bug: keep the traceback in the server's log
        log.exception("explain job %s failed", job.id)
        raise JobFailed(500, f"internal error: {err!r}") from None
    finally:
        if req.cleanup:
            shutil.rmtree(req.cleanup, ignore_errors=True)


def ask(entry: RunEntry, session: Session, message: str, max_new_tokens: int = 32) -> str:
    """The run's answer to ``message`` about the session's video; the exchange is added to
    the session's conversation.

    Raises:
      JobFailed: 409 a run without a language model, 400 a question too long for it.
    """
    from vau_jax.inference import ChatUnavailableError

    with entry.lock:
        run = entry.restored()
        with session.lock:
            try:
                answer = run.ask(
                    session.context,
                    session.turns,
                    message,
                    max_new_tokens,
                    session.timeline,
                    chat=session.chat,
                )
            except ChatUnavailableError as err:
                raise JobFailed(409, str(err).replace(entry.workdir, entry.name)) from None
            except ValueError as err:  # the question alone is longer than the prompt length
                raise JobFailed(400, str(err)) from None
            session.turns += [
                {"from": "human", "value": message},
                {"from": "gpt", "value": answer},
            ]
            if session.chat is not None:
                log.info(
                    "chat %s: %s, %d tokens prefilled%s",
                    session.id,
                    session.chat.path,
                    session.chat.prefilled,
                    f" ({session.chat.reason})" if session.chat.reason else "",
                )
    return answer
