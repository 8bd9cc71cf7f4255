"""The preview widget in a real browser: Voilà serves ``preview.ipynb`` on loopback, headless
Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright clicks Apply, then the
overwrite confirmation, and the result summary appears.

Nothing here is skipped: a missing browser or package fails with what to install.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).with_name("preview.ipynb")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Voilà runs the notebook (kernel start, imports, sandbox) before the page shows widgets.
PAGE_TIMEOUT_MS = 45_000


def _require() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser with "
            "`apt-get update && apt-get install -y --no-install-recommends chromium` "
            "(.ci/run does this).",
            pytrace=False,
        )
    for module, package in (("playwright.sync_api", "playwright"), ("voila", "voila")):
        try:
            __import__(module)
        except ImportError as exc:
            pytest.fail(
                f"{package} is not installed ({exc}): run `.venv/bin/pip install -e '.[test]'`.",
                pytrace=False,
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Voilà exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"Voilà did not listen on 127.0.0.1:{port} within 30 s:\n"
                f"{log.read_text()[-3000:]}")


@pytest.fixture
def voila_url(tmp_path: Path) -> Iterator[str]:
    _require()
    port = _free_port()
    token = secrets.token_hex(16)
    log = tmp_path / "voila.log"
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        # The kernel must be this interpreter (the one with recocora installed).
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        PYTHONUNBUFFERED="1",
    )
    # The notebook's own sandbox needs no credentials; none from the environment leak in.
    for name in ("CORA_API_KEY", "CORA_BASE_URL", "RECOTAP_API_KEY", "RECOTAP_BASE_URL"):
        env.pop(name, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser",
             f"--port={port}", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0",
             f"--Voila.token={token}", "--show_tracebacks=True"],
            cwd=NOTEBOOK.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}/?token={token}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        # Its own session: the kernel it started goes with it.
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


def test_preview_apply_confirm_and_result_in_chromium(voila_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shot = tmp_path / "preview.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        try:
            page.goto(voila_url, timeout=PAGE_TIMEOUT_MS)
            apply = page.locator("button.recocora-apply")
            apply.wait_for(timeout=PAGE_TIMEOUT_MS)
            assert apply.inner_text().strip() == "Apply"
            _expect_text(page, "2 updated")
            _expect_text(page, "1 invalid")
            _expect_text(page, "Field changes on existing accounts")
            apply.click()
            confirm = page.locator("button.recocora-confirm")
            confirm.wait_for(timeout=10_000)
            assert apply.is_disabled()
            _expect_text(page, "2 existing accounts would be updated")
            confirm.click()
            summary = page.locator(".recocora-result .recocora-summary")
            summary.wait_for(timeout=30_000)
            text = summary.inner_text()
            for expected in ("Cora upsert", "2 created", "2 updated", "1 unchanged",
                             "1 invalid"):
                assert expected in text, text
            page.locator("button.recocora-apply:has-text('Applied')").wait_for(timeout=10_000)
            assert apply.is_disabled()
        finally:
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0
    assert not problems, problems
    keep = os.environ.get("RECOCORA_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def _expect_text(page: Any, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=10_000)
