"""A background run in JupyterLab (Debian's headless Chromium): its monitor keeps advancing
after another cell ran, driven by the browser's ticks alone, and its Cancel button stops the
run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .conftest import PAGE_TIMEOUT_MS, keep_screenshots, require, serve_lab
from .test_lab_preview import KERNEL_READY_JS, THEMES, _settings, token_of

ROOT = Path(__file__).resolve().parents[2]

CELLS = [
    "import time\n"
    "import recocora\n"
    "from recocora.sandbox import Sandbox\n"
    "from tests.backfill.conftest import accounts\n"
    "sb = Sandbox(seed='none', cora_window=0.5).start()\n"
    "cora = recocora.CoraClient(sb.cora_key, sb.cora_base_url, min_interval=0.5)\n"
    "cora.MAX_ROWS = 2\n"
    "run = accounts(200).cora.upsert(client=cora, background=True)\n"
    "run",
    "before = run.rows_done\n"
    "time.sleep(3)\n"
    "print(f'another cell ran while {run.rows_done - before} rows were sent')",
]


@pytest.fixture
def lab_url(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on a free loopback port with a token, in a folder holding the notebook."""
    require(("jupyterlab", "jupyterlab"))
    root = tmp_path / "root"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbformat.write(nb, root / "run.ipynb")
    settings = tmp_path / "settings"
    _settings(settings, THEMES["light"])
    # The kernel imports the tests' frames; its runs go to a cache folder of the test's own.
    with serve_lab(root, tmp_path, settings, RECOCORA_CACHE_DIR=str(tmp_path / "cache"),
                   PYTHONPATH=str(ROOT)) as url:
        yield url.format(notebook="run.ipynb")


def _run_first_cell(page: Any, token: str) -> None:
    """Shift+Enter on the first cell once the kernel is attached; a press that lands while
    the page is still attaching it runs nothing, so it is repeated (at most three times)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_function(KERNEL_READY_JS, arg=token, polling=250, timeout=PAGE_TIMEOUT_MS)
    prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.keyboard.press("Shift+Enter")
        try:
            prompt.filter(has_text=re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    pytest.fail("Shift+Enter ran nothing three times: the kernel never attached")


def _rows(monitor: Any) -> int:
    text = monitor.locator(".recocora-rows").inner_text()
    match = re.match(r"([\d,]+) /", text)
    assert match, text
    return int(match.group(1).replace(",", ""))


def test_monitor_advances_after_another_cell_and_cancel_stops_the_run(
    lab_url: str, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        page.goto(lab_url, timeout=PAGE_TIMEOUT_MS)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        _run_first_cell(page, token_of(lab_url))  # the background run and its monitor
        monitor = page.locator(".recocora-run")
        page.locator(".recocora-run-summary[data-state='running']").wait_for(
            timeout=PAGE_TIMEOUT_MS)
        page.keyboard.press("Shift+Enter")  # another cell, while the run goes on
        page.get_by_text("another cell ran while").wait_for(timeout=PAGE_TIMEOUT_MS)
        seen = _rows(monitor)
        page.wait_for_function(
            """(seen) => {
              const el = document.querySelector('.recocora-run .recocora-rows');
              return el && parseInt(el.textContent.replace(/,/g, '')) > seen;
            }""", arg=seen, timeout=PAGE_TIMEOUT_MS)
        monitor.locator("button:has-text('Cancel')").click()
        page.locator(".recocora-run-summary[data-state='cancelled']").wait_for(
            timeout=PAGE_TIMEOUT_MS)
        assert _rows(monitor) < 200
        assert monitor.locator("button").first.is_disabled()
    finally:
        page.screenshot(path=str(shots / "lab-run.png"), full_page=True)
        keep_screenshots(shots, "run")
    assert not problems, problems
