"""``python -m recocora``: the same as the ``recocora`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
