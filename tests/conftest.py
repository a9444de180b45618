"""Test-wide set-up: 8 forced CPU devices (sharding tests), float32 matmuls, data paths, and
one persistent XLA compilation cache for the whole test session."""

import os
import shutil
import tempfile

# Must happen before jax initialises its backend.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Many tests compile the same programs again: the shared tiny runs' steps and evaluations,
# reruns of a killed job, CLI subprocesses. JAX's persistent compilation cache keeps every
# executable that took >= 1 s to compile in one folder for the session, shared by the xdist
# workers and the subprocesses they start (they inherit the environment). The size limit
# turns on JAX's file lock around reads and writes, so concurrent processes never see a
# half-written entry. Loading from it gives the very executable a compile would build, so no
# number changes; tests/compiles.py counts a load from it as a compilation. The session that
# made the folder deletes it (pytest_unconfigure). JAX_COMPILATION_CACHE_DIR set by the caller
# is used and kept.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="vau_jax_tests_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_unconfigure(config) -> None:
    """Deletes the compilation cache this process made (the xdist controller's, which its
    workers shared)."""
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def vtest_path() -> str:
    """Path of the real surveillance clip ``vtest.avi``; skips when unavailable."""
    path = os.environ.get("VAU_JAX_VTEST")
    if not path or not os.path.isfile(path):
        pytest.skip("real clip not available (set VAU_JAX_VTEST to ../shared/data/vtest.avi)")
    return path


# ----------------------------------------------------------------------- tiny finished runs
# One tiny VAD-LLaMA, VA-GPT and T-VAU run (and their data dir: tokenizer, tiny CLIP,
# SynthVAD ArrayRecord, cached features) are built once per test session and shared by every
# xdist worker: the first worker builds them under a file lock, the others wait and reuse.
# So that no worker idles on that lock (four minutes of one worker's time measured in a
# session), the collection is reordered: one test that needs all three runs first (its
# worker builds them while the other runs ordinary tests), every other test that uses a
# shared run last; the README's test command adds `--dist=worksteal`, which rebalances the
# workers' queues (not in setup.cfg: the TPU test virtualenv has no xdist). xdist's
# `loadgroup` would pin them to one worker, but xdist 3.8 renames the node ids through
# `item._nodeid`, which pytest 9 no longer reads, so its groups are ignored.

SHARED_RUN_FIXTURES = frozenset({"tiny_data_dir", "vadllama_run", "vagpt_run", "tvau_run"})

# Tests that need the shared tiny VA-GPT or T-VAU run are `slow`, whatever their own cost:
# building those two runs (text + base video LLM pretraining, TETG, both stages, AHD, RAE) is
# about 8 of the 12 minutes the three runs take on a 2-core AVX2 EPYC, most of it compiling.
# The README's quick (CI) command leaves them out; the VAD-LLaMA run's tests are all slow by
# their own cost, so the quick suite builds no shared run. The full command runs everything.
# `tiny_data_dir` builds the VA-GPT run too.
SLOW_RUN_FIXTURES = frozenset({"tiny_data_dir", "vagpt_run", "tvau_run"})


def pytest_itemcollected(item) -> None:
    """Marks ``slow`` every test that uses a :data:`SLOW_RUN_FIXTURES` fixture (before ``-m``
    reads the marks)."""
    if SLOW_RUN_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Orders ``items``: the first test that uses ``tvau_run`` (which builds all three shared
    runs), then every test that uses no shared run, then the other shared-run tests (those
    naming a :data:`SHARED_RUN_FIXTURES` fixture or marked ``tiny_run``).

    ``trylast``: after ``-m``/``-k`` have deselected items, so the builder that goes first is
    one that runs (a deselected first item left the builds to whichever shared-run test came
    up last, with the other worker waiting on the lock)."""

    def fixtures(item) -> set[str]:  # items that are not functions (doctests) have none
        return set(getattr(item, "fixturenames", ()))

    shared = [
        i for i in items if SHARED_RUN_FIXTURES & fixtures(i) or i.get_closest_marker("tiny_run")
    ]
    if not shared:
        return
    first = next((i for i in shared if "tvau_run" in fixtures(i)), shared[0])
    ids = {id(i) for i in shared}
    items[:] = (
        [first] + [i for i in items if id(i) not in ids] + [i for i in shared if i is not first]
    )


def _shared_root(tmp_path_factory) -> str:
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return str(root / "tiny_runs")


def _built(tmp_path_factory, name: str, build) -> str:
    from filelock import FileLock

    root = _shared_root(tmp_path_factory)
    os.makedirs(root, exist_ok=True)
    done = os.path.join(root, f"{name}.done")
    with FileLock(os.path.join(root, f"{name}.lock")):
        if not os.path.isfile(done):
            build(root)
            open(done, "w").close()
    return root


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data dir with the tokenizer, the tiny CLIP and both runs' features built."""
    tiny_vadllama_run(tmp_path_factory)
    tiny_vagpt_run(tmp_path_factory)
    return os.path.join(_shared_root(tmp_path_factory), "data")


def _train(root: str, which: str) -> None:
    from tests.tiny_configs import tiny_tvau, tiny_vadllama, tiny_vagpt
    from vau_jax.main import run

    recipes = {"vagpt": tiny_vagpt, "vadllama": tiny_vadllama, "tvau": tiny_tvau}
    config = recipes[which](os.path.join(root, "data"))
    assert run(config, os.path.join(root, which), "train_and_eval") == 0


def tiny_vadllama_run(tmp_path_factory) -> str:
    root = _built(tmp_path_factory, "vadllama", lambda r: _train(r, "vadllama"))
    return os.path.join(root, "vadllama")


def tiny_vagpt_run(tmp_path_factory) -> str:
    tiny_vadllama_run(tmp_path_factory)  # same data dir: build the shared parts once, in order
    root = _built(tmp_path_factory, "vagpt", lambda r: _train(r, "vagpt"))
    return os.path.join(root, "vagpt")


def tiny_tvau_run(tmp_path_factory) -> str:
    tiny_vagpt_run(tmp_path_factory)  # T-VAU's frozen LVLM is VA-GPT's base video LLM
    root = _built(tmp_path_factory, "tvau", lambda r: _train(r, "tvau"))
    return os.path.join(root, "tvau")


@pytest.fixture(scope="session")
def tvau_run(tmp_path_factory) -> str:
    """The workdir of a finished tiny T-VAU run (AHD, RAE curriculum, UBnormal layout)."""
    return tiny_tvau_run(tmp_path_factory)


@pytest.fixture(scope="session")
def vadllama_run(tmp_path_factory) -> str:
    """The workdir of a finished tiny VAD-LLaMA run (phases 1-2, SynthVAD)."""
    return tiny_vadllama_run(tmp_path_factory)


@pytest.fixture(scope="session")
def vagpt_run(tmp_path_factory) -> str:
    """The workdir of a finished tiny VA-GPT run (TETG, stages 1-2, SynthVAD)."""
    return tiny_vagpt_run(tmp_path_factory)
