"""What pyproject.toml promises about versions is what .ci/run tests: every runtime lower bound
is pinned, exactly, in the constraints of the lowest-versions run, and that run uses the
lowest Python the package accepts. The LICENSE file is the licence pyproject.toml names."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
LOWEST = ROOT / ".ci" / "constraints-lowest.txt"


def _array(name: str) -> list[str]:
    """The strings of a top-level TOML array such as ``dependencies = [...]`` (Python 3.10
    has no tomllib, and these arrays hold plain quoted strings)."""
    match = re.search(rf"^{name} = \[(.*?)^\]", PYPROJECT, re.S | re.M)
    assert match is not None, f"no {name} array in pyproject.toml"
    return re.findall(r'"([^"]+)"', match.group(1))


def declared_lower_bounds() -> dict[str, Version]:
    """The runtime dependencies' lower bounds, and the ``postgres`` extra's (the test extra
    installs it, so the lowest run tests it too)."""
    bounds = {}
    for line in _array("dependencies") + _array("postgres"):
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(lower) == 1, f"{line!r}: every runtime dependency declares one lower bound"
        name = canonicalize_name(requirement.name)
        bounds[name] = lower[0]
        if "binary" in requirement.extras:  # psycopg[binary] pins psycopg-binary with it
            bounds[canonicalize_name(f"{name}-binary")] = lower[0]
    return bounds


def pinned_lowest() -> dict[str, Version]:
    pins = {}
    for line in LOWEST.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{LOWEST.name}: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_every_declared_lower_bound_is_the_version_the_lowest_run_installs() -> None:
    assert pinned_lowest() == declared_lower_bounds()


def test_the_lowest_run_uses_the_lowest_python_the_package_accepts() -> None:
    match = re.search(r'^requires-python = ">=(\d+\.\d+)"', PYPROJECT, re.M)
    assert match is not None
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f'find_python {match.group(1)} ' in ci
    assert f'"py{match.group(1).replace(".", "")}"' in PYPROJECT  # ruff's target-version
    assert f'python_version = "{match.group(1)}"' in PYPROJECT  # mypy's


def test_the_license_file_is_the_declared_licence() -> None:
    match = re.search(r'^license = \{ text = "([^"]+)" \}', PYPROJECT, re.M)
    assert match is not None
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith(f"{match.group(1)} License")
