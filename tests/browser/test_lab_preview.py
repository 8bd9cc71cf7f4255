"""The preview widgets in JupyterLab, in its light and its dark theme: open ``preview.ipynb``,
Run All Cells from the Run menu, then Apply. Every text of the widgets must stand out from
the background it is drawn on (WCAG contrast), and Apply must tell the truth about a preview
that went stale and a client that was closed."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    NOTEBOOK,
    PAGE_TIMEOUT_MS,
    apply_after_run_all,
    expect_text,
    keep_screenshots,
    low_contrast,
    require,
    serve_lab,
)

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}


def _settings(folder: Path, theme: str) -> None:
    """JupyterLab's user settings: the theme, no news or update checks, the notebook's kernel
    started without asking, every cell drawn."""
    for plugin, values in {
        "@jupyterlab/apputils-extension/themes": {"theme": theme},
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false", "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker": {
            "windowingMode": "none", "autoStartDefaultKernel": True,
        },
    }.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(params=sorted(THEMES))
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """JupyterLab on a free loopback port with a token, in a folder holding the notebook;
    yields the notebook's URL and the theme's name."""
    require(("jupyterlab", "jupyterlab"))
    theme = THEMES[request.param]
    root = tmp_path / "root"
    root.mkdir()
    shutil.copyfile(NOTEBOOK, root / NOTEBOOK.name)
    settings = tmp_path / "settings"
    _settings(settings, theme)
    with serve_lab(root, tmp_path, settings) as url:
        yield url.format(notebook=NOTEBOOK.name), theme


def token_of(url: str) -> str:
    return url.rsplit("token=", 1)[1]


#: True once the server's kernel for the notebook is idle with the page connected to it.
KERNEL_READY_JS = """async (token) => {
  const answer = await fetch(`/api/kernels?token=${token}`);
  const kernels = await answer.json();
  return kernels.length > 0
    && kernels.every((k) => k.connections > 0 && k.execution_state === "idle");
}"""


def _run_all(page: Any, token: str) -> None:
    """Run > Run All Cells, as a person would, once the kernel is up. A click that lands
    while the page is still attaching the kernel runs nothing (JupyterLab may ask which
    kernel to use instead): then the kernel is accepted and the click repeated, at most
    three times."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_function(KERNEL_READY_JS, arg=token, polling=250, timeout=PAGE_TIMEOUT_MS)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=PAGE_TIMEOUT_MS
    )
    first = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):
        dialog = page.locator(".jp-Dialog button.jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
        try:
            # "[*]:" while it runs, "[1]:" once it ran; "[ ]:" if the click ran nothing.
            first.filter(has_text=re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    pytest.fail("Run All Cells ran nothing three times: the kernel never attached")


def test_run_all_then_apply_in_jupyterlab(lab: tuple[str, str], browser: Any,
                                          tmp_path: Path) -> None:
    url, theme = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    shots = tmp_path / "shots"
    shots.mkdir()
    try:
        page.goto(url, timeout=PAGE_TIMEOUT_MS)
        page.locator(f"body[data-jp-theme-name='{theme}']").wait_for(
            state="attached", timeout=PAGE_TIMEOUT_MS
        )
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        _run_all(page, token_of(url))
        # The last cell's output, not its source: every cell before it has run.
        expect_text(page.locator(".jp-OutputArea-output"), "every cell ran",
                    timeout=PAGE_TIMEOUT_MS)
        apply_after_run_all(page, shots)
        low = low_contrast(page)
        assert not low, f"hard to read in {theme}: {low}"
    finally:
        page.screenshot(path=str(shots / "lab.png"), full_page=True)
        keep_screenshots(shots, theme.replace(" ", "-").lower())
    assert not problems, problems
