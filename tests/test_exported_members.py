"""The front door: what ``recocora`` exports is exactly ``__all__``, and every public name
reports a public home, so nothing private leaks into reprs, tracebacks or docs."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import recocora
import recocora.errors
import recocora.sandbox
import recocora.widgets

PUBLIC_PACKAGES = ("recocora", "recocora.errors", "recocora.sandbox", "recocora.widgets")


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_exported_member_reports_its_public_home(package: str) -> None:
    module = importlib.import_module(package)
    home = "recocora" if package == "recocora.errors" else package
    for name in module.__all__:
        if name.startswith("__"):
            continue
        member = getattr(module, name)
        assert member.__module__ in (home, "recocora"), f"{package}.{name}: {member.__module__}"


def test_all_lists_only_what_exists_and_nothing_public_is_missing() -> None:
    for name in recocora.__all__:
        assert hasattr(recocora, name), name
    public = {n for n in vars(recocora) if not n.startswith("_")} - {"annotations"}
    modules = {n for n, v in vars(recocora).items() if type(v).__name__ == "module"}
    stray = public - modules - set(recocora.__all__)
    assert not stray, sorted(stray)


def test_every_error_is_exported_at_the_top_and_lives_in_errors() -> None:
    for name in recocora.errors.__all__:
        assert getattr(recocora, name) is getattr(recocora.errors, name)
        assert name in recocora.__all__


def test_implementation_modules_are_private() -> None:
    allowed = {"cli", "errors", "sandbox", "widgets", "cora", "recotap", "accessor"}
    for info in pkgutil.walk_packages(recocora.__path__, "recocora."):
        last = info.name.rsplit(".", 1)[-1]
        assert last.startswith("_") or last in allowed, info.name


def test_the_public_names_are_exactly_these() -> None:
    # Adding a name is a promise to users: it is made here, on purpose, or not at all.
    assert set(recocora.__all__) == {
        "ApiError", "AuthError", "ClockSkewError", "ConfigError", "CoraClient",
        "JournalError", "NotFoundError", "Progress", "RateLimitError", "RecocoraError",
        "RecotapClient", "RequestRejectedError", "Run", "RunError", "RunInterrupted", "StateError",
        "ServerError", "TooManyFailedError", "TransportError", "UnreachableError",
        "ValidationError", "__version__", "attach", "changes_table", "match_accounts",
        "normalize_domain", "normalize_phone", "runs",
    }
