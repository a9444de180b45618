"""A self-contained HTML evaluation report: metrics, tables and, per video, pictures.

One file, no external resources: frames are embedded as ``data:image/png;base64`` images,
curves are inline SVG, all text is HTML-escaped. A few lines of inline JavaScript record on
``<body>`` (``data-images-loaded``, ``data-images-total``, ``data-tables``) what the browser
rendered, so a headless browser can check the page (``tests/report/test_report.py``).

    write_report(f"{workdir}/report.html", "VA-GPT eval", metrics, videos)
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vau_jax.report import plots


@dataclasses.dataclass
class ReportQuestion:
    """One multiple-choice question put to the model about a video."""

    prompt: str  # question text shown to the model
    options: list[str]  # option texts, in letter order ("A. ...")
    chosen: int  # index chosen by the model
    answer: int  # index of the correct option
    temporally_correct: bool  # chosen option's interval equals the truth
    scores: list[float] | None = None  # [len(options)] per-option log-likelihoods

    def __post_init__(self) -> None:
        n = len(self.options)
        if not (0 <= self.answer < n):
            raise ValueError(f"answer={self.answer} out of range for {n} options")
        if not (-1 <= self.chosen < n):
            raise ValueError(f"chosen={self.chosen} out of range for {n} options (-1 = none)")
        if self.scores is not None and len(self.scores) != n:
            raise ValueError(f"{len(self.scores)} scores for {n} options")


@dataclasses.dataclass
class ReportVideo:
    """What the report shows about one video (everything but the id/type is optional)."""

    video_id: str
    anomaly_type: str  # "normal" or the anomaly type
    fps: float  # frames per second of `tetg_probs`
    duration: float  # seconds
    gt_intervals: list[tuple[float, float]]  # seconds, may be empty
    tetg_probs: np.ndarray | None  # [T] per-frame anomaly probability in [0, 1]
    tetg_threshold: float = 0.5
    tetg_interval: tuple[float, float] | None = None  # predicted interval (seconds)
    frames: np.ndarray | None = None  # [F, H, W, 3] uint8 sampled frames
    frame_times: list[float] | None = None  # [F] seconds of each sampled frame
    patch_masks: np.ndarray | None = None  # [F, gh, gw] bool, True = patch kept by SETS
    questions: list[ReportQuestion] = dataclasses.field(default_factory=list)
    texts: dict[str, str] = dataclasses.field(default_factory=dict)  # title -> text
    frame_captions: list[str] | None = None  # [F] replaces "t = ... s" under each frame
    curve_label: str = "TETG anomaly probability"  # what ``tetg_probs`` is

    def __post_init__(self) -> None:
        if self.tetg_probs is not None and np.asarray(self.tetg_probs).ndim != 1:
            raise ValueError(f"tetg_probs must be [T], got shape {np.shape(self.tetg_probs)}")
        n_frames = None
        if self.frames is not None:
            shape = np.shape(self.frames)
            if len(shape) not in (3, 4):
                raise ValueError(f"frames must be [F, H, W, 3], got shape {shape}")
            n_frames = shape[0]
        if (
            self.frame_times is not None
            and n_frames is not None
            and len(self.frame_times) != n_frames
        ):
            raise ValueError(f"{len(self.frame_times)} frame_times for {n_frames} frames")
        if self.frame_captions is not None and len(self.frame_captions) != n_frames:
            raise ValueError(f"{len(self.frame_captions)} frame_captions for {n_frames} frames")
        if self.patch_masks is not None:
            shape = np.shape(self.patch_masks)
            if len(shape) != 3 or (n_frames is not None and shape[0] != n_frames):
                raise ValueError(f"patch_masks must be [F={n_frames}, gh, gw], got shape {shape}")


_CSS = f"""
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }}
h1 {{ margin-bottom: .2em; }} h2 {{ border-top: 2px solid #ccc; padding-top: .6em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.frames {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; color: #555; text-align: center; }}
img.frame {{ image-rendering: pixelated; display: block; border: 1px solid #999; }}
.question {{ border: 1px solid #ddd; border-radius: 4px; padding: .3em .8em; margin: .8em 0; }}
.prompt {{ white-space: pre-wrap; }} pre {{ white-space: pre-wrap; background: #f7f7f7; padding: .5em; }}
tr.ok td {{ background: #e6f4e6; }} tr.wrong td {{ background: #fbe3e3; }}
tr.truth td {{ background: #f1faf1; }}
.good {{ color: #1a7f1a; font-weight: 600; }} .bad {{ color: #c62828; font-weight: 600; }}
.bar {{ display: inline-block; height: 10px; background: {plots.CURVE}; vertical-align: middle; }}
.muted {{ color: #888; }}
"""

# Records what rendered; must never throw (a headless browser test reads these attributes).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, loaded = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { loaded++; }
  }
  var b = document.body;
  b.setAttribute("data-images-loaded", String(loaded));
  b.setAttribute("data-images-total", String(imgs.length));
  b.setAttribute("data-tables", String(document.getElementsByTagName("table").length));
  b.setAttribute("data-svgs", String(document.getElementsByTagName("svg").length));
});
"""


def _e(x: Any) -> str:
    """HTML-escaped ``str(x)`` (quotes included, safe in attributes)."""
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    """Cell text: floats to 4 decimals, everything else ``str``."""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return "nan" if math.isnan(v) else f"{float(v):.4f}"
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)


def _table(rows: Sequence[Mapping[str, Any]], cls: str = "") -> str:
    """Rows of dicts -> ``<table>``; columns are the keys in order of first appearance."""
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c, "")
            cells.append(
                f'<td class="num">{_e(_fmt(v))}</td>' if _is_num(v) else f"<td>{_e(_fmt(v))}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="{_e(cls)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _interval(iv: tuple[float, float] | None) -> str:
    return "-" if iv is None else f"{float(iv[0]):.2f}-{float(iv[1]):.2f} s"


def _summary_rows(videos: Sequence[ReportVideo]) -> list[dict[str, Any]]:
    """One row per video for the overview table."""
    rows = []
    for v in videos:
        qs = v.questions
        probs = (
            None if v.tetg_probs is None or not np.size(v.tetg_probs) else np.asarray(v.tetg_probs)
        )
        rows.append(
            {
                "video": v.video_id,
                "type": v.anomaly_type,
                "ground truth": ", ".join(_interval(iv) for iv in v.gt_intervals) or "-",
                "predicted": _interval(v.tetg_interval),
                "max P": float(np.nanmax(probs)) if probs is not None else "-",
                "questions": len(qs),
                "total hits": sum(q.chosen == q.answer for q in qs),
                "temporal hits": sum(bool(q.temporally_correct) for q in qs),
            }
        )
    return rows


def _frames_html(v: ReportVideo, frame_px: int) -> str:
    """The strip of sampled frames, upscaled, with the SETS selection drawn on them."""
    if v.frames is None or not len(v.frames):
        return '<p class="muted">no frames</p>'
    figs = []
    for i, frame in enumerate(v.frames):
        rgb = plots.to_uint8_rgb(frame)  # [H, W, 3]
        scale = plots.frame_scale(*rgb.shape[:2], target_px=frame_px)
        mask = None if v.patch_masks is None else np.asarray(v.patch_masks[i], bool)  # [gh, gw]
        img = plots.overlay_patches(rgb, mask, scale)
        cap = f"t = {float(v.frame_times[i]):.2f} s" if v.frame_times is not None else f"frame {i}"
        if v.frame_captions is not None:
            cap = v.frame_captions[i]
        if mask is not None:
            cap += f" · kept {int(mask.sum())}/{mask.size}"
        figs.append(
            f'<figure><img class="frame" src="{plots.png_data_uri(img)}" width="{img.shape[1]}" '
            f'height="{img.shape[0]}" alt="{_e(v.video_id)} {_e(cap)}"><figcaption>{_e(cap)}</figcaption></figure>'
        )
    note = ""
    if v.patch_masks is not None:
        note = '<p class="muted">Patches kept by SETS are outlined in yellow; dropped patches are dimmed.</p>'
    return f'<div class="frames">{"".join(figs)}</div>{note}'


def _letter(i: int) -> str:
    return chr(ord("A") + i) if 0 <= i < 26 else str(i)


def _softmax(scores: Sequence[float]) -> np.ndarray:
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    if not np.isfinite(s).any():
        return np.full(len(s), 1.0 / max(len(s), 1))
    e = np.exp(s - s[np.isfinite(s)].max())
    return e / e.sum()


def _question_html(q: ReportQuestion, idx: int) -> str:
    """Prompt, options with the chosen and correct ones marked, and the two hits."""
    hit = q.chosen == q.answer
    probs = None if q.scores is None else _softmax(q.scores)
    head = "<th></th><th>option</th><th>mark</th>" + (
        "<th>log-lik</th><th>p</th>" if probs is not None else ""
    )
    rows = []
    for i, opt in enumerate(q.options):
        if i == q.chosen and hit:
            cls, mark = "ok", '<span class="good">✓ chosen, correct</span>'
        elif i == q.chosen:
            cls, mark = "wrong", '<span class="bad">✗ chosen, wrong</span>'
        elif i == q.answer:
            cls, mark = "truth", '<span class="good">✓ correct answer</span>'
        else:
            cls, mark = "", ""
        score = ""
        if probs is not None and q.scores is not None:
            pct = 100.0 * float(probs[i])
            score = (
                f'<td class="num">{float(q.scores[i]):.3f}</td>'
                f'<td><span class="bar" style="width:{pct * 0.8:.1f}px"></span> {pct:.1f}%</td>'
            )
        rows.append(
            f'<tr class="{cls}"><td>{_letter(i)}</td><td>{_e(opt)}</td><td>{mark}</td>{score}</tr>'
        )
    yes, no = '<span class="good">✓</span>', '<span class="bad">✗</span>'
    return (
        f'<div class="question"><h4>Question {idx + 1}</h4><p class="prompt">{_e(q.prompt)}</p>'
        f'<table class="options"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"<p>Total hit: {yes if hit else no} · Temporal hit: {yes if q.temporally_correct else no}"
        f" · chosen {_letter(q.chosen)}, answer {_letter(q.answer)}</p></div>"
    )


def _video_html(v: ReportVideo, idx: int, frame_px: int) -> str:
    """The section of one video."""
    parts = [
        f'<section class="video" id="v{idx}"><h2>{_e(v.video_id)} '
        f'<span class="muted">({_e(v.anomaly_type)})</span></h2>',
        f"<p>duration {float(v.duration):.2f} s · ground truth: "
        f"{_e(', '.join(_interval(iv) for iv in v.gt_intervals) or 'none')} · "
        f"predicted: {_e(_interval(v.tetg_interval))} · threshold {float(v.tetg_threshold):g}</p>",
    ]
    has_timeline = v.tetg_probs is not None or v.gt_intervals or v.tetg_interval is not None
    if has_timeline:
        parts.append(
            plots.curve_svg(
                v.tetg_probs,
                v.fps,
                v.duration,
                v.gt_intervals,
                v.tetg_interval,
                v.tetg_threshold,
                v.frame_times,
                label=f"{v.curve_label} of {v.video_id}",
            )
        )
    else:
        parts.append('<p class="muted">no TETG curve</p>')
    parts.append(_frames_html(v, frame_px))
    parts.extend(_question_html(q, i) for i, q in enumerate(v.questions))
    for name, text in v.texts.items():
        parts.append(f"<h4>{_e(name)}</h4><pre>{_e(text)}</pre>")
    parts.append("</section>")
    return "".join(parts)


def render_report(
    title: str,
    metrics: Mapping[str, float],
    videos: Sequence[ReportVideo],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    notes: Sequence[str] = (),
    frame_px: int = 256,
) -> str:
    """The report as an HTML5 string (see :func:`write_report`)."""
    metric_rows = [{"metric": k, "value": v} for k, v in metrics.items()]
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        "<h3>Metrics</h3>"
        + (_table(metric_rows, "metrics") if metric_rows else '<p class="muted">none</p>'),
    ]
    for name, rows in (tables or {}).items():
        parts.append(
            f"<h3>{_e(name)}</h3>" + (_table(rows) if rows else '<p class="muted">empty</p>')
        )
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<h3>Videos ({len(videos)})</h3>")
    if videos:
        parts.append(_table(_summary_rows(videos), "summary"))
        parts.append(
            "<p>"
            + " · ".join(f'<a href="#v{i}">{_e(v.video_id)}</a>' for i, v in enumerate(videos))
            + "</p>"
        )
    else:
        parts.append('<p class="muted">no videos</p>')
    parts.extend(_video_html(v, i, frame_px) for i, v in enumerate(videos))
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def write_report(
    path: str,
    title: str,
    metrics: Mapping[str, float],
    videos: Sequence[ReportVideo],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    notes: Sequence[str] = (),
    *,
    frame_px: int = 256,
) -> str:
    """Writes the self-contained HTML report atomically (tmp file + os.replace); returns path.

    Args:
      path: output file, e.g. ``f"{workdir}/report.html"``; its folder is created if needed.
      title: page title.
      metrics: name -> value, shown with 4 decimals.
      videos: one section per video, in order.
      tables: extra tables, name -> rows (each a dict column -> value).
      notes: free-text lines shown under the tables.
      frame_px: frames are upscaled (nearest neighbour, integer factor) to about this size.
    """
    text = render_report(title, metrics, videos, tables, notes, frame_px)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
