"""Fixtures for the preview widgets: fast clients on the sandbox and small frames."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora import CoraClient, RecotapClient

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox



@pytest.fixture
def cora_for(cora_client_for: Callable[..., CoraClient]) -> Callable[..., CoraClient]:
    """Cora clients on the sandbox; ``cls=`` builds a subclass."""
    return cora_client_for


@pytest.fixture
def cora(cora_for: Callable[..., CoraClient]) -> CoraClient:
    return cora_for()


@pytest.fixture
def rtp(rtp_client_for: Callable[..., RecotapClient]) -> RecotapClient:
    return rtp_client_for()


def accounts(n: int, start: int = 0, **extra: Any) -> pd.DataFrame:
    """``n`` creatable Cora accounts ``acct-00000``..., index ``r0``..."""
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "externalId": [f"acct-{i:05d}" for i in ids],
            "portfolioId": "pf_test",
            "phoneNumber": [f"+1555555{i % 10000:04d}" for i in ids],
            "metadata.filenumber": [f"F-{i}" for i in ids],
            **extra,
        },
        index=[f"r{i}" for i in ids],
    )


def bulk_posts(sb: Sandbox) -> list[Any]:
    return [r for r in sb.requests if r.method == "POST" and r.path.endswith("/bulk-upsert")]


def widget_text(w: Any) -> str:
    """Every HTML and label value in a widget tree, joined: what a person could read."""
    seen: list[str] = []

    def walk(node: Any) -> None:
        value = getattr(node, "value", None)
        if isinstance(value, str):
            seen.append(html.unescape(value))
        for attr in ("description", "placeholder", "tooltip"):
            text = getattr(node, attr, None)
            if isinstance(text, str):
                seen.append(text)
        for child in getattr(node, "children", ()):
            walk(child)

    walk(w)
    return "\n".join(seen)
