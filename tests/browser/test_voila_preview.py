"""The preview widgets in a real browser, as a dashboard: Voilà runs every cell of
``preview.ipynb`` (the preview, then a cell that writes some of its rows, then a preview
whose client is closed), and Apply must tell the truth about each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import PAGE_TIMEOUT_MS, apply_after_run_all, keep_screenshots, low_contrast


def test_apply_after_every_cell_ran_in_voila(voila_url: str, browser: Any,
                                            tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(voila_url, timeout=PAGE_TIMEOUT_MS)
        apply_after_run_all(page, tmp_path)
        assert not low_contrast(page), low_contrast(page)
    finally:
        page.screenshot(path=str(tmp_path / "voila.png"), full_page=True)
        keep_screenshots(tmp_path, "voila")
    assert not problems, problems
