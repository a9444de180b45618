"""A local web app over finished runs of any method: upload a video, watch the overlay.

    python -m vau_jax.serve --workdir=runs/vagpt-tiny [--workdir=runs/tvau-tiny ...] \
        [--host=127.0.0.1] [--port=8080] [--max_upload_mb=200] [--max_seconds=S]

The page (``static/``: plain JS, SVG and canvas, no CDN, works offline) picks a run, takes
an upload or an example, shows progress while the job decodes and scores, then a player of
the decoded frames with the method's overlay (T-VAU: heatmap + boxes; VA-GPT: SETS patches
on its sampled frames; every method: the frame's anomaly probability), the probability
timeline (hover: time and value; click: seek), the ranked options / answers, the
explanation, and a chat box for follow-up questions. :mod:`vau_jax.serve.app` documents the
JSON API; :mod:`vau_jax.serve.work` the jobs; :mod:`vau_jax.serve.runs` the run checks.
"""

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":  # FastAPI is imported only when the app is built
        from vau_jax.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
