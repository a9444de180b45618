"""One job per run folder: the second refuses (or, for caches, waits); a kill frees the lock."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from vau_jax.train.lock import WorkdirBusyError, workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _holder(workdir, seconds):
    """A separate process that takes the lock, says so, and sleeps ``seconds``."""
    code = textwrap.dedent(f"""
        import sys, time
        from vau_jax.train.lock import workdir_lock
        with workdir_lock({str(workdir)!r}):
            print("locked", flush=True)
            time.sleep({seconds})
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"locked"
    return proc


def test_second_run_refuses_naming_the_holder(tmp_path):
    proc = _holder(tmp_path, 60)
    try:
        with pytest.raises(WorkdirBusyError, match=rf"{tmp_path}: another run .*pid {proc.pid} "):
            with workdir_lock(str(tmp_path)):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_releases_the_lock_at_once(tmp_path):
    proc = _holder(tmp_path, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(tmp_path / ".lock")  # the stale file stays and does not matter
    with workdir_lock(str(tmp_path)):
        assert f"pid {os.getpid()} " in (tmp_path / ".lock").read_text()


def test_wait_blocks_until_the_holder_finishes(tmp_path):
    proc = _holder(tmp_path, 2)
    t0 = time.time()
    with workdir_lock(str(tmp_path), wait=True):
        waited = time.time() - t0
    assert waited > 1.0  # the holder sleeps 2 s after taking the lock
    assert proc.wait(60) == 0


def test_reentrant_in_one_process_and_still_exclusive_for_others(tmp_path):
    with workdir_lock(str(tmp_path)):
        with workdir_lock(str(tmp_path)):  # a nested run in the same folder
            pass
        # still held after the inner block: another process is refused
        result = {}

        def other():
            code = (
                "from vau_jax.train.lock import workdir_lock\n"
                f"with workdir_lock({str(tmp_path)!r}): pass\n"
            )
            env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env)
            result["rc"], result["err"] = r.returncode, r.stderr.decode()

        t = threading.Thread(target=other)
        t.start()
        t.join(120)
        assert result["rc"] != 0 and "WorkdirBusyError" in result["err"]
    with workdir_lock(str(tmp_path)):  # released after the outer block
        pass


def test_a_training_run_on_a_busy_folder_refuses_and_writes_nothing(tmp_path):
    from tests.train.toy_method import ToyMethod, config
    from vau_jax.methods.runner import run_method

    proc = _holder(tmp_path, 60)
    try:
        with pytest.raises(WorkdirBusyError, match="another run is using this folder"):
            run_method(ToyMethod(steps=2), config(), str(tmp_path), "train")
    finally:
        proc.kill()
        proc.wait()
    assert sorted(os.listdir(tmp_path)) == [".lock"]  # no checkpoints, metrics or config
