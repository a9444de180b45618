r"""Standalone evaluation CLI: prediction files + ground truth -> one JSON object on stdout.

    python -m vau_jax.evaluate --metric=NAME --gt=PATH --pred=PATH [options]

=============== =========================================== ==================================
metric          --gt                                        --pred
=============== =========================================== ==================================
frame_auc       UCF-Crime / TAD annotation txt (or XD, UMIL folder of ``<video>.npy`` snippet
                list with ``--gt_format=xd_violence|umil``) scores, one per 16 frames
xd_ap           XD-Violence ``annotations.txt``             folder of ``<video>.npy``
ubnormal_auc    UBnormal root (or one ``_annotations`` dir; folder of ``<video>.npy``/``.txt``
                ShanghaiTech root: ``--gt_format=...``)     per-frame scores
rbdc_tbdc       folder of ``<video>.txt`` GT tracks         folder of ``<video>.txt``
                (``track_id, frame, x1, y1, x2, y2``) or a  (``frame, x1, y1, x2, y2, score``)
                UBnormal root with ``--gt_format=ubnormal``
bleu            JSONL ``{"id", "answer": str | [str]}``     JSONL ``{"id", "answer": str}``
yesno           JSONL ``{"id", "answer": "yes" | "no"}``    JSONL ``{"id", "answer": str}``
mcqa            JSONL ``{"id", "options": [str], "answer_   JSONL ``{"id", "answer": str}`` or
                index": int, "intervals": [[s, e], ...]}``  ``{"id", "answer_index": int}``
=============== =========================================== ==================================

Outputs: frame_auc ``{"AUC_O", "AUC_A"}``; xd_ap ``{"AP_trapz", "AP_step"}``; ubnormal_auc
``{"micro_AUC", "macro_AUC"}``; rbdc_tbdc ``{"RBDC", "TBDC"}``; bleu ``{"BLEU-1".."BLEU-4",
"BLEU-4_sentence_avg"}``; mcqa ``{"Total_Acc", "Temporal_Acc"}``; yesno ``{"Acc"}``; all
fractions in [0, 1]. Text files (scores, boxes) are whitespace- or comma-separated; empty
lines and lines starting with ``#`` are skipped. Bad input (mismatched video ids, length
mismatches, NaN scores, malformed lines, a bad or missing flag) prints one line
``error: <file>[:<line>]: <reason>`` on stderr and exits with status 2. The protocols are
documented in the README (section *Evaluation metrics*).

``--protocol=ucf|umil|vadllama`` (frame_auc, xd_ap): ``vadllama`` reproduces VAD-LLaMA's public
evaluation (``gt[s:e] = 1`` only when ``s > 0``, the ``int(i·r + 0.5)`` segment mapping, the
32-window averaging) to match published numbers; ``--gt_format=umil`` reads the UMIL /
VAD-LLaMA ``path n_frames class s1 e1 ...`` lists and VAD-LLaMA's JSON lists (``.json``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from absl import app, flags

from vau_jax.eval.metrics import bleu as bleu_lib
from vau_jax.eval.metrics import frame_level as frame_lib
from vau_jax.eval.metrics import qa as qa_lib
from vau_jax.eval.metrics.rbdc_tbdc import rbdc_tbdc, tracks_to_rows

METRICS = ("frame_auc", "xd_ap", "ubnormal_auc", "rbdc_tbdc", "bleu", "mcqa", "yesno")
GT_FORMATS = (
    "auto",
    "ucf_crime",
    "tad",
    "xd_violence",
    "umil",
    "ubnormal",
    "shanghaitech",
    "tracks_txt",
)
_DEFAULT_GT = {
    "frame_auc": "ucf_crime",
    "xd_ap": "xd_violence",
    "ubnormal_auc": "ubnormal",
    "rbdc_tbdc": "tracks_txt",
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("metric", None, METRICS, "Metric to compute.")
flags.DEFINE_string("gt", None, "Ground-truth file or folder (see the module docstring).")
flags.DEFINE_string("pred", None, "Prediction file or folder (see the module docstring).")
flags.DEFINE_enum("gt_format", "auto", GT_FORMATS, "Ground-truth format; auto = per metric.")
flags.DEFINE_enum(
    "protocol",
    "ucf",
    frame_lib.PROTOCOLS,
    "Snippet->frame protocol: ucf (np.repeat x16), umil (int(i*r+0.5) segment mapping), "
    "vadllama (VAD-LLaMA's public evaluation exactly: umil mapping, 32-window averaging, "
    "intervals count only when s > 0).",
)
flags.DEFINE_integer(
    "windows", 0, "umil protocol: averaging windows (public code: 32; 0 = off; vadllama: 32)."
)
flags.DEFINE_float("sigma", 0.0, "ubnormal_auc: Gaussian smoothing std in frames (0 = off).")
flags.DEFINE_string("subset", None, "Text file of video names to evaluate (frame metrics).")
flags.DEFINE_integer("num_frames", None, "rbdc_tbdc: total number of test frames.")
flags.DEFINE_string("meta", None, "rbdc_tbdc: text file of '<video> <n_frames>' lines.")
flags.DEFINE_float("iou_threshold", 0.1, "rbdc_tbdc: IoU to match a region.")
flags.DEFINE_float("track_fraction", 0.1, "rbdc_tbdc: fraction of regions to detect a track.")
flags.DEFINE_enum("bleu_tokenize", "words", bleu_lib.TOKENIZERS, "bleu: tokenisation.")
flags.DEFINE_enum("bleu_smoothing", "none", bleu_lib.SMOOTHINGS, "bleu: smoothing.")


class InputError(ValueError):
    """Bad user input; the message names the file (and line)."""


# ----------------------------------------------------------------------------- file readers


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, raw line)`` of a UTF-8 text file; :class:`InputError` naming the
    file when it cannot be opened or is not UTF-8."""
    from vau_jax.data.formats.record import FormatError, text_lines

    try:
        yield from text_lines(path)
    except OSError as e:
        raise InputError(f"{path}: {e.strerror}") from None
    except FormatError as e:
        raise InputError(str(e)) from None


def _listdir(folder: str, exts: tuple[str, ...]) -> dict[str, str]:
    """``video id -> path`` of the files in ``folder`` with one of ``exts``."""
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: not a directory")
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in exts:
            if stem in out:
                raise InputError(f"{folder}: two files for video {stem!r}")
            out[stem] = os.path.join(folder, name)
    if not out:
        raise InputError(f"{folder}: no {'/'.join(exts)} files")
    return out


def _read_table(path: str, width: int | None) -> np.ndarray:
    """Numbers of a whitespace/comma separated text file, float64 ``[N, width]``."""
    rows = []
    for lineno, raw in _lines(path):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.replace(",", " ").split()
        if width is not None and len(cols) != width:
            raise InputError(f"{path}:{lineno}: expected {width} columns, got {len(cols)}")
        try:
            vals = [float(c) for c in cols]
        except ValueError:
            raise InputError(f"{path}:{lineno}: not a number in {line!r}") from None
        if not all(math.isfinite(v) for v in vals):
            raise InputError(f"{path}:{lineno}: non-finite value in {line!r}")
        rows.append(vals)
    if width is None:
        return np.asarray([r[0] if len(r) == 1 else np.nan for r in rows], np.float64)
    return np.asarray(rows, np.float64).reshape(-1, width)


def read_scores(path: str) -> np.ndarray:
    """1-D float64 scores from ``.npy`` (no pickles; the header is checked against the file
    size first) or ``.txt`` (one number per line)."""
    from vau_jax.data.formats.npy import load_npy
    from vau_jax.data.formats.record import FormatError

    if path.endswith(".txt"):
        arr = _read_table(path, 1)[:, 0]
    else:
        try:
            raw = load_npy(path)
        except FormatError as e:  # "{path}: cannot read as a .npy array: ..."
            raise InputError(str(e)) from None
        if raw.dtype.kind not in "biuf":  # complex, strings, structured, dates, ...
            raise InputError(f"{path}: expected real numbers, got a {raw.dtype} array")
        arr = np.asarray(raw, np.float64)
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
        if bad.size:
            raise InputError(f"{path}: score {int(bad[0])} is {arr.reshape(-1)[bad[0]]}")
    squeezed = arr.squeeze() if arr.ndim > 1 else arr
    if squeezed.ndim != 1 or squeezed.size == 0:
        raise InputError(f"{path}: expected a non-empty 1-D score array, got shape {arr.shape}")
    return squeezed


def read_jsonl(path: str, fields: dict[str, tuple[type, ...]]) -> dict[str, dict[str, Any]]:
    """``id -> object`` of a JSONL file; each object needs ``id`` and one of ``fields``."""
    from vau_jax.data.formats.record import FormatError, load_json

    out: dict[str, dict[str, Any]] = {}
    first: dict[str, int] = {}
    for lineno, raw in _lines(path):
        if not raw.strip():
            continue
        try:
            obj = load_json(raw, path, lineno)
        except FormatError as e:  # invalid, nested too deeply, an integer too long
            raise InputError(str(e)) from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError(f"{path}:{lineno}: expected a JSON object with an 'id'")
        vid = str(obj["id"])
        if vid in first:
            raise InputError(f"{path}:{lineno}: duplicate id {vid!r} (line {first[vid]})")
        present = [k for k in fields if k in obj]
        if not present:
            raise InputError(f"{path}:{lineno}: missing field {' or '.join(fields)!r}")
        for k in present:
            val, types = obj[k], fields[k]
            if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
                names = " or ".join(t.__name__ for t in types)
                raise InputError(f"{path}:{lineno}: field {k!r} must be {names}")
        obj["_line"] = lineno
        first[vid] = lineno
        out[vid] = obj
    if not out:
        raise InputError(f"{path}: no records")
    return out


def _same_ids(gt: dict, pred: dict, gt_path: str, pred_path: str) -> list[str]:
    missing = sorted(set(gt) - set(pred))
    extra = sorted(set(pred) - set(gt))
    if missing:
        raise InputError(f"{pred_path}: no prediction for {len(missing)} id(s): {missing[:5]}")
    if extra:
        raise InputError(f"{pred_path}: {len(extra)} id(s) not in {gt_path}: {extra[:5]}")
    return sorted(gt)


# ----------------------------------------------------------------------------- ground truth


def _gt_format() -> str:
    return _DEFAULT_GT.get(FLAGS.metric, "") if FLAGS.gt_format == "auto" else FLAGS.gt_format


def _read_records(fmt: str, path: str) -> list[Any]:
    from vau_jax.data import formats

    readers: dict[str, Callable[[str], list[Any]]] = {
        "ucf_crime": formats.read_ucf_crime,
        "tad": formats.read_tad,
        "xd_violence": formats.read_xd_violence,
        "umil": formats.read_umil,
        "ubnormal": formats.read_ubnormal,
        "shanghaitech": formats.read_shanghaitech,
    }
    if fmt not in readers:
        raise InputError(f"--gt_format={fmt} cannot be used with --metric={FLAGS.metric}")
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    records = readers[fmt](path)
    if FLAGS.subset:
        keep = set(_read_names(FLAGS.subset))
        records = [r for r in records if r.id in keep]
    return records


def _read_names(path: str) -> list[str]:
    from vau_jax.data.formats.record import video_id

    return [video_id(line.split()[0]) for _, line in _lines(path) if line.strip()]


def _score_folder(folder: str, exts: tuple[str, ...]) -> dict[str, np.ndarray]:
    files = _listdir(folder, exts)
    if FLAGS.subset:
        keep = set(_read_names(FLAGS.subset))
        files = {k: v for k, v in files.items() if k in keep}
    return {vid: read_scores(p) for vid, p in files.items()}


# ----------------------------------------------------------------------------- metrics


def _frame_metric(fn: Callable[..., dict[str, float]], **kwargs: Any) -> dict[str, float]:
    records = _read_records(_gt_format(), FLAGS.gt)
    exts = (".npy", ".txt") if FLAGS.metric == "ubnormal_auc" else (".npy",)
    scores = _score_folder(FLAGS.pred, exts)
    try:
        return fn(records, scores, **kwargs)
    except ValueError as e:
        raise InputError(f"{FLAGS.pred}: {e} (ground truth: {FLAGS.gt})") from None


def _rbdc_tbdc() -> dict[str, float]:
    num_frames: Any = None
    if _gt_format() == "ubnormal":
        records = _read_records("ubnormal", FLAGS.gt)
        gt = {r.id: tracks_to_rows(r.tracks) for r in records}
        if all(r.n_frames is not None for r in records):
            num_frames = {r.id: int(r.n_frames) for r in records}
    elif _gt_format() == "tracks_txt":
        gt = {vid: _read_table(p, 6) for vid, p in _listdir(FLAGS.gt, (".txt",)).items()}
    else:
        raise InputError(f"--gt_format={_gt_format()} cannot be used with --metric=rbdc_tbdc")
    preds = {vid: _read_table(p, 6) for vid, p in _listdir(FLAGS.pred, (".txt",)).items()}
    if FLAGS.meta:
        num_frames = _read_meta(FLAGS.meta)
    if FLAGS.num_frames is not None:
        num_frames = FLAGS.num_frames
    if num_frames is None:
        raise InputError(f"{FLAGS.gt}: frame counts unknown; pass --num_frames or --meta")
    if isinstance(num_frames, dict):  # a frame-count table names every test video
        source = FLAGS.meta or FLAGS.gt
        unknown = sorted(set(preds) - set(num_frames))
        if unknown:
            raise InputError(
                f"{FLAGS.pred}: predictions for video(s) not in {source}: {unknown[:5]}"
            )
        unknown = sorted(set(gt) - set(num_frames))
        if unknown:
            raise InputError(
                f"{FLAGS.gt}: ground truth for video(s) not in {source}: {unknown[:5]}"
            )
    missing = sorted(set(gt) - set(preds))
    if missing:
        raise InputError(f"{FLAGS.pred}: no prediction file for video(s): {missing[:5]}")
    try:
        return rbdc_tbdc(
            gt,
            preds,
            num_frames,
            iou_threshold=FLAGS.iou_threshold,
            track_fraction=FLAGS.track_fraction,
        )
    except ValueError as e:
        raise InputError(f"{FLAGS.pred}: {e} (ground truth: {FLAGS.gt})") from None


def _read_meta(path: str) -> dict[str, int]:
    table: dict[str, int] = {}
    for lineno, raw in _lines(path):
        cols = raw.replace(",", " ").split()
        if not cols or cols[0].startswith("#"):
            continue
        if len(cols) != 2 or not (cols[1].isascii() and cols[1].isdigit()):
            raise InputError(f"{path}:{lineno}: expected '<video> <n_frames>'")
        try:
            table[cols[0]] = int(cols[1])
        except ValueError:  # more digits than int() converts
            raise InputError(f"{path}:{lineno}: n_frames {cols[1][:20]}... is too long") from None
    return table


def _text_metric() -> dict[str, float]:
    metric = FLAGS.metric
    pred_fields: dict[str, tuple[type, ...]] = {"answer": (str,)}
    if metric == "bleu":
        gt_fields: dict[str, tuple[type, ...]] = {"answer": (str, list)}
    elif metric == "yesno":
        gt_fields = {"answer": (str, bool)}
    else:
        gt_fields = {"options": (list,)}
        pred_fields = {"answer": (str,), "answer_index": (int,)}
    gt = read_jsonl(FLAGS.gt, gt_fields)
    pred = read_jsonl(FLAGS.pred, pred_fields)
    ids = _same_ids(gt, pred, FLAGS.gt, FLAGS.pred)

    def where(obj: dict, path: str) -> str:
        return f"{path}:{obj['_line']}"

    if metric == "bleu":
        for i in ids:
            refs = gt[i]["answer"]
            if isinstance(refs, list) and not (refs and all(isinstance(r, str) for r in refs)):
                raise InputError(
                    f"{where(gt[i], FLAGS.gt)}: 'answer' must be a string or a non-empty list "
                    "of strings"
                )
        return bleu_lib.bleu_scores(
            [pred[i]["answer"] for i in ids],
            [gt[i]["answer"] for i in ids],
            smoothing=FLAGS.bleu_smoothing,
            tokenize_mode=FLAGS.bleu_tokenize,
        )
    if metric == "yesno":
        truths = []
        for i in ids:
            t = gt[i]["answer"]
            if not isinstance(t, bool) and qa_lib.parse_yes_no(t) is None:
                raise InputError(f"{where(gt[i], FLAGS.gt)}: answer {t!r} is neither yes nor no")
            truths.append(t)
        return {"Acc": qa_lib.yes_no_accuracy([pred[i]["answer"] for i in ids], truths)}
    chosen, correct, intervals = [], [], []
    for i in ids:
        g, p = gt[i], pred[i]
        texts, ivs = _mc_options(g, where(g, FLAGS.gt))
        ans = g.get("answer_index")
        if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < len(texts):
            raise InputError(f"{where(g, FLAGS.gt)}: 'answer_index' must index 'options'")
        if "answer_index" in p:
            c = p["answer_index"]
            if not 0 <= c < len(texts):
                raise InputError(f"{where(p, FLAGS.pred)}: answer_index {c} out of range")
        else:
            c = qa_lib.parse_choice(p["answer"], texts)
        chosen.append(c)
        correct.append(ans)
        intervals.append(ivs)
    return qa_lib.mcqa_accuracy(chosen, correct, intervals)


def _mc_options(g: dict, where: str) -> tuple[list[str], list[tuple[float, float] | None]]:
    """Option texts and intervals of one MC-QA ground-truth object
    (:func:`vau_jax.data.formats.mcqa.mc_options`)."""
    from vau_jax.data.formats.mcqa import mc_options

    return mc_options(g, where)


def evaluate() -> dict[str, float]:
    """Run the metric named by the flags; raises :class:`InputError` on bad input."""
    metric = FLAGS.metric
    if metric in ("frame_auc", "xd_ap"):
        return _frame_metric(
            frame_lib.frame_auc if metric == "frame_auc" else frame_lib.xd_ap,
            protocol=FLAGS.protocol,
            windows=FLAGS.windows,
            # annotations.txt lists only anomalous videos; the others are normal
            unlisted_normal=_gt_format() == "xd_violence",
        )
    if metric == "ubnormal_auc":
        return _frame_metric(frame_lib.ubnormal_auc, sigma=FLAGS.sigma)
    if metric == "rbdc_tbdc":
        return _rbdc_tbdc()
    return _text_metric()


def main(argv: list[str]) -> None:
    from vau_jax.cli import fail

    del argv  # cli.parse_flags refuses positional arguments
    try:
        result = evaluate()
    except (ValueError, OSError) as e:  # FormatError is a ValueError and names file:line
        fail(e)
    print(json.dumps(result))


if __name__ == "__main__":
    from vau_jax.cli import absl_parser

    app.run(main, flags_parser=absl_parser(required=("metric", "gt", "pred")))
