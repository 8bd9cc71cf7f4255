"""Fixtures for the preview widgets: fast clients on the sandbox and small frames."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from recocora import CoraClient, RecotapClient
from recocora._transport import RetryPolicy

if TYPE_CHECKING:
    from recocora.sandbox import Sandbox

# Tiny backoff keeps fault tests fast; the retry budget is the production one.
FAST_RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def cora_for(sb: Sandbox) -> Iterator[Callable[..., CoraClient]]:
    """Build Cora clients on the sandbox (window 0 unless asked); all closed afterwards."""
    made: list[CoraClient] = []

    def make(cls: type[CoraClient] = CoraClient, **kwargs: Any) -> CoraClient:
        kwargs.setdefault("api_key", sb.cora_key)
        kwargs.setdefault("base_url", sb.cora_base_url)
        kwargs.setdefault("min_interval", 0.0)
        kwargs.setdefault("retry", FAST_RETRY)
        c = cls(**kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def cora(cora_for: Callable[..., CoraClient]) -> CoraClient:
    return cora_for()


@pytest.fixture
def rtp(sb: Sandbox) -> Iterator[RecotapClient]:
    c = RecotapClient(sb.recotap_key, sb.recotap_base_url, retry=FAST_RETRY)
    yield c
    c.close()


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
