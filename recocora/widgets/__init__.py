"""Notebook widgets: preview what a bulk call would do, confirm, apply with live progress.

>>> w = df.cora.preview(client=cora)  # doctest: +SKIP
>>> w  # shows the preview; its Apply button runs df.cora.upsert(...)  # doctest: +SKIP
"""

from __future__ import annotations

from ._preview import CoraPreview, Preview, RecotapPreview
from ._results import PagedTable
from ._review import MatchReview

__all__ = ["CoraPreview", "MatchReview", "PagedTable", "Preview", "RecotapPreview"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
