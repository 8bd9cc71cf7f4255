"""recocora: push pandas DataFrames into Cora and Recotap in bulk, safely.

Importing it registers two DataFrame accessors:

>>> import recocora
>>> res = df.cora.upsert(client=recocora.CoraClient())          # doctest: +SKIP
>>> res = df.recotap.map_ids(client=recocora.RecotapClient())   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._progress import Progress
from ._report import changes_table
from ._runs import Run, attach, runs
from .cora import accessor as _cora_accessor  # registers df.cora
from .cora._client import CoraClient
from .cora._phones import normalize_phone
from .errors import (
    ApiError,
    AuthError,
    ClockSkewError,
    ConfigError,
    JournalError,
    NotFoundError,
    RateLimitError,
    RecocoraError,
    RequestRejectedError,
    RunError,
    RunInterrupted,
    ServerError,
    StateError,
    TooManyFailedError,
    TransportError,
    UnreachableError,
    ValidationError,
)
from .recotap import accessor as _recotap_accessor  # registers df.recotap
from .recotap._client import RecotapClient
from .recotap._domains import normalize_domain
from .recotap._match import match_accounts

del _cora_accessor, _recotap_accessor

__all__ = [
    "ApiError",
    "AuthError",
    "ClockSkewError",
    "ConfigError",
    "CoraClient",
    "JournalError",
    "NotFoundError",
    "Progress",
    "RateLimitError",
    "RecocoraError",
    "RecotapClient",
    "RequestRejectedError",
    "Run",
    "RunError",
    "RunInterrupted",
    "ServerError",
    "StateError",
    "TooManyFailedError",
    "TransportError",
    "UnreachableError",
    "ValidationError",
    "__version__",
    "attach",
    "changes_table",
    "match_accounts",
    "normalize_domain",
    "normalize_phone",
    "runs",
]

# Everything public reports the front door as its home, so reprs, tracebacks and docs name
# ``recocora.CoraClient``, never the private module it happens to live in (httpx's habit).
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("recocora."):
        _obj.__module__ = "recocora"
del _name, _obj
