"""``recocora sandbox``, run as the user runs it: keys per start, a busy port, a bad --db."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).with_name("recocora")
COMMAND = (
    [str(BIN)] if BIN.exists()
    else [sys.executable, "-c", "from recocora.cli import main; raise SystemExit(main())"]
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CORA_", "RECOTAP_", "RECOCORA_"))}
    env.update(extra)
    return env


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, "sandbox", "--host", "127.0.0.1", *args], env=clean_env(PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _served_lines(proc: subprocess.Popen[str]) -> list[str]:
    """What the sandbox command prints up to its last export line, then stop it."""
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("export RECOTAP_API_KEY="):
                break
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    return lines


def _exported_keys(lines: list[str]) -> tuple[str, str]:
    found = dict(line[len("export "):].split("=", 1) for line in lines
                 if line.startswith("export "))
    return found["CORA_API_KEY"], found["RECOTAP_API_KEY"]


def test_sandbox_says_its_keys_change_on_every_start_unless_given() -> None:
    first = _served_lines(_serve("--port", "0", "--seed", "demo"))
    second = _served_lines(_serve("--port", "0", "--seed", "demo"))
    note = [line for line in first if "new on every start" in line]
    assert len(note) == 1 and "--cora-key" in note[0], first
    assert _exported_keys(first)[0] != _exported_keys(second)[0]
    assert _exported_keys(first)[1] != _exported_keys(second)[1]
    given_keys = ("--cora-key", "cora_org_demo.s3cret", "--recotap-key", "rtp_demo")
    kept = [_served_lines(_serve("--port", "0", "--seed", "demo", *given_keys))
            for _ in range(2)]
    for lines in kept:
        assert not [line for line in lines if "new on every start" in line]
        assert _exported_keys(lines) == ("cora_org_demo.s3cret", "rtp_demo")


def test_sandbox_on_a_busy_port_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _serve("--port", str(port), "--db", str(tmp_path / "state.db"))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert out == ""
    assert err.strip().splitlines() == [
        f"recocora: error: cannot serve on 127.0.0.1:{port}: port {port} is already in use; "
        "stop what is using it, or pick another --port (0 picks a free one)"
    ]


def test_sandbox_db_in_a_missing_folder_exits_2(tmp_path: Path) -> None:
    proc = _serve("--port", "0", "--db", str(tmp_path / "missing" / "state.db"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and out == ""
    assert "--db" in err and "does not exist" in err and "Traceback" not in err


def test_sandbox_keeps_the_rate_window_it_is_told() -> None:
    lines = _served_lines(_serve(
        "--port", "0", "--seed", "none", "--cora-window", "20", "--window-stamp", "body",
        "--window-jitter", "0.04", "--window-restart", "--retry-after", "date",
        "--cora-key", "cora_org_w.s3cret", "--recotap-key", "rtp_w",
    ))
    assert any("window 20 s, stamped at body + up to 0.04 s" in line for line in lines), lines
