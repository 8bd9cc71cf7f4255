"""Notebook widgets: preview what a bulk call would do, confirm, apply with live progress.

>>> w = df.cora.preview(client=cora)  # doctest: +SKIP
>>> w  # shows the preview; its Apply button runs df.cora.upsert(...)  # doctest: +SKIP
"""

from __future__ import annotations

from .preview import CoraPreview, Preview, RecotapPreview
from .results import PagedTable

__all__ = ["CoraPreview", "PagedTable", "Preview", "RecotapPreview"]
