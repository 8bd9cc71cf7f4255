"""A background run outlives the kernel that started it, and its monitor is driven by the
browser's ticks alone."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import recocora
from recocora import CoraClient
from recocora.widgets._run import RunMonitor
from tests.backfill.conftest import ROOT, accounts
from tests.runs.conftest import RUN_LIMIT_S, bulk_posts, until
from tests.test_notebooks import KERNEL, ensure_kernel


def _run_cell(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=RUN_LIMIT_S)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out)


def test_a_kernel_restart_does_not_stop_the_run_and_the_new_kernel_attaches(
    sb: Any, cache_dir: Path
) -> None:
    from jupyter_client.manager import KernelManager

    ensure_kernel()
    sb.set_cora_window(0.3)
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(cwd=str(ROOT), env={**os.environ, "RECOCORA_CACHE_DIR": str(cache_dir)})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=RUN_LIMIT_S)
        run_id = _run_cell(kc, (
            "import recocora\n"
            "from tests.backfill.conftest import accounts\n"
            f"cora = recocora.CoraClient({sb.cora_key!r}, {sb.cora_base_url!r}, "
            "min_interval=0.3)\n"
            "cora.MAX_ROWS = 3\n"
            "run = accounts(36).cora.upsert(client=cora, background=True)\n"
            "print(run.id)\n"
        )).strip()
        km.restart_kernel(now=True)
        kc.wait_for_ready(timeout=RUN_LIMIT_S)
        assert recocora.attach(run_id).state in ("queued", "running")
        listed = _run_cell(kc, "import recocora\nprint(list(recocora.runs()['run_id']))")
        assert run_id in listed
        final = _run_cell(kc, (
            f"run = recocora.attach({run_id!r})\n"
            "res = run.wait()\n"
            "print(run.state, res['cora_status'].eq('created').sum())\n"
        ))
        assert final.split() == ["succeeded", "36"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    externals = [a["externalId"] for a in sb.cora_accounts()]
    assert len(externals) == len(set(externals)) == 36
    assert len([r for r in bulk_posts(sb) if r.status == 200]) == 12


def test_the_monitor_follows_ticks_and_cancels(
    sb: Any, cora_client_for: Callable[..., CoraClient]
) -> None:
    sb.set_cora_window(0.4)
    run = accounts(40).cora.upsert(client=cora_client_for(rows=4, min_interval=0.4),
                                   background=True)
    monitor = RunMonitor(run)
    assert not monitor.ticker.playing
    monitor.ticker._view_count = 1  # as the front end reports once it drew the monitor
    assert monitor.ticker.playing
    assert "text/plain" in recocora.attach(run.id)._repr_mimebundle_()

    def tick() -> int:
        monitor.ticker.value = (monitor.ticker.value + 1) % monitor.ticker.max
        return int(monitor.bar.value)

    until(lambda: tick() >= 8, what="the bar advancing on ticks")
    assert monitor.bar.max == 40
    assert "created" in monitor.label.value and "requests" in monitor.label.value
    monitor.cancel_button.click()
    assert monitor.cancel_button.disabled
    run.wait(timeout=RUN_LIMIT_S)
    tick()
    assert not monitor.ticker.playing
    assert 'data-state="cancelled"' in monitor.label.value
    assert monitor.bar.value < 40
