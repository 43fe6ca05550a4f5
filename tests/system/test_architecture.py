"""The layers only look down (pages -> ui / cli -> api -> services -> db -> core), as the import-linter
contracts in pyproject.toml say; a wrong import in any layer fails this test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "db", "services", "ui", "cli", "api", "pages")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("pages/browse.py", "from db import queries", "Pages reach the catalogue through ui and services, never db"),
        ("core/data/cleaning.py", "import db.queries", "Layers only look down"),
        ("core/data/cleaning.py", "import streamlit", "core has no Streamlit and no SQLAlchemy"),
        ("db/queries.py", "from core.encoders import features", "db runs no model: no torch, transformers or ONNX Runtime"),
        ("services/search.py", "import ui.data", "Layers only look down"),
        ("services/search.py", "import api.app", "Layers only look down"),
        ("api/catalogue_routes.py", "from db import queries", "The API reaches data through services only"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path: Path, module: str, wrong_import: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # deliberately wrong\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout[-3000:]
