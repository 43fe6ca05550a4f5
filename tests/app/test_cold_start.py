"""The first page draws fast: what the keyword Search page and Browse import loads neither torch,
transformers, scikit-learn nor pandas (seconds and hundreds of MB before the first draw)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "sklearn", "pandas", "onnxruntime")


def test_the_first_pages_import_no_model_library() -> None:
    script = f"""
import ast, importlib, sys
from pathlib import Path
for page in ("pages/search.py", "pages/browse.py", "streamlit_app.py"):
    tree = ast.parse(Path(page).read_text())
    for node in tree.body:  # the page's own top-level imports, as `streamlit run` executes them
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = importlib.import_module(node.module)
            for alias in node.names:
                getattr(module, alias.name, None) or importlib.import_module(f"{{node.module}}.{{alias.name}}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
print(sorted(name for name in {HEAVY!r} if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
