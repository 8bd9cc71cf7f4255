"""recocora: push pandas DataFrames into Cora and Recotap in bulk, safely.

Importing it registers two DataFrame accessors:

>>> import recocora
>>> res = df.cora.upsert(client=recocora.CoraClient())          # doctest: +SKIP
>>> res = df.recotap.map_ids(client=recocora.RecotapClient())   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .cora import accessor as _cora_accessor  # registers df.cora
from .cora.client import CoraClient
from .cora.schema import normalize_phone
from .cora.upsert import changes_table
from .errors import (
    ApiError,
    AuthError,
    ClockSkewError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    RecocoraError,
    RequestRejectedError,
    ServerError,
    TransportError,
    ValidationError,
)
from .journal import JournalError, RunInterrupted, TooManyFailedError
from .recotap import accessor as _recotap_accessor  # registers df.recotap
from .recotap.client import RecotapClient
from .recotap.domains import normalize_domain

del _cora_accessor, _recotap_accessor

__all__ = [
    "ApiError",
    "AuthError",
    "ClockSkewError",
    "ConfigError",
    "CoraClient",
    "JournalError",
    "NotFoundError",
    "RateLimitError",
    "RecocoraError",
    "RecotapClient",
    "RequestRejectedError",
    "RunInterrupted",
    "ServerError",
    "TooManyFailedError",
    "TransportError",
    "ValidationError",
    "__version__",
    "changes_table",
    "normalize_domain",
    "normalize_phone",
]
