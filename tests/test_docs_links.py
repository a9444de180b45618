"""The README's and docs' relative links point at files that exist (the README keeps the
current tables and sends the dated measurements to ``docs/``; a moved or renamed page must not
leave a dead link behind)."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "docs/benchmarks.md", "docs/results/vagpt.md", "docs/results/tvau.md"]
#: ``[text](target)`` with a relative target (no scheme, no in-page anchor).
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def links(page: str) -> list[str]:
    """The relative link targets of ``page`` (anchors dropped)."""
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return [m.group(1).split("#")[0] for m in LINK.finditer(f.read())]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    targets = links(page)
    base = os.path.dirname(os.path.join(ROOT, page))
    missing = [t for t in targets if not os.path.exists(os.path.normpath(os.path.join(base, t)))]
    assert not missing, f"{page}: dead links {missing}"


def test_readme_sends_the_logs_to_docs():
    targets = set(links("README.md"))
    assert {"docs/results/vagpt.md", "docs/results/tvau.md", "docs/benchmarks.md"} <= targets
