"""``python -m recocora``: the same as the ``recocora`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
