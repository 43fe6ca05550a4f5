"""The README is a front door (two screens) and every link in it and in docs/ resolves, anchors included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT

DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors: a heading lower-cased, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in path.read_text().splitlines()
        if line.startswith("#")
    }


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (document.parent / file) if file else document
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in heading_anchors(path)):
            broken.append(target)
    assert not broken


def test_the_readme_fits_on_two_screens() -> None:
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= 150
