"""``CoraClient``: signed, rate-limited, retried access to Cora's external API."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pandas as pd

from .._config import cora_settings, state_url
from .._limiter import Limiter
from .._progress import Pace
from .._ratelimit import limiter_for
from .._transport import Reply, RetryPolicy, Transport
from .._wire import dumps
from ..errors import (
    ApiError,
    AuthError,
    ClockSkewError,
    NotFoundError,
    RateLimitError,
    RequestRejectedError,
    ServerError,
)
from ._signing import CoraKey, get_headers, parse_key, signed_headers

__all__ = ["CoraClient"]

ACCOUNTS = "/external-api/accounts"
AUTH_CODES = frozenset(
    {"MISSING_AUTH_HEADER", "MISSING_AUTH_HEADERS", "INVALID_API_KEY",
     "REQUEST_TIMESTAMP_OUTSIDE_WINDOW", "INVALID_REQUEST_SIGNATURE", "API_KEY_ORG_MISMATCH"}
)
SKEW = "REQUEST_TIMESTAMP_OUTSIDE_WINDOW"


class _CoraTransport(Transport):
    service = "Cora"
    base_url_setting = "CORA_BASE_URL"

    def __init__(self, base_url: str, key: CoraKey, *, timeout: float,
                 retry: RetryPolicy | None, pool_size: int, window: float) -> None:
        super().__init__(base_url, timeout=timeout, retry=retry, pool_size=pool_size)
        self.key = key
        self.window = window
        self.clock_offset = 0.0  # server time minus ours, learnt from a Date header
        # Why the last clock-skew refusal could not be corrected, or None once it was.
        self.skew_note: str | None = None

    def auth_headers(self, method: str, path_url: str, body: bytes) -> dict[str, str]:
        if method in ("GET", "HEAD"):
            return get_headers(self.key)
        return signed_headers(self.key, method, path_url, body, time.time() + self.clock_offset)

    def rate_limit_wait(self, retry_after: float | None, attempt: int) -> float:
        # A whole window at least: a server may restart its window on the refused request,
        # and a Retry-After may be stale or missing. 429s are rare enough (the limiter's
        # room keeps them away) that the safe wait costs little.
        if retry_after is None:
            return max(self.window, 1.0)
        return max(retry_after, self.window)

    def retry_once_after(self, reply: Reply) -> bool:
        if _code(reply) != SKEW:
            return False
        date = reply.headers.get("Date")
        if not date:
            self.skew_note = "the answer carried no Date header to correct the clock from"
            return False
        try:
            server_now = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            self.skew_note = f"the answer's Date header {date[:40]!r} could not be read"
            return False
        # Date has whole seconds: half a second is the expected error, far inside 5 minutes.
        self.clock_offset = server_now + 0.5 - reply.received_at
        self.skew_note = None
        return True

    def error_for(self, reply: Reply, what: str) -> ApiError:
        code = _code(reply)
        data = reply.data if isinstance(reply.data, dict) else {}
        text = data.get("message") if isinstance(data.get("message"), str) else None
        text = text or reply.text.strip() or f"HTTP {reply.status}"
        details = data.get("details")
        message = f"Cora refused {what}: {text}"
        kind: type[ApiError]
        if code == SKEW:
            kind = ClockSkewError
            if self.skew_note is not None:
                message += (f" (this machine's clock is more than 5 minutes from the "
                            f"server's and {self.skew_note}: check the system clock)")
            else:
                message += (
                    f" (the clock correction learnt from the server's Date header, "
                    f"{self.clock_offset:+.0f} s, did not help: check the system clock)"
                )
        elif reply.status == 401 or code in AUTH_CODES:
            kind = AuthError
            message += f" (key id {self.key.key_id!r}: check the key and its secret)"
        elif reply.status == 404:
            kind = NotFoundError
        elif reply.status == 429:
            kind = RateLimitError
        elif reply.status >= 500:
            kind = ServerError
        else:
            kind = RequestRejectedError
        return kind(message, status=reply.status, code=code, details=details)


def _code(reply: Reply) -> str | None:
    if isinstance(reply.data, dict) and isinstance(reply.data.get("code"), str):
        return str(reply.data["code"])
    return None


class CoraClient:
    """A client of Cora's external API for one key.

    Writes are HMAC-signed at the instant each attempt is sent; bulk upserts pass through a
    limiter shared by every client of the same key in this process (one request per
    ``min_interval`` seconds), so re-running a notebook cell does not draw a 429.

    Failed attempts (429, 5xx, timeouts, dropped connections) are retried, each one signed
    afresh and passed through the limiter again. That is safe because a bulk upsert is keyed
    by ``externalId``: applying the same rows twice leaves the same accounts (the second time
    they come back ``unchanged``), so a retry after a lost answer cannot duplicate anything.

    ``api_key`` and ``base_url`` default to ``CORA_API_KEY`` and ``CORA_BASE_URL``.
    ``state`` (default ``RECOCORA_STATE_URL``) is where the rate limit, ``journal=True`` and
    background runs are kept: this machine's files, or a ``postgresql://`` database that
    every machine using the key shares (``"local"`` insists on the files).

    >>> cora = CoraClient("cora_org_k1.s3cret", "http://127.0.0.1:8765", min_interval=0)
    >>> cora
    CoraClient(base_url='http://127.0.0.1:8765', key_id='k1', min_interval=0)
    """

    MAX_ROWS = 500
    MAX_GET_IDS = 200

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        min_interval: float = 20.0,
        timeout: float = 30.0,
        *,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 4,
        state: str | None = None,
    ) -> None:
        key, url = cora_settings(api_key, base_url)
        self._key = parse_key(key)
        self.state_url = state_url(state)
        self.base_url = url
        self.min_interval = float(min_interval)
        self.max_concurrency = max(1, int(max_concurrency))
        self.transport = _CoraTransport(
            url, self._key, timeout=timeout, retry=retry, pool_size=self.max_concurrency,
            window=self.min_interval,
        )
        self.limiter: Limiter = limiter_for(url, self._key.key_id, self.min_interval,
                                            state=self.state_url)

    @property
    def key_id(self) -> str:
        return self._key.key_id

    @property
    def rate_limited(self) -> int:
        """429 answers this client met so far."""
        return self.transport.rate_limited

    def pace(self) -> Pace:
        """This client's limits for estimates: ``MAX_ROWS`` rows per bulk request, one
        request per ``min_interval`` seconds plus the limiter's room, one turn in N while N
        runs share the key (through a state database).

        >>> CoraClient("cora_org_k1.s3cret", "http://127.0.0.1:8765").pace().seconds(1_000)
        20.075
        """
        runs = self.limiter.sharers()
        turn = self.limiter.expected_gap() / runs
        return Pace(self.MAX_ROWS, self.min_interval, 1,
                    room=max(0.0, turn - self.min_interval) if turn else 0.0, sharing=runs)

    def __repr__(self) -> str:
        return (f"CoraClient(base_url={self.base_url!r}, key_id={self.key_id!r}, "
                f"min_interval={self.min_interval:g})")

    def close(self) -> None:
        self.transport.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (a preview widget refuses to write with it)."""
        return self.transport.closed

    # -- bulk -------------------------------------------------------------------------------

    def bulk_upsert_raw(self, body: bytes) -> dict[str, Any]:
        """Send one serialised bulk-upsert body and return the decoded answer.

        ``body`` is sent byte for byte as given and those same bytes are signed.

        >>> body = b'{"accounts":[{"externalId":"A1"}],"dryRun":true}'
        >>> cora.bulk_upsert_raw(body)  # doctest: +SKIP
        {'success': True, 'code': 'ACCOUNTS_BULK_UPSERT_COMPLETED', ...}
        """
        reply = self.transport.request(
            "POST", f"{ACCOUNTS}/bulk-upsert", body=body,
            before_attempt=self.limiter.acquire, on_rate_limited=self.limiter.defer,
            on_connection_lost=self.limiter.new_connection,
            on_not_sent=self.limiter.release, on_time=self.limiter.on_time,
        )
        self.limiter.settled()
        if not isinstance(reply.data, dict) or not isinstance(reply.data.get("results"), list):
            raise ApiError(
                "Cora answered the bulk upsert without a results list; the rows' outcome is "
                "unknown (re-running is safe: upserts are idempotent).",
                status=reply.status, code=_code(reply),
            )
        return reply.data

    def bulk_upsert(
        self, accounts: list[dict[str, Any]], *, dry_run: bool = False,
        include_changes: bool = False,
    ) -> dict[str, Any]:
        """Upsert up to 500 account dicts in one request (see ``df.cora.upsert`` for frames).

        >>> cora.bulk_upsert([{"externalId": "A1", "bucket": "30-60"}])  # doctest: +SKIP
        """
        if not 1 <= len(accounts) <= self.MAX_ROWS:
            raise ValueError(f"a bulk upsert takes 1 to {self.MAX_ROWS} accounts")
        return self.bulk_upsert_raw(
            dumps({"accounts": accounts, "dryRun": dry_run, "includeChanges": include_changes})
        )

    # -- reads ------------------------------------------------------------------------------

    def fetch_accounts(self, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Current accounts by ``externalId`` (absent ids are missing from the dict).

        Asks 200 ids per request, up to ``max_concurrency`` requests at once. These reads
        spend none of the bulk endpoint's rate-limit slots.
        """
        ids = list(dict.fromkeys(str(i) for i in external_ids))
        batches = [ids[i : i + self.MAX_GET_IDS] for i in range(0, len(ids), self.MAX_GET_IDS)]
        found: dict[str, dict[str, Any]] = {}
        if not batches:
            return found
        with ThreadPoolExecutor(min(self.max_concurrency, len(batches))) as pool:
            for accounts in pool.map(self._fetch_batch, batches):
                for acc in accounts:
                    if isinstance(acc, dict) and isinstance(acc.get("externalId"), str):
                        found[acc["externalId"]] = acc
        return found

    def _fetch_batch(self, ids: list[str]) -> list[Any]:
        reply = self.transport.request("GET", ACCOUNTS, query=[("externalIds", ",".join(ids))])
        data = reply.data if isinstance(reply.data, dict) else {}
        accounts = data.get("accounts")
        return accounts if isinstance(accounts, list) else []

    def get_accounts(self, external_ids: Iterable[str]) -> pd.DataFrame:
        """Current accounts as a DataFrame, one row per found id, nested fields as dotted
        columns (``person.name.first``); ``attrs["not_found"]`` lists the ids not found.

        >>> cora.get_accounts(["ext-000001", "nope"]).attrs["not_found"]  # doctest: +SKIP
        ['nope']
        """
        ids = list(dict.fromkeys(str(i) for i in external_ids))
        found = self.fetch_accounts(ids)
        rows = [found[i] for i in ids if i in found]
        frame = pd.json_normalize(rows) if rows else pd.DataFrame({"externalId": []})
        frame.attrs["not_found"] = [i for i in ids if i not in found]
        return frame

    def get_account(self, external_id: str) -> dict[str, Any]:
        """One account by ``externalId``; :class:`~recocora.errors.NotFoundError` if absent.

        >>> cora.get_account("ext-000001")["externalId"]  # doctest: +SKIP
        'ext-000001'
        """
        reply = self.transport.request("GET", f"{ACCOUNTS}/{quote(external_id, safe='')}")
        return _account(reply)

    def update_account(self, external_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Update one account with a signed PATCH (objects deep-merged, the rest replaced).

        >>> cora.update_account("ext-000001", {"clientStatus": "paid"})  # doctest: +SKIP
        """
        reply = self.transport.request(
            "PATCH", f"{ACCOUNTS}/{quote(external_id, safe='')}", body=dumps(fields)
        )
        return _account(reply)


def _account(reply: Reply) -> dict[str, Any]:
    data = reply.data if isinstance(reply.data, dict) else {}
    account = data.get("account")
    if not isinstance(account, dict):
        raise ApiError("Cora answered without an account object", status=reply.status)
    return account
