"""App benchmark: cold start to the first rendered page, and the server's peak memory once every
page has been opened with all models loaded, each next to the same figure for a one-line Streamlit
app started the same way (the reference: what Streamlit itself costs).

    python -m benchmarks.bench_app [--runs 3]

Drives Debian's headless Chromium through Playwright, on the catalogue of the current settings
(import it first). Cold start: `streamlit run` launched until the Search page has drawn its prompt
in the browser. Memory: the server process's peak resident size (VmHWM) after Search (a hybrid search), Browse,
Classify (a photo and a title classified), Dashboard, Evaluation, Training, Review and Import have rendered.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import print_table, serve_app
from core.settings import get_settings

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 600_000
PAGES = {  # sidebar title -> text shown once the page has rendered in full
    "Browse": "products · page 1 of",
    "Classify": "Upload a photo or type a title",
    "Dashboard": "accuracy per category",
    "Evaluation": "Click a cell to list its items",
    "Training": "Active models for Classify",
    "Review": "Your name (recorded with every change)",
    "Import": "Catalogue folder",
}
SEARCH_QUERY = "something to sit on in the garden"
CLASSIFY_TITLE = "Oak dining table with 4 chairs"
REFERENCE_APP = 'import streamlit as st\nst.title("Hello")\n'


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def _cold_start(browser, home: Path, database_url: str, script: Path | None, marker: str, log: Path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Seconds from launch to `marker` visible in the browser, and the server's peak memory then."""
    started = time.perf_counter()
    kwargs = {"script": script} if script else {}
    with serve_app(home, database_url, log, **kwargs) as server:
        tab = browser.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.goto(server.url)
        tab.get_by_text(marker).first.wait_for()
        seconds = time.perf_counter() - started
        memory = _peak_rss_mb(server.pid)
        tab.close()
    return seconds, memory


def _all_pages_peak(browser, home: Path, database_url: str, photo: Path | None, log: Path) -> float:  # type: ignore[no-untyped-def]
    with serve_app(home, database_url, log) as server:
        tab = browser.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.goto(server.url)
        tab.get_by_text("Type words to search").first.wait_for()
        tab.get_by_text("Hybrid (keyword + meaning)").click()
        tab.get_by_label("Search the catalogue").fill(SEARCH_QUERY)
        tab.get_by_label("Search the catalogue").press("Enter")
        tab.get_by_text("query embedded in").first.wait_for()
        for title, marker in PAGES.items():
            tab.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
            tab.get_by_text(marker).first.wait_for()
            if title == "Classify":
                tab.get_by_label("Title").fill(CLASSIFY_TITLE)
                tab.get_by_label("Title").press("Enter")
                if photo is not None:
                    tab.locator("input[type=file]").first.set_input_files(str(photo))
                tab.get_by_text("Predicted category").wait_for()
        peak = _peak_rss_mb(server.pid)
        tab.close()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3, help="cold starts of each app (median)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    settings = get_settings()
    home, database_url = settings.data_dir, settings.database_url
    photo = next(settings.media_dir.rglob("*.jpg"), None)
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        reference_script = Path(folder) / "hello.py"
        reference_script.write_text(REFERENCE_APP)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        app_starts, reference_starts, reference_memory = [], [], []
        for run in range(args.runs):
            seconds, _ = _cold_start(browser, home, database_url, None, "Type words to search", Path(folder) / f"app{run}.log")
            app_starts.append(seconds)
            seconds, memory = _cold_start(browser, home, database_url, reference_script, "Hello", Path(folder) / f"ref{run}.log")
            reference_starts.append(seconds)
            reference_memory.append(memory)
        app_peak = _all_pages_peak(browser, home, database_url, photo, Path(folder) / "pages.log")
        browser.close()
    print_table(
        [
            (f"cold start to the first page (Search), median of {args.runs}", f"{statistics.median(app_starts):.1f} s"),
            ("reference: one-line Streamlit app, same way", f"{statistics.median(reference_starts):.1f} s"),
            ("app server peak memory, every page opened, all models loaded", f"{app_peak:,.0f} MB"),
            ("reference: one-line Streamlit app server", f"{statistics.median(reference_memory):,.0f} MB"),
        ]
    )


if __name__ == "__main__":
    main()
