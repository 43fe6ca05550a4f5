"""`python -m core import` and `search`: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import PostgresServer
from cli.common import progress_unit
from cli.main import main
from core.settings import PROJECT_ROOT
from tests.helpers import image_row, photo, product_row, write_catalogue


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return write_catalogue(
        tmp_path / "source",
        [
            product_row("a", product_name="Oak dining table | Gumtree", price="£120.00"),
            product_row("b", product_name="Pine table | Gumtree", price="£30.00", category="Home & Garden / Kitchen"),
            product_row("c", price="gratis"),
        ],
        [image_row("ia", "a")],
        photos={"ia": photo()},
    )


def test_import_then_search_json(app_home: Path, catalogue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(catalogue), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "products: 2 in the catalogue" in out
    assert "skipped Products.csv:4 c: bad price" in out
    assert (app_home / "catalogue.db").is_file()  # the default database lives under the home folder

    assert main(["search", "table", "--json", "--max-price", "100"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"mode", "hits", "took_ms"} and payload["mode"] == "keyword"
    score = payload["hits"][0]["score"]
    assert payload["hits"] == [
        {
            "id": "b",
            "name": "Pine table",
            "category": "Home & Garden / Kitchen",
            "price": 30.0,
            "score": score,
            "why": f"keyword score {score:.2f}",
        }
    ]
    assert payload["hits"][0]["score"] >= 0 and payload["took_ms"] >= 0  # bm25 of a word in every row is ~0

    assert main(["search", "table", "--category", "Home & Garden", "--limit", "1"]) == 0
    text_out = capsys.readouterr().out
    assert "1 keyword hits" in text_out


def test_import_and_search_on_postgresql(
    app_home: Path, catalogue: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_server.new_database())
    assert main(["import", str(catalogue), "--quiet"]) == 0
    assert "products: 2 in the catalogue" in capsys.readouterr().out
    assert main(["search", "TABLES", "--json", "--category", "home & garden"]) == 0  # stemmed, any letter case
    payload = json.loads(capsys.readouterr().out)
    assert sorted(hit["id"] for hit in payload["hits"]) == ["a", "b"] and payload["hits"][0]["score"] > 0
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["database"]["backend"] == "postgresql"


def test_import_of_a_missing_folder_fails_in_one_line(app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(app_home / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "is not a folder" in err


def test_bad_arguments_exit_with_usage(app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "x", "--min-price", "cheap"])
    assert exit_info.value.code == 2
    assert "not a price" in capsys.readouterr().err


def test_module_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "core", "import", str(tmp_path / "absent")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={"MARKETPLACE_HOME": str(tmp_path), "PATH": ""},
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "is not a folder" in result.stderr


def test_marketplace_command_is_the_module_entry_point(tmp_path: Path) -> None:
    """requirements.txt installs the project: its console script runs the same commands from any folder."""
    script = Path(sys.executable).parent / "marketplace"
    assert script.is_file(), "the project is not installed: pip install -r requirements.txt"
    environment = {"MARKETPLACE_HOME": str(tmp_path), "PATH": ""}
    by_script = subprocess.run(
        [str(script), "import", str(tmp_path / "absent")], cwd=tmp_path, capture_output=True, text=True, env=environment, timeout=120
    )
    by_module = subprocess.run(
        [sys.executable, "-m", "core", "import", str(tmp_path / "absent")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert (by_script.returncode, by_script.stderr) == (by_module.returncode, by_module.stderr) == (1, by_module.stderr)
    assert "is not a folder" in by_script.stderr


def test_info_json_has_what_a_bug_report_needs(app_home: Path, catalogue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from core.runtime.compute import cpu_info, precision

    assert main(["import", str(catalogue), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {"cpu", "precision", "threads", "torch", "image_engine", "text_engine", "database", "models", "catalogue", "caches"} <= set(
        facts
    )
    assert facts["text_engine"]["variable"] == "MARKETPLACE_TEXT_ENGINE" and facts["text_engine"]["requested"] == "auto"
    assert facts["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and facts["cpu"]["bf16"] == cpu_info().bf16
    assert facts["precision"] == str(precision()) and facts["threads"]["intra_op"] == torch.get_num_threads()
    assert facts["torch"] == torch.__version__ and facts["database"]["backend"] == "sqlite"
    assert facts["catalogue"] == {"products": 2, "images": 1}
    assert facts["caches"]["embeddings"] == {"texts_done": 0, "texts_total": 2, "photos_done": 0, "photos_total": 1}
    assert set(facts["models"]["kinds"]) == {"image", "text", "combined"}
    assert all(model["checksum_ok"] for model in facts["models"]["kinds"].values())


def test_info_hides_the_database_password() -> None:
    from db.session import safe_database_url

    assert (
        safe_database_url("postgresql+psycopg://ana:s3cret@db.example:5432/catalogue")
        == "postgresql+psycopg://ana:***@db.example:5432/catalogue"
    )


def test_import_embed_fills_the_embedding_cache(app_home: Path, catalogue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(catalogue), "--quiet", "--embed"]) == 0
    assert "2 of 2 texts and 1 of 1 photos embedded (100%)" in capsys.readouterr().out
    assert main(["info", "--json"]) == 0
    embeddings = json.loads(capsys.readouterr().out)["caches"]["embeddings"]
    assert embeddings["texts_done"] == 2 and embeddings["photos_done"] == 1


def test_progress_bars_name_what_they_count(app_home: Path, catalogue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(catalogue), "--embed"]) == 0
    bars = capsys.readouterr().err

    def counts(unit: str) -> bool:  # tqdm shows "12.3 texts/s", or "1.20s/ texts" when slower than one a second
        return f" {unit}/s" in bars or f"s/ {unit}" in bars

    assert "2/2 [" in bars and counts("rows") and counts("texts") and counts("photos")
    assert [progress_unit(stage) for stage in ("text features", "photo maps", "text fold models", "unknown")] == [
        " texts",
        " photos",
        " models",
        " items",
    ]
