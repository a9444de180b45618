"""The HTML report: structure, embedded PNGs, escaping, atomic write, and a headless-Chromium render."""

from __future__ import annotations

import base64
import html.parser
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from vau_jax.report import ReportQuestion, ReportVideo, plots, write_report

N_FRAMES, SIZE, GRID = 4, 64, 8
EVIL = '<script>alert("x")</script> & "quotes"'


class _Collector(html.parser.HTMLParser):
    """Collects start tags (name, attrs) and text data of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def count(self, name: str) -> int:
        return sum(t == name for t, _ in self.tags)


def _parse(path: str) -> _Collector:
    with open(path, encoding="utf-8") as f:
        src = f.read()
    p = _Collector()
    p.feed(src)
    p.close()
    return p


def _videos(rng: np.random.Generator) -> list[ReportVideo]:
    """Two synthetic videos: an anomalous one with every piece, a normal one without masks."""
    q1 = ReportQuestion(
        prompt=f"When does the anomaly happen? {EVIL}",
        options=["2.0-5.0 s", "0.0-1.0 s", "6.0-8.0 s", "none"],
        chosen=0,
        answer=0,
        temporally_correct=True,
        scores=[-1.0, -3.0, -4.5, -2.0],
    )
    q2 = ReportQuestion(
        prompt="What type?",
        options=["Fighting", "Arson"],
        chosen=1,
        answer=0,
        temporally_correct=False,
    )
    probs = np.clip(np.sin(np.linspace(0, 3, 80)) + 0.1 * rng.standard_normal(80), 0, 1)
    frames = rng.integers(0, 256, (N_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    masks = rng.random((N_FRAMES, GRID, GRID)) < 0.4
    v1 = ReportVideo(
        video_id="Fighting_001<x>",
        anomaly_type="Fighting",
        fps=10.0,
        duration=8.0,
        gt_intervals=[(2.0, 5.0)],
        tetg_probs=probs,
        tetg_threshold=0.6,
        tetg_interval=(2.2, 4.9),
        frames=frames,
        frame_times=[0.5, 2.5, 4.5, 6.5],
        patch_masks=masks,
        questions=[q1, q2],
        texts={"TETG prompt": f"Find the anomaly {EVIL}", "generated answer": "A fight at 2 s."},
    )
    v2 = ReportVideo(
        video_id="Normal_002",
        anomaly_type="normal",
        fps=5.0,
        duration=4.0,
        gt_intervals=[],
        tetg_probs=rng.random(20) * 0.3,
        frames=rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8),
    )
    return [v1, v2]


@pytest.fixture()
def report(tmp_path) -> str:
    rng = np.random.default_rng(0)
    return write_report(
        str(tmp_path / "out" / "report.html"),
        "VA-GPT <eval>",
        {"auc": 0.87654321, "total_acc": 0.5, "temporal_acc": 0.25},
        _videos(rng),
        tables={
            "per type": [{"type": "Fighting", "acc": 0.5, "n": 2}, {"type": "normal", "acc": 1.0}]
        },
        notes=["synthetic data", EVIL],
    )


def test_images_are_upscaled_pngs_with_overlay(report):
    p = _parse(report)
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == N_FRAMES + 2
    scale = plots.frame_scale(SIZE, SIZE)
    assert scale == 4
    for a in imgs:
        src = a["src"]
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert im.format == "PNG" and im.size == (SIZE * scale, SIZE * scale)
        assert (a["width"], a["height"]) == (str(SIZE * scale), str(SIZE * scale))
    # The first video's frames carry the SETS overlay: kept-patch outlines in the outline colour.
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(imgs[0]["src"].split(",", 1)[1]))))
    assert (first == plots.KEPT_OUTLINE).all(-1).any()


def test_overlay_dims_dropped_and_outlines_kept():
    frame = np.full((16, 16, 3), 200, np.uint8)
    mask = np.array([[True, False], [False, False]])
    out = plots.overlay_patches(frame, mask, scale=2)  # [32, 32, 3], patches of 16x16
    assert out.shape == (32, 32, 3)
    assert (out[16:, 16:] == int(200 * plots.DIM)).all()  # dropped patch dimmed
    assert (out[0, :16] == plots.KEPT_OUTLINE).all() and (out[15, :16] == plots.KEPT_OUTLINE).all()
    assert (out[5, 5] == 200).all()  # kept patch interior untouched
    assert (out[0, 16] != plots.KEPT_OUTLINE).any()


def test_svg_curves_tables_and_text(report):
    p = _parse(report)
    with open(report, encoding="utf-8") as f:
        src = f.read()
    assert src.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in src
    svgs = re.findall(r"<svg\b.*?</svg>", src, flags=re.S)
    assert len(svgs) == 2 and all('class="prob"' in s for s in svgs)
    assert 'class="gt"' in svgs[0] and 'class="pred"' in svgs[0] and 'class="threshold"' in svgs[0]
    assert 'class="gt"' not in svgs[1]
    # metrics (4 decimals), extra table, overview + per-question option tables
    text = "".join(p.text)
    for s in ("0.8765", "0.5000", "0.2500", "per type", "Fighting", "synthetic data"):
        assert s in text
    assert p.count("table") == 1 + 1 + 1 + 2
    # escaping: the raw tag never appears; it does appear escaped (in prompt, texts, notes)
    assert "<script>alert" not in src
    assert (
        src.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;") == 3
    )
    assert EVIL in text  # the parser un-escapes it back to the original text
    assert "VA-GPT &lt;eval&gt;" in src and "Fighting_001&lt;x&gt;" in src
    assert p.count("script") == 1  # only the report's own render-check script
    assert "✓ chosen, correct" in text and "✗ chosen, wrong" in text and "✓ correct answer" in text
    assert "generated answer" in text and "A fight at 2 s." in text


def test_write_is_atomic_and_handles_missing_pieces(tmp_path):
    path = str(tmp_path / "r.html")
    bare = ReportVideo("v", "normal", fps=1.0, duration=0.0, gt_intervals=[], tetg_probs=None)
    only_iv = ReportVideo("w", "Arson", 2.0, 3.0, [(1.0, 9.0)], None, tetg_interval=(0.5, 1.5))
    write_report(path, "t", {"x": float("nan")}, [bare, only_iv], tables={"empty": []})
    write_report(path, "t", {}, [])  # overwrite: zero videos, no metrics
    assert os.listdir(tmp_path) == ["r.html"]
    p = _parse(path)
    assert p.count("img") == 0 and p.count("svg") == 0
    with pytest.raises(ValueError, match="patch_masks"):
        ReportVideo(
            "v",
            "n",
            1.0,
            1.0,
            [],
            None,
            frames=np.zeros((2, 8, 8, 3), np.uint8),
            patch_masks=np.zeros((3, 2, 2), bool),
        )
    with pytest.raises(ValueError, match="answer"):
        ReportQuestion("q", ["a"], chosen=0, answer=3, temporally_correct=False)


# --- headless Chromium --------------------------------------------------------------------

_CONSOLE = re.compile(r":CONSOLE[(:]|Uncaught")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no headless Chromium (chromium / chromium-browser / google-chrome) on PATH; "
        "install it (apt-get install chromium) to run the rendering test"
    )


def _render(path: str, tmp_path) -> tuple[dict[str, str], list[str]]:
    """Loads ``path`` in headless Chromium -> (attributes of <body> after load, console lines)."""
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
        "--virtual-time-budget=2000", "--enable-logging=stderr", "--v=0", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chrome-profile'}", f"file://{os.path.abspath(path)}",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    p = _Collector()
    p.feed(res.stdout)
    body = next((a for t, a in p.tags if t == "body"), {})
    return {k: v or "" for k, v in body.items()}, [
        ln for ln in res.stderr.splitlines() if _CONSOLE.search(ln)
    ]


def test_chromium_renders_images_and_tables(report, tmp_path):
    body, console = _render(report, tmp_path)
    static = _parse(report)
    assert console == []
    assert body.get("data-images-total") == str(N_FRAMES + 2), body
    assert body.get("data-images-loaded") == body["data-images-total"]
    assert body.get("data-tables") == str(static.count("table"))
    assert body.get("data-svgs") == "2"


def test_chromium_check_catches_errors(report, tmp_path):
    """The check above can fail: a throwing script and a broken image are both caught."""
    with open(report, encoding="utf-8") as f:
        src = f.read()
    bad = src.replace(
        "</body>",
        '<img src="data:image/png;base64,AAAA">'
        '<script>throw new Error("injected failure");</script></body>',
    )
    bad_path = str(tmp_path / "bad.html")
    with open(bad_path, "w", encoding="utf-8") as f:
        f.write(bad)
    body, console = _render(bad_path, tmp_path)
    assert any("injected failure" in ln for ln in console), console
    assert int(body["data-images-loaded"]) == int(body["data-images-total"]) - 1
