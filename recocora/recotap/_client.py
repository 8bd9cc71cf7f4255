"""``RecotapClient``: keyed, retried, concurrent access to Recotap's external API."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from .._config import mask_secret, recotap_settings, state_url
from .._progress import Pace
from .._transport import Reply, RetryPolicy, Transport
from .._wire import dumps
from ..errors import (
    ApiError,
    AuthError,
    NotFoundError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)
from ._domains import normalize_domain, unicode_form

__all__ = ["ACCOUNT_COLUMNS", "RecotapClient"]

ACCOUNTS = "/accounts"
MAP_IDS = "/accounts/external-ids"
UNMAPPED = "/accounts/missing-external-ids"

#: Columns :meth:`RecotapClient.accounts` always returns, first and in this order.
ACCOUNT_COLUMNS = ("rtp_aid", "name", "domain", "externalId")


class _RecotapTransport(Transport):
    service = "Recotap"
    base_url_setting = "RECOTAP_BASE_URL"

    def __init__(self, base_url: str, key: str, *, timeout: float,
                 retry: RetryPolicy | None, pool_size: int) -> None:
        super().__init__(base_url, timeout=timeout, retry=retry, pool_size=pool_size)
        self._key = key

    def __repr__(self) -> str:
        return f"_RecotapTransport({self.base_url!r}, key={mask_secret(self._key)!r})"

    def auth_headers(self, method: str, path_url: str, body: bytes) -> dict[str, str]:
        return {"X-Api-Key": self._key}

    def error_for(self, reply: Reply, what: str) -> ApiError:
        envelope = reply.data if isinstance(reply.data, dict) else {}
        reason = _text(envelope.get("customMessage")) or _text(envelope.get("message"))
        constraints = constraint_messages(envelope.get("data"))
        # A body that is not JSON (a proxy's HTML page) still says something useful.
        text = reason or reply.text.strip()[:200] or f"HTTP {reply.status}"
        message = f"Recotap refused {what}: {text}"
        if constraints:
            message += " — " + "; ".join(constraints)
        kind: type[ApiError]
        if reply.status == 401 or reply.status == 403:
            kind = AuthError
            message += (
                f" (key {mask_secret(self._key)}: check RECOTAP_API_KEY or the api_key "
                "passed to RecotapClient)"
            )
        elif reply.status == 404:
            kind = NotFoundError
            message += f" (check the base URL {self.base_url!r}; it should end in /api/v1)"
        elif reply.status == 429:
            kind = RateLimitError
        elif reply.status >= 500:
            kind = ServerError
        else:
            kind = RequestRejectedError
        details = envelope.get("data") if constraints else None
        return kind(message, status=reply.status, details=details)


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def constraint_messages(data: Any) -> list[str]:
    """Every validator message in an error envelope's ``data`` (validator objects, which
    may nest ``children``), each prefixed by its property.

    >>> constraint_messages([{"property": "mappings",
    ...     "constraints": {"arrayMaxSize": "mappings must contain no more than 100 elements"}}])
    ['mappings: mappings must contain no more than 100 elements']
    """
    found: list[str] = []
    if isinstance(data, list):
        for item in data:
            found.extend(constraint_messages(item))
    elif isinstance(data, dict):
        prop = data.get("property")
        constraints = data.get("constraints")
        if isinstance(constraints, dict):
            for text in constraints.values():
                found.append(f"{prop}: {text}" if isinstance(prop, str) and prop else str(text))
        found.extend(constraint_messages(data.get("children")))
    return found


def _iso(value: str | _dt.datetime | _dt.date | pd.Timestamp) -> str:
    if isinstance(value, str):
        return value
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")  # a naive time is read as UTC, as the API does
    return str(stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")


class RecotapClient:
    """A client of Recotap's external API for one key.

    Every request carries ``X-Api-Key``; the key is never shown (``repr`` masks it).
    Answers of 429 are retried after the server's ``Retry-After``; 5xx answers, timeouts and
    dropped connections are retried with capped exponential backoff and jitter. A 401 is
    final (:class:`~recocora.errors.AuthError`), a 400 raises
    :class:`~recocora.errors.RequestRejectedError` listing the server's validator messages.

    Retrying a mapping write is safe because it is idempotent: writing ``acme.com → crm-1``
    twice leaves the account exactly as writing it once (the second answer reports
    ``updated: 0``), so a retry after an answer that was lost cannot change anything twice.

    Up to ``max_concurrency`` requests are in flight at once (threads sharing one
    connection pool of that size). ``api_key`` and ``base_url`` default to
    ``RECOTAP_API_KEY`` and ``RECOTAP_BASE_URL``, the base URL to production. ``state``
    (default ``RECOCORA_STATE_URL``) is where ``journal=True`` and background runs are kept:
    this machine's files, or a ``postgresql://`` database shared by many machines.

    >>> rtp = RecotapClient("rtp_live_0123456789", "http://127.0.0.1:8765/api/v1")
    >>> rtp
    RecotapClient(base_url='http://127.0.0.1:8765/api/v1', key='rtp_…****', max_concurrency=4)
    """

    MAX_MAPPINGS = 100
    MAX_DOMAIN_FILTER = 100
    PAGE_LIMIT = 100
    #: The most accounts one list request returns (``unmapped_accounts(limit=...)``).
    MAX_LIMIT = 1000

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_concurrency: int = 4,
        *,
        retry: RetryPolicy | None = None,
        state: str | None = None,
    ) -> None:
        key, url = recotap_settings(api_key, base_url)
        self.state_url = state_url(state)
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self._key = key
        self.base_url = url
        self.max_concurrency = int(max_concurrency)
        self.transport = _RecotapTransport(
            url, key, timeout=timeout, retry=retry, pool_size=self.max_concurrency
        )
        # Our normal form (punycode) -> the spelling Recotap lists, where they differ.
        self._spellings: dict[str, str] = {}

    @property
    def rate_limited(self) -> int:
        """429 answers this client met so far."""
        return self.transport.rate_limited

    def pace(self) -> Pace:
        """This client's limits for estimates: ``MAX_MAPPINGS`` mappings per request,
        ``max_concurrency`` requests at once, no documented rate limit."""
        return Pace(self.MAX_MAPPINGS, 0.0, self.max_concurrency)

    def __repr__(self) -> str:
        return (f"RecotapClient(base_url={self.base_url!r}, key={mask_secret(self._key)!r}, "
                f"max_concurrency={self.max_concurrency})")

    def close(self) -> None:
        """Close the pooled connections."""
        self.transport.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a preview widget refuses to write with it)."""
        return self.transport.closed

    def __enter__(self) -> RecotapClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def map_external_ids(self, mappings: list[dict[str, str]]) -> dict[str, Any]:
        """Write up to 100 ``{"domain", "externalId"}`` mappings in one request.

        Returns the answer's ``data``: ``matched`` (accounts found), ``updated`` (accounts
        whose id changed) and ``notFound`` (the domains, as sent, that matched nothing).
        Recotap overwrites an existing id without warning and lets the last of repeated
        domains win; ``df.recotap.map_ids`` guards against both. The write is idempotent, so
        re-sending the same mappings (as retries do) leaves the same state.

        >>> rtp.map_external_ids([{"domain": "acme.com", "externalId": "crm-001"}])
        ... # doctest: +SKIP
        {'matched': 1, 'updated': 1, 'notFound': []}
        """
        if not 1 <= len(mappings) <= self.MAX_MAPPINGS:
            raise ValueError(
                f"one request maps 1 to {self.MAX_MAPPINGS} domains, not {len(mappings)}; "
                "use df.recotap.map_ids for more"
            )
        return self.map_external_ids_raw(dumps({"mappings": mappings}))

    def map_external_ids_raw(self, body: bytes) -> dict[str, Any]:
        """Send one serialised Map External IDs body; return the checked answer ``data``."""
        reply = self.transport.request("PATCH", MAP_IDS, body=body)
        data = _data(reply)
        not_found = data.get("notFound") if isinstance(data, dict) else None
        if not isinstance(not_found, list):
            raise ApiError(
                "Recotap answered the mapping request without a notFound list, so which "
                "domains matched is unknown (re-running is safe: mapping writes are "
                "idempotent).",
                status=reply.status,
            )
        assert isinstance(data, dict)
        return {
            "matched": _count(data.get("matched")),
            "updated": _count(data.get("updated")),
            "notFound": [d for d in not_found if isinstance(d, str)],
        }

    # -- reads ----------------------------------------------------------------------------------

    def unmapped_accounts(self, limit: int = 100, *, all: bool = False) -> pd.DataFrame:
        """Accounts that have no external id yet, as a DataFrame ``[name, domain]``.

        By default this asks the List Unmapped Accounts endpoint once: **one request**, but
        it returns only the first ``limit`` unmapped accounts and has no pagination, so a
        match against it misses the rest. ``all=True`` instead walks every account with
        List Accounts, page by page, and keeps those without an external id: **one request
        per** ``limit`` **accounts of the whole tenant, mapped or not** (``limit`` is then the
        page size), in exchange for the complete set.

        >>> rtp.unmapped_accounts(limit=1000).columns.tolist()  # doctest: +SKIP
        ['name', 'domain']
        >>> everything = rtp.unmapped_accounts(all=True)  # doctest: +SKIP
        """
        if not 1 <= int(limit) <= self.MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {self.MAX_LIMIT}, not {limit}")
        if all:
            listed = self.accounts(limit=int(limit))
            ids = listed["externalId"]
            bare = ids.isna() | (ids.astype("string").str.strip() == "").fillna(True)
            listed = listed[bare.to_numpy(dtype=bool)]
            names = listed["name"].tolist()
            domains = listed["domain"].tolist()
        else:
            reply = self.transport.request("GET", UNMAPPED, query=[("limit", str(int(limit)))])
            items = _data(reply)
            rows = items if isinstance(items, list) else []
            names = [r.get("name") if isinstance(r, dict) else None for r in rows]
            domains = [r.get("domain") if isinstance(r, dict) else None for r in rows]
            self._learn(domains)
        frame: pd.DataFrame = pd.DataFrame(
            {"name": pd.array(names, dtype="string"), "domain": pd.array(domains, dtype="string")}
        )
        return frame

    def accounts(
        self,
        domains: Iterable[str] | pd.Series[Any] | None = None,
        last_sync: str | _dt.datetime | _dt.date | pd.Timestamp | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """Accounts as a DataFrame, every page walked (on ``hasNextPage`` only).

        ``domains`` (any spelling: URLs, ``www.``, unicode) are normalised first; an invalid
        one raises :class:`~recocora.errors.ValidationError`. They are asked 100 per request,
        up to ``max_concurrency`` requests at once. ``last_sync`` keeps accounts updated after
        that time. ``limit`` is the page size. Columns start with ``rtp_aid``, ``name``,
        ``domain``, ``externalId``, then every other field as the API returns it
        (``customFields`` stays one column of dicts). ``attrs["sync_timestamp"]`` is the
        server time to pass as the next ``last_sync``.

        >>> rtp.accounts(domains=["https://www.Acme.com/"])["externalId"].tolist()
        ... # doctest: +SKIP
        ['crm-001']
        """
        if isinstance(domains, str):
            domains = [domains]
        since = None if last_sync is None else _iso(last_sync)
        wanted = None if domains is None else _both_spellings(self._normalized(domains))
        rows: list[dict[str, Any]] = []
        stamps: list[str] = []
        for page_rows, stamp in self._walk(wanted, since, limit):
            rows.extend(page_rows)
            if stamp:
                stamps.append(stamp)
        frame: pd.DataFrame = pd.DataFrame(rows)
        for column in ACCOUNT_COLUMNS:
            if column not in frame.columns:
                frame[column] = pd.Series([None] * len(frame), dtype=object)
        rest = [c for c in frame.columns if c not in ACCOUNT_COLUMNS]
        frame = frame[[*ACCOUNT_COLUMNS, *rest]]
        # Several domain batches each have a sync time; the earliest is the safe one to resume.
        frame.attrs["sync_timestamp"] = min(stamps) if stamps else None
        return frame

    def accounts_by_domain(self, domains: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Current accounts keyed by their domain, for already normalised ``domains``
        (see :func:`recocora.normalize_domain`); absent domains are missing from the dict.

        >>> rtp.accounts_by_domain(["acme.com"])["acme.com"]["externalId"]  # doctest: +SKIP
        'crm-001'
        """
        return self.fetch_by_domain(domains)[0]

    def fetch_by_domain(
        self, domains: Iterable[str]
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """:meth:`accounts_by_domain` plus the number of GET requests it took.

        An internationalised domain is asked for in both spellings (punycode and Unicode):
        the docs do not say which one Recotap stores. The accounts are keyed by the domain
        as Recotap spells it."""
        found: dict[str, dict[str, Any]] = {}
        pages = 0
        for page_rows, _ in self._walk(_both_spellings(domains), None, self.PAGE_LIMIT):
            pages += 1
            for account in page_rows:
                domain = account.get("domain")
                if isinstance(domain, str):
                    found[domain] = account
        return found, pages

    def spelled(self, domains: Iterable[str]) -> list[str]:
        """Each normalised domain as Recotap itself lists it, where an answer showed it
        (Unicode where we write punycode); the domain as given otherwise.

        >>> rtp.spelled(["xn--mller-bau-q9a.de"])  # doctest: +SKIP
        ['müller-bau.de']
        """
        known = self._spellings
        return [known.get(d, d) for d in domains]

    def knows_spelling(self, domain: str) -> bool:
        """Whether an answer has shown how Recotap spells this (normalised) domain."""
        return domain in self._spellings

    # -- internals ------------------------------------------------------------------------------

    def _learn(self, domains: Iterable[Any]) -> None:
        """Remember how Recotap spells the internationalised domains it lists (Unicode, or
        punycode as we write them)."""
        odd = [d for d in domains if isinstance(d, str) and (not d.isascii() or "xn--" in d)]
        if not odd:
            return
        normal = normalize_domain(pd.Series(odd, dtype=object), errors="coerce").tolist()
        for spelled, ours in zip(odd, normal, strict=True):
            if isinstance(ours, str):
                self._spellings[ours] = spelled

    def _normalized(self, domains: Iterable[str] | pd.Series[Any]) -> list[str]:
        series = domains if isinstance(domains, pd.Series) else pd.Series(list(domains))
        values = normalize_domain(series.reset_index(drop=True))
        return list(dict.fromkeys(str(v) for v in values))

    def _walk(
        self, domains: list[str] | None, since: str | None, limit: int
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Pages ``(accounts, syncTimestamp)`` for each batch of 100 domains (or all)."""
        if not 1 <= int(limit) <= self.MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {self.MAX_LIMIT}, not {limit}")
        if domains is None:
            yield from self._pages(None, since, int(limit))
            return
        size = self.MAX_DOMAIN_FILTER
        batches = [domains[i : i + size] for i in range(0, len(domains), size)]
        if not batches:
            return
        with ThreadPoolExecutor(min(self.max_concurrency, len(batches))) as pool:
            for pages in pool.map(lambda b: list(self._pages(b, since, int(limit))), batches):
                yield from pages

    def _pages(
        self, domains: list[str] | None, since: str | None, limit: int
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        cursor: str | None = None
        while True:
            query = [("limit", str(limit))]
            if domains is not None:
                query.append(("domains", dumps(domains).decode("utf-8")))
            if since is not None:
                query.append(("lastSync", since))
            if cursor is not None:
                query.append(("cursor", cursor))
            reply = self.transport.request("GET", ACCOUNTS, query=query)
            page = _data(reply)
            page = page if isinstance(page, dict) else {}
            items = page.get("data")
            accounts = [a for a in items if isinstance(a, dict)] if isinstance(items, list) else []
            self._learn(a.get("domain") for a in accounts)
            stamp = page.get("syncTimestamp")
            yield accounts, stamp if isinstance(stamp, str) else None
            following = page.get("nextCursor")
            # The last page may still carry a cursor: only hasNextPage says whether to go on.
            if page.get("hasNextPage") is not True:
                return
            if not isinstance(following, str) or not following or following == cursor:
                raise ApiError(
                    "Recotap said another page of accounts follows but gave no new cursor "
                    "to fetch it.",
                    status=reply.status,
                )
            cursor = following


def _data(reply: Reply) -> Any:
    """The ``data`` of a success envelope (tolerating a bare payload without envelope)."""
    body = reply.data
    if isinstance(body, dict) and "data" in body and ("statusCode" in body or "path" in body):
        return body["data"]
    return body


def _both_spellings(domains: Iterable[str]) -> list[str]:
    """Normalised domains, each internationalised one also in Unicode, without repeats."""
    wanted = list(dict.fromkeys(domains))
    both = [u for u in map(unicode_form, (d for d in wanted if "xn--" in d)) if u]
    return list(dict.fromkeys(wanted + both))


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
