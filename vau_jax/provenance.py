"""What a run was made from: ``<workdir>/provenance.json``, written when a run starts.

A result can be traced and rerun from it: the code (git commit and whether the checkout had
uncommitted changes; the installed ``vau_jax`` version), the libraries' versions, the
machine (CPU model, core count, accelerator kind and count, processes), the command line,
the config (a hash of ``config.json``, written beside it) and the data (the dataset's name,
folder and a fingerprint: for a folder, a hash of every file's relative path and size; for
SynthVAD, a hash of the renderer settings, since the renderer is deterministic given the
code). The file is replaced atomically.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any

#: Distributions whose versions are recorded (absent ones are left out).
PACKAGES = (
    "vau_jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "ml-collections",
    "numpy",
    "av",
    "transformers",
    "torch",
)

#: At most this many files are hashed into a dataset folder's fingerprint (then it says so).
MAX_FINGERPRINT_FILES = 200_000


def git_state(path: str | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (the package), or None."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str]:
    """``{distribution: version}`` of :data:`PACKAGES` that are installed."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def folder_fingerprint(root: str) -> dict[str, Any]:
    """``{"files", "bytes", "sha1"}`` over every file's relative path and size under ``root``
    (sorted; contents are not read, so this is quick on a large dataset)."""
    h = hashlib.sha1()
    files = total = 0
    for dirpath, dirnames, names in os.walk(root):
        dirnames.sort()
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            try:
                size = os.path.getsize(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\0{size}\n".encode())
            files, total = files + 1, total + size
            if files >= MAX_FINGERPRINT_FILES:
                return {"files": files, "bytes": total, "sha1": h.hexdigest(), "truncated": True}
    return {"files": files, "bytes": total, "sha1": h.hexdigest()}


def dataset_record(config: Any) -> dict[str, Any]:
    """The dataset's name, folder and fingerprint (module docstring)."""
    name = str(config.get("dataset", "") or "")
    root = str(config.get("dataset_dir", "") or "")
    out: dict[str, Any] = {"name": name, "dataset_dir": os.path.abspath(root) if root else ""}
    if root and os.path.isdir(root):
        out["fingerprint"] = folder_fingerprint(root)
    elif name == "synthvad" or not name:
        keys = ("synthvad", "num_train_videos", "num_test_videos", "seed", "cross_domain")
        settings = {k: _plain(config.get(k)) for k in keys if config.get(k) is not None}
        body = json.dumps(settings, sort_keys=True, default=str)
        out["fingerprint"] = {"settings": settings, "sha1": hashlib.sha1(body.encode()).hexdigest()}
    return out


def _plain(value: Any) -> Any:
    return value.to_dict() if hasattr(value, "to_dict") else value


def collect(config: Any, config_json: str) -> dict[str, Any]:
    """The provenance record of a run with ``config`` (``config_json``: its ``config.json``)."""
    import jax

    devices = jax.devices()
    return {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "argv": list(sys.argv),
        "git": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "backend": jax.default_backend(),
            "device_kind": devices[0].device_kind if devices else "",
            "device_count": len(devices),
            "process_count": jax.process_count(),
        },
        "config_sha1": hashlib.sha1(config_json.encode()).hexdigest(),
        "dataset": dataset_record(config),
    }


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and ``os.replace``."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_run_files(workdir: str, config: Any) -> None:
    """``config.json`` and ``provenance.json`` into ``workdir`` (atomically)."""
    config_json = config.to_json_best_effort(indent=2, sort_keys=True)
    os.makedirs(workdir, exist_ok=True)
    atomic_write_text(os.path.join(workdir, "config.json"), config_json)
    record = collect(config, config_json)
    atomic_write_text(
        os.path.join(workdir, "provenance.json"), json.dumps(record, indent=2, default=str)
    )
