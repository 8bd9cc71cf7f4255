"""Progress bars for bulk runs: ``tqdm.auto`` (a widget in notebooks, text elsewhere)."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

__all__ = ["RunProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``3999`` → ``'~67 min'``; short runs in seconds.

    >>> format_duration(4000)
    '~67 min'
    """
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


class RunProgress:
    """A bar over rows with live counts by status.

    ``eta`` (seconds), when known up front from the rate limit, is shown in the description
    so a long run says how long it will take before the first answer comes back.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True,
                 eta: float | None = None) -> None:
        label = f"{desc} ({format_duration(eta)})" if eta is not None and eta >= 1 else desc
        self.bar: Any = tqdm(
            total=total, desc=label, unit="row", disable=not enabled or total == 0,
            dynamic_ncols=True, leave=True,
        )

    def advance(self, rows: int, counts: Mapping[str, int]) -> None:
        self.bar.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
