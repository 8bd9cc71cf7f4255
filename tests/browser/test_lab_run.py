"""A background run in JupyterLab (Debian's headless Chromium): its monitor keeps advancing
after another cell ran, driven by the browser's ticks alone, and its Cancel button stops the
run."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .test_voila_preview import CHROMIUM, CHROMIUM_ARGS, _free_port, _stop, _wait_listening

PAGE_TIMEOUT_MS = 90_000
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
    for module in ("playwright.sync_api", "jupyterlab"):
        __import__(module)  # a missing package fails here, naming it
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(nb, root / "run.ipynb")
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(
        '{"windowingMode": "none", "autoStartDefaultKernel": true}')
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "JUPYTER_PLATFORM_DIRS": "1", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "RECOCORA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--allow-root", "--LabApp.extension_manager=readonly"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}/lab/tree/run.ipynb?token={token}"
    finally:
        _stop(proc)


#: True once the notebook's kernel is idle with the page connected to it.
KERNEL_READY_JS = """async (token) => {
  const kernels = await (await fetch(`/api/kernels?token=${token}`)).json();
  return kernels.length > 0
    && kernels.every((k) => k.connections > 0 && k.execution_state === "idle");
}"""


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
    lab_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        try:
            page.goto(lab_url, timeout=PAGE_TIMEOUT_MS)
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
                timeout=PAGE_TIMEOUT_MS)
            _run_first_cell(page, lab_url.rsplit("token=", 1)[1])  # the run and its monitor
            monitor = page.locator(".recocora-run")
            monitor.wait_for(timeout=PAGE_TIMEOUT_MS)
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
            page.screenshot(path=str(tmp_path / "lab-run.png"), full_page=True)
            browser.close()
    assert not problems, problems
