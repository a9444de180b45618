"""Self-contained HTML report of an evaluation: metrics, curves (SVG) and frames (PNG)."""

from vau_jax.report.html import ReportQuestion, ReportVideo, render_report, write_report

__all__ = ["ReportQuestion", "ReportVideo", "render_report", "write_report"]
