"""The one place that reads the environment.

Library classes take explicit arguments; only the helpers here look at ``CORA_API_KEY``,
``CORA_BASE_URL``, ``RECOTAP_API_KEY``, ``RECOTAP_BASE_URL``, ``RECOCORA_CACHE_DIR`` and
``RECOCORA_STATE_URL``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from .errors import ConfigError

__all__ = [
    "CORA_DEFAULT_BASE_URL",
    "RECOTAP_DEFAULT_BASE_URL",
    "cache_dir",
    "check_base_url",
    "cora_settings",
    "held_apis",
    "mask_secret",
    "recotap_settings",
    "state_url",
]

CORA_DEFAULT_BASE_URL = "https://api.corafone.com"
RECOTAP_DEFAULT_BASE_URL = "https://eapi.recotap.com/api/v1"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def cora_settings(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    """Fill a missing Cora key or base URL from the environment."""
    key = api_key if api_key is not None else _env("CORA_API_KEY")
    if not key:
        raise ConfigError(
            "No Cora API key: pass api_key=... or set CORA_API_KEY "
            "(format cora_org_<keyId>.<secret>)."
        )
    url = base_url or _env("CORA_BASE_URL") or CORA_DEFAULT_BASE_URL
    return key, check_base_url(url)


def recotap_settings(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    """Fill a missing Recotap key or base URL from the environment."""
    key = api_key if api_key is not None else _env("RECOTAP_API_KEY")
    if not key:
        raise ConfigError("No Recotap API key: pass api_key=... or set RECOTAP_API_KEY.")
    url = base_url or _env("RECOTAP_BASE_URL") or RECOTAP_DEFAULT_BASE_URL
    return key, check_base_url(url)


def held_apis() -> tuple[str, ...]:
    """The APIs whose key the environment holds (``CORA_API_KEY``, ``RECOTAP_API_KEY``)."""
    return tuple(api for api, name in (("cora", "CORA_API_KEY"), ("recotap", "RECOTAP_API_KEY"))
                 if _env(name))


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """Return ``url`` without a trailing slash, refusing plain HTTP off the loopback.

    Keys travel in headers, so ``http://`` is only allowed to a server on this machine
    (the sandbox).
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Base URL {url!r} is not an http(s) URL with a host.")
    if parts.query or parts.fragment:
        raise ConfigError(f"Base URL {url!r} must not carry a query or fragment.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"Refusing plain http:// to {parts.hostname}: API keys would travel unencrypted. "
            "Use https://, or http:// only to a loopback address such as the sandbox."
        )
    return url.strip().rstrip("/")


def cache_dir() -> Path:
    """Where recocora keeps its own files: default journals (``journal=True``) and the rate
    limit state that processes using the same Cora key share.

    ``RECOCORA_CACHE_DIR`` chooses the folder; otherwise it is the user's cache directory
    (``~/.cache/recocora`` on Linux, ``~/Library/Caches/recocora`` on macOS). The folder is
    not created here; nothing secret is ever written to it.

    >>> str(cache_dir()).endswith("recocora")  # doctest: +SKIP
    True
    """
    chosen = _env("RECOCORA_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    return Path(platformdirs.user_cache_dir("recocora", appauthor=False))


def state_url(state: str | None) -> str | None:
    """Where the state shared by machines lives: a ``postgresql://`` URL, or ``None`` for this
    machine's files (the default: SQLite journals and a locked slot file per key).

    ``state`` is a client's ``state=`` argument: a URL, ``"local"`` (this machine's files even
    when ``RECOCORA_STATE_URL`` is set), or ``None`` (``RECOCORA_STATE_URL``, else local).

    >>> state_url("local") is None
    True
    >>> state_url("postgresql://app@db.internal/recocora")
    'postgresql://app@db.internal/recocora'
    """
    chosen = state.strip() if state is not None else _env("RECOCORA_STATE_URL")
    if not chosen or chosen == "local":
        return None
    scheme = urlsplit(chosen).scheme
    if scheme not in ("postgresql", "postgres"):
        # Only the scheme is shown: the rest may hold a password (or be a key=value string).
        shown = f"a {scheme}:// URL" if scheme else "the value given"
        raise ConfigError(
            f"The state ({shown}) is neither 'local' nor a postgresql:// URL. Set "
            "RECOCORA_STATE_URL=postgresql://user@host:5432/dbname (or pass state=) to share "
            "the rate limit, journals and runs between machines, or leave it unset."
        )
    return chosen


def mask_secret(secret: str, keep: int = 4) -> str:
    """``'rtp_live_abcdef123'`` → ``'rtp_…****'``: enough to tell keys apart, never the secret."""
    if not secret:
        return "<none>"
    head = secret[: min(keep, len(secret) // 4)]
    return f"{head}…****"
