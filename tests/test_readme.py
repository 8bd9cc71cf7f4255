"""The README is run, not just read: its tour works on the repository's own sample files and
keeps every row of them, and every file of the repository it names exists.

The tour builds its clients from the environment (``CoraClient()``), so the test points the
four variables at a sandbox of its own and executes the tour's code block as a user would
paste it, from the repository root.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recocora.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOUR_HEADING = "## A 30-second tour"
SAMPLE = ROOT / "notebooks" / "data" / "messy_accounts.csv"
CRM_SAMPLE = ROOT / "notebooks" / "data" / "crm_accounts.csv"

# A run of path segments joined by "/" that is not part of a URL or an absolute (API) path.
_PATH = re.compile(r"(?<![\w/.:~-])((?:\.\.?/)?[\w.-]+(?:/[\w.-]+)+/?)")
_FILE_SUFFIX = re.compile(r"\.(md|ipynb|csv|tsv|sh|py|txt|toml|json|parquet|cfg|ya?ml)$")
# Folders the README's own commands create (the venv of "Two commands").
_MADE_BY_README = frozenset({".venv"})
# The repository's folders, named even if one went missing (then its paths fail, not vanish).
_REPO_FOLDERS = frozenset({".ci", "docs", "examples", "notebooks", "recocora", "tests"})


def tour_code(text: str) -> str:
    """The first ``python`` code block after the tour's heading."""
    start = text.index(TOUR_HEADING)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {TOUR_HEADING!r}"
    return match.group(1)


def named_repo_paths(text: str, *, any_file: bool = True) -> set[str]:
    """Paths inside the repository that ``text`` names: ``dir/.../name`` whose first folder
    is one of the repository's (or, with ``any_file``, whose last part is a file name);
    ``../`` paths (outside the repository) are kept so that they fail; bare
    ``*.md``/``*.ipynb`` names in backquotes."""
    top = _REPO_FOLDERS | {p.name for p in ROOT.iterdir()}
    found: set[str] = set()
    for token in _PATH.findall(text):
        first = token.split("/")[0]
        if first in _MADE_BY_README:
            continue
        named_file = any_file and _FILE_SUFFIX.search(token.rstrip("/"))
        if token.startswith("../") or first in top or named_file:
            found.add(token)
    found.update(re.findall(r"`([\w.-]+\.(?:md|ipynb))`", text))
    found.update(re.findall(r"read_(?:csv|parquet)\(\s*[\"']([^\"']+)", text))
    return found


def test_every_repo_path_the_readme_names_exists() -> None:
    names = named_repo_paths(README.read_text(encoding="utf-8"))
    assert "notebooks/quickstart.ipynb" in names  # the scan sees what the README points to
    outside = sorted(n for n in names if n.startswith("../"))
    assert not outside, f"README.md names files outside the repository: {outside}"
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, f"README.md names files the repository lacks: {missing}"


def test_every_repo_path_a_docstring_names_exists() -> None:
    # Only paths under the repository's folders: examples may name files that do not exist
    # on purpose (an output into a missing folder).
    missing = []
    for source in sorted((ROOT / "recocora").rglob("*.py")):
        for name in named_repo_paths(source.read_text(encoding="utf-8"), any_file=False):
            if name.startswith("../") or not (ROOT / name).exists():
                missing.append(f"{source.relative_to(ROOT)}: {name}")
    assert not missing, f"files named in the package that the repository lacks: {missing}"


@pytest.fixture(scope="module")
def demo_sandbox() -> Iterator[Sandbox]:
    # Its own server: the tour's clients wait Cora's real 20 s between bulk requests, so they
    # get keys no other test has booked a slot with.
    with Sandbox(seed="demo", cora_window=0.0) as server:
        yield server


@pytest.fixture
def tour(demo_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The namespace left by running the README's tour against the demo sandbox."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CORA_API_KEY", demo_sandbox.cora_key)
    monkeypatch.setenv("CORA_BASE_URL", demo_sandbox.cora_base_url)
    monkeypatch.setenv("RECOTAP_API_KEY", demo_sandbox.recotap_key)
    monkeypatch.setenv("RECOTAP_BASE_URL", demo_sandbox.recotap_base_url)
    namespace: dict[str, Any] = {"__name__": "readme_tour"}
    exec(compile(tour_code(README.read_text(encoding="utf-8")), "README.md", "exec"), namespace)
    yield namespace
    namespace["cora"].close()
    namespace["rtp"].close()


def test_readme_tour_runs_on_the_samples_and_keeps_every_row(tour: dict[str, Any]) -> None:
    sample = pd.read_csv(SAMPLE, dtype=str)
    df, preview, crm = tour["df"], tour["preview"], tour["crm"]
    # Only exact copies go: every distinct row of the sample is still there, blank ids too.
    distinct = sample.drop_duplicates()
    dropped = distinct.index.difference(df.index)
    assert dropped.empty, f"the tour dropped {len(dropped)} rows of the sample: {list(dropped)}"
    assert list(df.index) == list(distinct.index)
    blank = sample.index[sample["externalId"].isna()]
    assert len(blank) > 1 and set(blank) <= set(df.index)
    assert df["externalId"].notna().all()
    assert df["externalId"].is_unique  # nothing left for Cora to refuse as a duplicate
    # One status per row, from the preview and the upsert alike, and the joins keep every row.
    for result in (preview, tour["res"]):
        assert result.index.equals(df.index) and result["cora_status"].notna().all()
    assert len(df.join(tour["res"])) == len(df)
    assert len(crm) == len(pd.read_csv(CRM_SAMPLE, dtype=str))
    mapped = crm.join(tour["mapped"])
    assert len(mapped) == len(crm) and mapped["recotap_status"].notna().all()
