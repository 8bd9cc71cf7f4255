"""Browser tests: a notebook server (Voilà or JupyterLab) on a free loopback port with a
token, in its own session so its kernels stop with it, and Debian's headless Chromium
(``/usr/bin/chromium``) driven by Playwright.

Nothing here is skipped: a missing browser or package fails with what to install. Set
``RECOCORA_SCREENSHOTS`` to a folder to keep each test's screenshots there.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).with_name("preview.ipynb")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# A server runs the notebook (kernel start, imports, sandbox) before the page shows widgets.
PAGE_TIMEOUT_MS = 60_000
LISTEN_TIMEOUT_S = 60


def require(*modules: tuple[str, str]) -> None:
    """Fail (never skip) when the browser or a package is missing, saying how to install."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser with "
            "`apt-get update && apt-get install -y --no-install-recommends chromium` "
            "(.ci/run does this).",
            pytrace=False,
        )
    for module, package in (("playwright.sync_api", "playwright"), *modules):
        try:
            __import__(module)
        except ImportError as exc:
            pytest.fail(
                f"{package} is not installed ({exc}): run `.venv/bin/pip install -e '.[test]'`.",
                pytrace=False,
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a notebook server: its kernels run this interpreter (the one with
    recocora installed), its Jupyter folders are under ``home``, and no API credentials from
    the environment leak in (the notebook's own sandbox needs none)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    for name in ("CORA_API_KEY", "CORA_BASE_URL", "RECOTAP_API_KEY", "RECOTAP_BASE_URL"):
        env.pop(name, None)
    return env


@contextmanager
def serve(args: list[str], *, cwd: Path, env: dict[str, str], port: int,
          log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python args...`` until the caller is done, once it listens on ``port``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, proc, log)
        yield proc
    finally:
        _stop(proc)


@contextmanager
def serve_lab(root: Path, tmp_path: Path, settings: Path, **env: str) -> Iterator[str]:
    """JupyterLab serving ``root`` on a free loopback port with a token and the user settings
    in ``settings``; yields a notebook URL template to fill with ``.format(notebook=NAME)``."""
    port, token = free_port(), secrets.token_hex(16)
    lab_env = server_env(tmp_path, JUPYTERLAB_SETTINGS_DIR=str(settings),
                         JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), **env)
    with serve(
        ["-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         # Containers run tests as root; nothing is looked up on a package index.
         "--allow-root", "--LabApp.extension_manager=readonly"],
        cwd=root, env=lab_env, port=port, log=tmp_path / "lab.log",
    ):
        yield f"http://127.0.0.1:{port}/lab/tree/{{notebook}}?token={token}"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"the server did not listen on 127.0.0.1:{port} within {LISTEN_TIMEOUT_S} s:\n"
                f"{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        # Its own session: the kernels it started go with it.
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


@pytest.fixture
def voila_url(tmp_path: Path) -> Iterator[str]:
    require(("voila", "voila"))
    port = free_port()
    token = secrets.token_hex(16)
    with serve(
        ["-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", f"--Voila.token={token}",
         "--show_tracebacks=True"],
        cwd=NOTEBOOK.parent, env=server_env(tmp_path), port=port, log=tmp_path / "voila.log",
    ):
        yield f"http://127.0.0.1:{port}/?token={token}"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium; the pages a test opens are closed with it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def keep_screenshots(folder: Path, prefix: str) -> None:
    """Copy the test's screenshots to ``$RECOCORA_SCREENSHOTS`` when it is set."""
    keep = os.environ.get("RECOCORA_SCREENSHOTS")
    if not keep:
        return
    Path(keep).mkdir(parents=True, exist_ok=True)
    for shot in sorted(folder.glob("*.png")):
        shutil.copyfile(shot, Path(keep) / f"{prefix}-{shot.name}")


def expect_text(scope: Any, text: str, timeout: int = 15_000) -> None:
    scope.get_by_text(text, exact=False).first.wait_for(timeout=timeout)


#: For every visible text in the page's preview widgets: its colour against the background
#: it is drawn on (each see-through layer blended over the one below), as WCAG measures
#: contrast. Returns the texts below ``min`` with their ratio.
LOW_CONTRAST_JS = """
([selector, min]) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) => {
    const a = top[3] + below[3] * (1 - top[3]);
    if (a === 0) return [0, 0, 0, 0];
    const mix = (i) => (top[i] * top[3] + below[i] * below[3] * (1 - top[3])) / a;
    return [mix(0), mix(1), mix(2), a];
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      layers.push(parse(getComputedStyle(e).backgroundColor));
    }
    let bg = [255, 255, 255, 1];
    for (const layer of layers.reverse()) bg = over(layer, bg);
    return bg;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const low = [];
  for (const root of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const el = node.parentElement;
      const text = node.textContent.trim();
      if (!text || !el.offsetParent || el.closest("button, select, input")) continue;
      const bg = background(el);
      const fg = over(parse(getComputedStyle(el).color), bg);
      const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      if (ratio < min) low.push(`${text.slice(0, 60)} (${ratio.toFixed(2)})`);
    }
  }
  return low;
}
"""


def low_contrast(page: Any, selector: str = ".recocora-preview", minimum: float = 4.5) -> list[str]:
    """Texts in the preview widgets that do not stand out from their background."""
    found: list[str] = page.evaluate(LOW_CONTRAST_JS, [selector, minimum])
    return found


def apply_after_run_all(page: Any, shots: Path) -> None:
    """With every cell of ``preview.ipynb`` run, Apply on its first preview must say that the
    preview went stale, with the new counts, before anything is written; after Confirm the
    header says what was written. Apply on the last preview (its client closed) must say so
    at once. Screenshots of each step go to ``shots``."""
    first, late = page.locator(".recocora-preview").nth(0), page.locator(".recocora-preview").nth(1)
    apply = first.locator("button.recocora-apply")
    apply.wait_for(timeout=PAGE_TIMEOUT_MS)
    assert apply.inner_text().strip() == "Apply"
    for text in ("2 created", "2 updated", "1 unchanged", "1 invalid",
                 "nothing has been written yet", "Field changes on existing accounts"):
        expect_text(first, text)
    first.screenshot(path=str(shots / "1-preview.png"))

    apply.click()
    confirm = first.locator("button.recocora-confirm")
    confirm.wait_for(timeout=30_000)
    assert apply.is_disabled()
    expect_text(first, "The preview is out of date: 3 rows changed since it was worked out")
    expect_text(first, "Now: 1 created, 4 unchanged, 1 invalid (the preview said 2 created, "
                       "2 updated, 1 unchanged, 1 invalid)")
    expect_text(first, "What would happen now")
    first.screenshot(path=str(shots / "2-stale.png"))

    confirm.click()
    summary = first.locator(".recocora-result .recocora-summary")
    summary.wait_for(timeout=30_000)
    text = summary.inner_text()
    for expected in ("Cora upsert", "1 created", "4 unchanged", "1 invalid"):
        assert expected in text, text
    first.locator("button.recocora-apply:has-text('Applied')").wait_for(timeout=10_000)
    assert apply.is_disabled()
    header = first.locator(".recocora-header").inner_text()
    assert header == "Applied: 1 row written to Cora (1 created); 4 unchanged, 1 invalid.", header
    first.screenshot(path=str(shots / "3-applied.png"))

    late.locator("button.recocora-apply").click()
    expect_text(late, "The CoraClient this preview uses was closed")
    late.locator("button.recocora-apply:disabled").wait_for(timeout=10_000)
    late.screenshot(path=str(shots / "4-closed.png"))
