"""Every CLI speaks in one line: a table of user errors, each answered with exactly one
stderr line ``error: ...`` and exit code 2 (no traceback, no absl usage dump).

``main``, ``evaluate``, ``convert`` and ``aot`` define their flags on absl's global
``FLAGS`` when run as ``__main__``, so their cases run as real ``python -m`` subprocesses;
``explain``, ``extract``, ``tvau_build``, ``serve`` and the SynthVAD writer take ``main(argv)``
and run in-process (a few of them as subprocesses too).

Nothing here trains or compiles a model: every case fails before that.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODULES = {
    "main": "vau_jax.main",
    "evaluate": "vau_jax.evaluate",
    "convert": "vau_jax.convert",
    "aot": "vau_jax.aot",
    "explain": "vau_jax.explain",
    "extract": "vau_jax.extract",
    "tvau_build": "vau_jax.tvau_build",
    "synthvad": "vau_jax.data.synthvad.__main__",
    "serve": "vau_jax.serve.__main__",
}
SUBPROCESS_ONLY = {"main", "evaluate", "convert", "aot"}  # flags on absl's global FLAGS
ABSL_ARGV0 = {"tvau_build", "synthvad"}  # main(argv) wants the program name first

# stderr lines that are not the error: absl INFO log lines (main logs its config and
# process count before it reads the dataset).
HARMLESS = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")


class Case(NamedTuple):
    cli: str
    argv: tuple[str, ...]
    want: tuple[str, ...]  # substrings of the error line
    subprocess: bool = False  # also for an in-process CLI: run it as python -m


def case(cli, argv, *want, sub=False):
    return Case(cli, tuple(argv), tuple(want), sub or cli in SUBPROCESS_ONLY)


VADLLAMA = "configs/vadllama.py"
VIDEO = "--video={t}/vids/v.mp4"

CASES = [
    # ---------------------------------------------------------------- main
    case("main", [], "--config=configs/<method>.py[:preset] is required"),
    case(
        "main",
        [f"--config={VADLLAMA}", "--config.lr_typo=1"],
        "--config.lr_typo: no such config key",
        "nearest valid keys: clip_pretrain.optimizer.lr, phase1.optimizer.lr",
    ),
    case(
        "main", [f"--config={VADLLAMA}", "--config.batchsize=3"], "nearest valid keys: batch_size"
    ),
    case("main", [f"--config={VADLLAMA}:nope"], "unknown preset 'nope'", "('tiny', 'paper')"),
    case("main", ["--config=configs/clip_pretrain.py:paper"], "choose one of ('tiny',)"),
    case("main", ["--config=configs/nope.py"], "configs/nope.py: no such config file"),
    case("main", ["--config={t}/adir"], "adir: is a directory, not a config file"),
    case("main", ["--config={t}/broken_cfg.py"], "broken_cfg.py: RuntimeError: boom"),
    case("main", [f"--config={VADLLAMA}", "--mode=fly"], "--mode=fly: value should be one of"),
    case("main", [f"--config={VADLLAMA}", "--config.batch_size=abc"], "batch_size=abc: not an"),
    case("main", [f"--config={VADLLAMA}", "--workdr=x"], "unknown flag --workdr; did you mean"),
    case("main", [f"--config={VADLLAMA}", "extra"], "unexpected arguments: extra"),
    case("main", [f"--config={VADLLAMA}", "--workdir"], "--workdir needs a value"),
    case("main", [f"--config={VADLLAMA}", "--config.dataset=nope"], "unknown dataset", "'folder'"),
    case(
        "main",
        [f"--config={VADLLAMA}", "--config.resume={t}/nope", "--workdir={t}/w"],
        "config.resume=",
        "no such folder",
    ),
    case(
        "main",
        [f"--config={VADLLAMA}:paper", "--workdir={t}/paper"],
        "vadllama:paper preset needs converted checkpoints",
    ),
    # ---------------------------------------------------------------- evaluate
    case("evaluate", [], "--metric, --gt, --pred are required"),
    case("evaluate", ["--metric=nope", "--gt=a", "--pred=b"], "value should be one of <frame_auc"),
    case("evaluate", ["--metri=x"], "unknown flag --metri; did you mean --metric?"),
    case("evaluate", ["--metric=bleu", "--gt=a", "--pred=b", "--windows=abc"], "not an integer"),
    case(
        "evaluate",
        ["--metric=frame_auc", "--gt={t}/nope.txt", "--pred={t}/emptydir"],
        "nope.txt: no such file",
    ),
    case(
        "evaluate",
        ["--metric=frame_auc", "--gt={t}/bad_ann.txt", "--pred={t}/emptydir"],
        "bad_ann.txt:1:",
    ),
    case("evaluate", ["--metric=frame_auc", "--gt={t}/adir", "--pred={t}/emptydir"], "adir"),
    case(
        "evaluate",
        ["--metric=bleu", "--gt={t}/bad.jsonl", "--pred={t}/bad.jsonl"],
        "bad.jsonl:2: invalid JSON",
    ),
    case(
        "evaluate",
        ["--metric=rbdc_tbdc", "--gt={t}/emptydir", "--pred={t}/emptydir"],
        "emptydir: no .txt files",
    ),
    # ---------------------------------------------------------------- convert
    case("convert", [], "--src, --dst are required"),
    case("convert", ["--src={t}/nope", "--dst={t}/c"], "nope: not a folder"),
    case("convert", ["--src={t}/bad.gguf", "--dst={t}/c"], "bad.gguf: not a readable GGUF"),
    case("convert", ["--src={t}/emptydir", "--dst={t}/c", "--verify=maybe"], "not true or false"),
    case("convert", ["--export", "--src={t}/emptydir", "--dst={t}/e"], "config.json: missing"),
    case("convert", ["--export", "--src={t}/run_no_ckpt", "--dst={t}/e"], "no checkpoint; train"),
    # ---------------------------------------------------------------- aot
    case("aot", [], "--config=configs/<method>.py[:preset] is required"),
    case("aot", [f"--config={VADLLAMA}:nope"], "unknown preset 'nope'", "('tiny', 'paper')"),
    case("aot", [f"--config={VADLLAMA}:paper", "--config.lr_typo=1"], "nearest valid keys"),
    # ---------------------------------------------------------------- serve
    case("serve", [], "the following arguments are required: --workdir"),
    case("serve", ["--workdir={t}/nope"], "nope: no such run folder"),
    case("serve", ["--workdir={t}/emptydir"], "config.json: missing; not a run folder"),
    case("serve", ["--workdir={t}/emptydir", "--port=abc"], "--port=abc: not an integer"),
    case("serve", ["--workdir={t}/emptydir", "--max_upload_mb=x"], "not a number", sub=True),
    case(
        "serve", ["--workdir={t}/emptydir", "--max_chat_caches=-1"], "must be at least 0", sub=True
    ),
    # ---------------------------------------------------------------- explain
    case("explain", [], "the following arguments are required: --workdir, --video"),
    case("explain", ["--workdir={t}/nope", VIDEO], "nope: no such run folder"),
    case("explain", ["--workdir={t}/emptydir", VIDEO], "config.json: missing"),
    case("explain", ["--workdir={t}/run_no_ckpt", VIDEO], "no checkpoint; train first"),
    case("explain", ["--workdir={t}/run_no_ckpt", VIDEO], "no checkpoint; train first", sub=True),
    case("explain", ["--workdir={t}/w", "--video={t}/nope.mp4"], "nope.mp4: no such file"),
    case("explain", ["--workdir={t}/w", "--video={t}/plain.txt"], "cannot open as a video"),
    case("explain", ["--workdir={t}/w", VIDEO, "--num_options=5"], "invalid choice: 5"),
    # ---------------------------------------------------------------- extract
    case(
        "extract",
        ["--video={t}/vids", "--out={t}/o", "--encoder=tiny-clip"],
        "--encoder=tiny-clip-vit",
    ),
    case(
        "extract",
        ["--video={t}/vids", "--out={t}/o", "--encoder=tiny-clip"],
        "tiny-clip is a dual encoder",
        "vision tower: use --encoder=tiny-clip-vit",
        sub=True,
    ),
    case("extract", ["--video={t}/vids", "--out={t}/o", "--encoder=clip-l/14"], "clip-vit-l/14"),
    case("extract", ["--video={t}/vids", "--out={t}/o", "--encoder=nope"], "unknown encoder"),
    case("extract", ["--video={t}/vids", "--out={t}/o", "--encoder=tiny-llama"], "not a vision"),
    case("extract", ["--video={t}/vids", "--out={t}/o"], "one of --encoder or --checkpoint"),
    case("extract", ["--video={t}/vids", "--out={t}/o", "--checkpoint={t}/adir"], "config.json"),
    case("extract", ["--video={t}/emptydir", "--out={t}/o", "--encoder=tiny-clip-vit"], "no video"),
    case(
        "extract",
        ["--video={t}/vids", "--out={t}/plain.txt", "--encoder=tiny-clip-vit"],
        "plain.txt: exists and is not a folder",
    ),
    case("extract", ["--video={t}/vids", "--out={t}/o", "--fps=abc"], "invalid float value"),
    # ---------------------------------------------------------------- tvau_build
    case("tvau_build", [], "--dataset is required"),
    case(
        "tvau_build",
        ["--dataset=ubnormal", "--dataset_dir={t}/nope", "--out={t}/tv"],
        "nope: not a directory",
    ),
    case(
        "tvau_build",
        ["--dataset=ubnormal", "--dataset_dir={t}/emptydir", "--out={t}/tv"],
        "abnormal_training_video_names.txt: missing",
    ),
    case(
        "tvau_build",
        ["--dataset=ubnormal", "--dataset_dir={t}/emptydir", "--out={t}/tv", "--annotator=x"],
        "unknown annotator 'x'",
    ),
    case("tvau_build", ["--dataset=avenue"], "--dataset=avenue: value should be one of"),
    # ---------------------------------------------------------------- SynthVAD writer
    case("synthvad", ["--out={t}/s", "--layout=nope"], "--layout=nope: value should be one of"),
    case("synthvad", ["--out={t}/s", "--layout=nope"], "value should be one of", sub=True),
    case("synthvad", ["--out={t}/s", "--layout=tad", "--size=31"], "even and >= 32"),
    case("synthvad", ["--out={t}/s", "--fps=-1"], "--fps=-1.0: must be positive"),
    case("synthvad", ["--out={t}/plain.txt"], "plain.txt: exists and is not a directory"),
    case("synthvad", ["--out={t}/s", "--layout=tad", "--split=train"], "only used without"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> str:
    """Inputs that are wrong in one way each (and a good video)."""
    from vau_jax.cli import load_config_file
    from vau_jax.data.synthvad.writers import write_mp4

    t = tmp_path_factory.mktemp("cli_errors")
    for d in ("adir", "emptydir", "vids", "run_no_ckpt"):
        (t / d).mkdir()
    (t / "plain.txt").write_text("not a video, not a folder\n")
    (t / "bad_ann.txt").write_text("garbage line here\n")
    (t / "bad.jsonl").write_text('{"id": 1, "answer": "x"}\nnot json\n')
    (t / "bad.gguf").write_bytes(b"GGUF\n")
    (t / "broken_cfg.py").write_text("def get_config(arg=None):\n    raise RuntimeError('boom')\n")
    frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    write_mp4(str(t / "vids" / "v.mp4"), frames, 8.0)
    config = load_config_file(os.path.join(ROOT, VADLLAMA))  # a run that never checkpointed
    config.data_dir = str(t / "data")
    (t / "run_no_ckpt" / "config.json").write_text(config.to_json())
    return str(t)


def _run(c: Case, t: str, capsys) -> tuple[int, str]:
    argv = [a.format(t=t) for a in c.argv]
    if c.subprocess:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
        env["VAU_JAX_DATA_DIR"] = os.path.join(t, "data")  # the configs' data_dir
        proc = subprocess.run(
            [sys.executable, "-m", MODULES[c.cli].removesuffix(".__main__"), *argv],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return proc.returncode, proc.stderr
    main = importlib.import_module(MODULES[c.cli]).main
    capsys.readouterr()
    try:
        code = main([c.cli, *argv] if c.cli in ABSL_ARGV0 else argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "c",
    [
        pytest.param(c, id=f"{c.cli}{'-sub' if c.subprocess else ''}-{i}")
        for i, c in enumerate(CASES)
    ],
)
def test_user_error_is_one_line_exit_2(c, files, capsys):
    code, err = _run(c, files, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip() and not HARMLESS.match(ln)]
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    for want in c.want:
        assert want.format(t=files) in lines[0], lines[0]


def test_the_table_covers_every_cli():
    assert len(CASES) >= 30
    assert {c.cli for c in CASES} == set(MODULES)
    assert {c.cli for c in CASES if c.subprocess} >= {"explain", "extract", "synthvad"}


def test_main_on_a_folder_another_run_is_using_is_one_line(files, capsys):
    """The workdir lock (vau_jax/train/lock.py) refuses before any data is prepared."""
    busy = os.path.join(files, "busy")
    code = (
        "import time\nfrom vau_jax.train.lock import workdir_lock\n"
        f"with workdir_lock({busy!r}):\n    print('locked', flush=True)\n    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        c = case("main", [f"--config={VADLLAMA}", f"--workdir={busy}"])
        rc, err = _run(c, files, capsys)
    finally:
        holder.kill()
        holder.wait()
    lines = [ln for ln in err.splitlines() if ln.strip() and not HARMLESS.match(ln)]
    assert rc == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"error: {busy}: another run is using this folder (pid {holder.pid}")
    assert not os.path.exists(os.path.join(files, "data", "tfds"))  # nothing was prepared
