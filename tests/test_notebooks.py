"""The notebooks in ``notebooks/`` run top to bottom against the sandbox, and no output,
saved or fresh, holds an API key.

Each notebook starts its own sandbox, whose keys are random, so the check is twofold: a cell
appended by the test reads the sandbox's actual keys back from the kernel (and is removed
before anything is scanned), and every string of the executed notebook (outputs, widget
state, metadata) is searched for those exact secrets and for anything shaped like a sandbox
key. The committed notebooks carry the outputs of an execution, so a reader on GitHub sees
results; they are scanned the same way. To refresh them after changing a notebook:

    .venv/bin/python -m tests.test_notebooks
"""

from __future__ import annotations

import copy
import html
import importlib.util
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA = NOTEBOOKS / "data"
NAMES = ("quickstart.ipynb", "backfill.ipynb")
KERNEL = "python3"
CELL_TIMEOUT = 120  # seconds; a whole notebook runs in well under this

# Shaped like the sandbox's keys: ``cora_org_<keyId>.<hex secret>`` and ``rtp_sandbox_<hex>``.
KEY_PATTERNS = (
    re.compile(r"cora_org_[^.\s\"'<>\\]+\.[0-9a-f]{8,}"),
    re.compile(r"rtp_sandbox_[0-9a-f]{8,}"),
)
# Appended to a notebook under test: prints the secret part of each key of its sandbox.
KEY_PROBE = 'print(sb.cora_key.partition(".")[2], sb.recotap_key, sep="\\n")'


def ensure_kernel() -> None:
    """Make the ``python3`` kernel spec resolve to this interpreter.

    ipykernel's own spec says ``python``, which jupyter_client replaces with
    ``sys.executable``; when no spec is found, this interpreter's ipykernel is registered in
    its own prefix (``python -m ipykernel install --sys-prefix``). A spec elsewhere (say in
    ``~/.local/share/jupyter``) that starts another interpreter would run the notebooks
    without recocora installed: that is refused with what to do.
    """
    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(KERNEL)
    except NoSuchKernel:
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
            check=True, capture_output=True,
        )
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    major, minor = sys.version_info[:2]
    launcher = spec.argv[0]
    if launcher not in ("python", f"python{major}", f"python{major}.{minor}", sys.executable):
        raise RuntimeError(
            f"the {KERNEL!r} kernel spec in {spec.resource_dir} starts {launcher}, not "
            f"{sys.executable}; remove that spec or run `{sys.executable} -m ipykernel "
            f"install --sys-prefix` and put {sys.prefix}/share/jupyter first in JUPYTER_PATH"
        )


def execute(path: Path, *, probe: bool = False) -> tuple[Any, list[str]]:
    """Run the notebook at ``path`` in a fresh kernel, its directory as working directory.

    Returns the executed notebook and, with ``probe=True``, the secrets of the sandbox it
    started (read by an extra cell that is removed from the returned notebook).
    """
    nb = nbformat.read(path, as_version=4)
    if probe:
        nb.cells.append(nbformat.v4.new_code_cell(KEY_PROBE))
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name=KERNEL, record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    secrets: list[str] = []
    if probe:
        cell = nb.cells.pop()
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        secrets = [line for line in text.splitlines() if line]
        assert len(secrets) == 2, f"the key probe printed {text!r}"
    return nb, secrets


def strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a notebook (keys and values), with where it sits."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield f"{where}/{key}", str(key)
            yield from strings(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{where}/{i}")


def leaks(nb: Any, secrets: Sequence[str] = ()) -> list[str]:
    """Where ``nb`` holds one of ``secrets`` or a string shaped like a sandbox key."""
    found = []
    for where, text in strings(nb):
        for secret in secrets:
            if secret in text:
                found.append(f"{where}: the sandbox's secret")
        for pattern in KEY_PATTERNS:
            for match in pattern.finditer(text):
                found.append(f"{where}: {match.group()[:14]}...")
    return found


def errors(nb: Any) -> list[str]:
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "error"
    ]


@pytest.fixture(scope="module")
def kernel() -> None:
    ensure_kernel()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_without_leaking_keys(name: str, kernel: None) -> None:
    nb, secrets = execute(NOTEBOOKS / name, probe=True)

    assert not errors(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert any(c.outputs for c in code)
    assert all(len(s) >= 20 for s in secrets)  # the probe read real keys
    assert leaks(nb, secrets) == []


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_holds_outputs_of_a_clean_run_and_no_key(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{name} is not saved from one top-to-bottom run: python -m tests.test_notebooks"
    )
    assert any(c.outputs for c in code)
    assert not errors(nb)
    assert leaks(nb) == []


def test_leak_scan_finds_keys_in_outputs_and_widget_state() -> None:
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    cora_key, rtp_key = "cora_org_sandbox." + "ab12" * 8, "rtp_sandbox_" + "cd34" * 6
    in_html = copy.deepcopy(nb)
    in_html.cells.append(nbformat.v4.new_code_cell("cora"))
    in_html.cells[-1].outputs = [nbformat.v4.new_output(
        "display_data", data={"text/html": f"<td>{cora_key}</td>", "text/plain": "x"})]
    in_widget = copy.deepcopy(nb)
    in_widget.metadata["widgets"] = {"state": {"m": {"state": {"value": f"key={rtp_key}"}}}}
    in_stream = copy.deepcopy(nb)
    in_stream.cells.append(nbformat.v4.new_code_cell("print(k)"))
    in_stream.cells[-1].outputs = [nbformat.v4.new_output("stream", text="s3cret-value\n")]

    assert len(leaks(in_html)) == 1
    assert len(leaks(in_widget)) == 1
    assert leaks(in_stream) == []
    assert len(leaks(in_stream, ["s3cret-value"])) == 1


def test_data_files_are_what_make_data_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_data", DATA / "make_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    assert module.main([str(tmp_path)]) == 0
    for name in ("messy_accounts.csv", "crm_accounts.csv", "crm_messy.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def settle_progress_text(nb: Any) -> int:
    """Give each progress bar's text fallback the bar's final state; returns how many.

    A progress widget's ``text/plain`` is its first frame (``0%``), which is what a reader
    without widgets (GitHub) sees. The saved widget state holds how the run ended: the bar
    (``[label, progress, counts]`` in an ``HBox``) is written out from it as text.
    """
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def model(ref: str) -> dict[str, Any]:
        found: dict[str, Any] = state.get(ref.removeprefix("IPY_MODEL_"), {})
        return found

    settled = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            box = model(view["model_id"]) if view else {}
            parts = [model(ref) for ref in box.get("state", {}).get("children", [])]
            names = [p.get("model_name") for p in parts]
            if box.get("model_name") != "HBoxModel" or len(parts) != 3 or names[0] != (
                "HTMLModel"
            ) or names[2] != "HTMLModel" or not str(names[1]).endswith("ProgressModel"):
                continue
            bar = parts[1]["state"]
            done = min(1.0, bar.get("value", 0) / bar["max"]) if bar.get("max") else 1.0
            filled = "\u2588" * round(10 * done)
            left, right = (html.unescape(p["state"].get("value", "")).replace("\u2007", " ")
                           for p in (parts[0], parts[2]))
            out["data"]["text/plain"] = f"{left}|{filled:<10}|{right}"
            settled += 1
    return settled


def main() -> int:
    """Execute every notebook in place, refusing to save one that fails or leaks a key."""
    ensure_kernel()
    for name in NAMES:
        path = NOTEBOOKS / name
        started = time.monotonic()
        nb, secrets = execute(path, probe=True)
        took = time.monotonic() - started
        problems = errors(nb) + leaks(nb, secrets)
        if problems:
            print(f"{name}: not saved:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        settle_progress_text(nb)
        nbformat.write(nb, path)
        print(f"{name}: executed in {took:.1f} s and saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
