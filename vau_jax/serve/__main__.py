"""``python -m vau_jax.serve``: the web app over finished runs (see :mod:`vau_jax.serve`).

A user error (a missing run folder, a folder that is not a finished run, a bad flag, a port
that cannot be listened on) prints one line ``error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Callable, Sequence

from vau_jax.cli import ArgumentParser, fail, report


def _typed(flag: str, kind: type, what: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return kind(text)
        except ValueError:
            fail(f"{flag}={text}: not {what}")

    return parse


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The flags (one-line errors, exit code 2)."""
    p = ArgumentParser(prog="python -m vau_jax.serve", description=__doc__.split("\n")[0])
    p.add_argument(
        "--workdir", action="append", required=True, help="a finished run folder (repeatable)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (local only)")
    p.add_argument(
        "--port", type=_typed("--port", int, "an integer"), default=8080, help="0 = any free"
    )
    p.add_argument(
        "--max_upload_mb", type=_typed("--max_upload_mb", float, "a number"), default=200.0
    )
    p.add_argument(
        "--max_seconds",
        type=_typed("--max_seconds", float, "a number"),
        default=None,
        help="explain at most the first seconds of a video",
    )
    p.add_argument("--max_sessions", type=_typed("--max_sessions", int, "an integer"), default=16)
    p.add_argument(
        "--max_chat_caches",
        type=_typed("--max_chat_caches", int, "an integer"),
        default=4,
        help="sessions whose LLM KV cache is kept (older ones rebuild their next prompt)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        fail(f"--port={args.port}: not a port number (0-65535)")
    if not args.max_upload_mb > 0:
        fail(f"--max_upload_mb={args.max_upload_mb:g}: must be positive")
    if args.max_seconds is not None and not args.max_seconds > 0:
        fail(f"--max_seconds={args.max_seconds:g}: must be positive")
    if args.max_sessions < 1:
        fail(f"--max_sessions={args.max_sessions}: must be at least 1")
    if args.max_chat_caches < 0:
        fail(f"--max_chat_caches={args.max_chat_caches}: must be at least 0")
    return args


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (one-line error and exit code 2 when it cannot be)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as err:
        fail(f"--host={host} --port={port}: cannot listen there: {err.strerror or err}")
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        import uvicorn

        from vau_jax.serve.app import Settings, create_app
    except ImportError as err:
        return report(
            f"the web app needs fastapi, uvicorn and python-multipart ({err.name} is missing): "
            "pip install -e '.[serve]'"
        )
    from vau_jax.inference import RunError

    try:
        app = create_app(
            args.workdir,
            Settings(
                max_upload_mb=args.max_upload_mb,
                max_seconds=args.max_seconds,
                max_sessions=args.max_sessions,
                max_chat_caches=args.max_chat_caches,
            ),
        )
    except RunError as err:
        return report(err)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    names = ", ".join(e["name"] for e in app.state.pool.listing())
    shown = f"[{host}]" if ":" in host else host
    print(f"vau_jax.serve: {names} at http://{shown}:{port}/ (Ctrl+C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    from vau_jax.host_memory import exec_with_hugepages

    exec_with_hugepages("vau_jax.serve")  # first: 2 MB pages for XLA's buffers
    sys.exit(main())
