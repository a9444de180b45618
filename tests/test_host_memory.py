"""vau_jax.host_memory: with VAU_JAX_MALLOC=reuse the glibc settings are applied on import and
stop the page faults; without it nothing changes. A program's restart with glibc's huge-page
tunable happens once, only when it applies, and cuts the faults of the same buffers."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from vau_jax import host_memory

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)

# The gradient of one tiny-CLIP ViT block over a batch of 64 frames (65 tokens, width 64):
# its buffers are about 40 MB per call. Minor page faults per call, after warm-up.
PROBE = r"""
import json, resource
import vau_jax  # first: the allocator settings must precede XLA's threads
import jax, jax.numpy as jnp
from vau_jax import host_memory
from vau_jax.models import vit

block = vit.EncoderLayer(vit.PRESETS["tiny-clip-vit"])
x = jnp.ones((64, 65, 64)) * 0.1
params = block.init(jax.random.key(0), x)
f = jax.jit(jax.grad(lambda p, x: (block.apply(p, x) ** 2).sum(), argnums=(0, 1)))
for _ in range(3):
    jax.block_until_ready(f(params, x))
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    jax.block_until_ready(f(params, x))
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10
print(json.dumps({"applied": host_memory.tune_allocator(), "faults": faults}))
"""


def _probe(env_value: str | None, tunables: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop(host_memory.ENV, None)
    env.pop("GLIBC_TUNABLES", None)
    if env_value is not None:
        env[host_memory.ENV] = env_value
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@glibc
def test_import_applies_settings_and_stops_page_faults():
    tuned, system = _probe("reuse"), _probe(None)
    assert tuned["applied"] == {
        "M_ARENA_MAX": 1,
        "M_MMAP_MAX": 0,
        "M_TRIM_THRESHOLD": host_memory.TRIM_THRESHOLD,
    }
    assert system["applied"] == {}
    # ~10,300 fresh pages per call with glibc's defaults (measured); the tuned process
    # reuses its heap: 26 pages per call in some runs, ~1,050 in others (measured on an AMD
    # EPYC, back to back: a 4 MB buffer that is sometimes fresh), 9.8x fewer at worst.
    assert system["faults"] > 5000, system
    assert tuned["faults"] < system["faults"] / 5, (tuned, system)


def test_opt_in_and_idempotence(monkeypatch):
    for value in ("", "system", "yes"):
        monkeypatch.setattr(host_memory, "_applied", None)
        monkeypatch.setenv(host_memory.ENV, value)
        assert host_memory.tune_allocator() == {}
    monkeypatch.setenv(host_memory.ENV, "reuse")
    # Once decided, a process keeps its settings (mallopt is not re-run).
    assert host_memory.tune_allocator() == {}


hugepages = pytest.mark.skipif(
    host_memory.hugepage_environ({}, host_memory.glibc_version(), host_memory.thp_mode()) is None,
    reason="needs glibc >= 2.35 and the kernel's transparent huge pages in madvise mode",
)


def test_hugepage_environ_decides():
    tunable = host_memory.HUGEPAGE_TUNABLE
    env = host_memory.hugepage_environ({"PATH": "/bin"}, (2, 36), "madvise")
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": tunable}
    # Other tunables are kept, ours appended.
    env = host_memory.hugepage_environ(
        {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, (2, 40), "madvise"
    )
    assert env == {"GLIBC_TUNABLES": f"glibc.pthread.rseq=0:{tunable}"}
    source = {"A": "1"}
    host_memory.hugepage_environ(source, (2, 36), "madvise")
    assert source == {"A": "1"}  # the caller's mapping is not modified
    for environ, libc, thp in (
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36), "madvise"),  # the user's choice
        ({"GLIBC_TUNABLES": tunable}, (2, 36), "madvise"),  # restarted already: no loop
        ({host_memory.HUGEPAGE_ENV: "0"}, (2, 36), "madvise"),
        ({host_memory.HUGEPAGE_ENV: "Off"}, (2, 36), "madvise"),
        ({}, (2, 34), "madvise"),  # no such tunable yet
        ({}, None, "madvise"),  # musl, macOS
        ({}, (2, 36), "always"),  # huge already
        ({}, (2, 36), "never"),
        ({}, (2, 36), ""),
    ):
        assert host_memory.hugepage_environ(environ, libc, thp) is None, (environ, libc, thp)


def test_thp_mode_parses_the_kernel_file(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert host_memory.thp_mode(str(path)) == "madvise"
    path.write_text("[always] madvise never\n")
    assert host_memory.thp_mode(str(path)) == "always"
    assert host_memory.thp_mode(str(tmp_path / "missing")) == ""


RESTART = r"""
import json, os, sys
from vau_jax import host_memory
host_memory.exec_with_hugepages("prog")
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:],
                  "tunables": os.environ.get("GLIBC_TUNABLES", "")}))
"""


@hugepages
def test_program_restarts_once_with_the_tunable(tmp_path):
    (tmp_path / "prog.py").write_text(RESTART)
    env = {
        k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", host_memory.HUGEPAGE_ENV)
    }
    env["GLIBC_TUNABLES"] = "glibc.pthread.rseq=1"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])

    def run(extra: dict[str, str], args: tuple[str, ...] = ("-m", "prog")) -> dict:
        proc = subprocess.Popen(
            [sys.executable, *args, "--flag=a b"],
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        lines = stdout.strip().splitlines()
        assert len(lines) == 1, lines  # one program's output
        out = json.loads(lines[0])
        assert out["pid"] == proc.pid  # restarted in place (exec), not a child process
        return out

    on = run({})
    assert on["tunables"] == f"glibc.pthread.rseq=1:{host_memory.HUGEPAGE_TUNABLE}"
    assert on["argv"] == ["--flag=a b"]
    assert run({}, ("-X", "utf8", "-mprog"))["tunables"] == on["tunables"]
    off = run({host_memory.HUGEPAGE_ENV: "0"})
    assert off["tunables"] == "glibc.pthread.rseq=1"
    # The script itself, not ``-m prog``: not the program named, so not restarted.
    assert run({}, (str(tmp_path / "prog.py"),))["tunables"] == "glibc.pthread.rseq=1"


def test_started_as(tmp_path):
    yes = (["py", "-m", "vau_jax.main", "--x"], ["py", "-X", "utf8", "-mvau_jax.main"])
    for argv in yes:
        assert host_memory.started_as("vau_jax.main", argv), argv
    no = (
        ["py", "-m", "pytest", "tests"],
        ["py", "-m"],
        ["/venv/bin/python", "/venv/bin/pytest", "-m", "vau_jax.main"],  # pytest's -m
        ["py", "-c", "import runpy", "-m", "vau_jax.main"],
        ["py", "vau_jax/main.py"],
        [],
    )
    for argv in no:
        assert not host_memory.started_as("vau_jax.main", argv), argv
    script = tmp_path / "bench.py"
    script.write_text("")
    assert host_memory.started_as(str(script), ["py", "-u", str(script), "--rows=a"])
    assert host_memory.started_as(str(script), ["py", os.path.relpath(script)])
    assert not host_memory.started_as(str(script), ["py", "/venv/bin/pytest", str(script)])
    assert not host_memory.started_as(str(script), ["py", "-m", "bench"])


@pytest.mark.slow
@hugepages
def test_hugepage_tunable_cuts_page_faults():
    system, huge = _probe(None), _probe(None, host_memory.HUGEPAGE_TUNABLE)
    # The ~40 MB block of each call is mapped afresh either way; with 2 MB pages it takes
    # far fewer faults: 43-555 per call against 10,250-10,310 (the probe above, four pairs
    # on an AMD EPYC; the rest are small blocks), so at least 18x fewer.
    assert system["faults"] > 5000, system
    assert huge["faults"] < system["faults"] / 10, (huge, system)
