"""``df.cora``: the DataFrame accessor. It holds the frame and delegates."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from . import schema
from .client import CoraClient
from .upsert import Mode, OnInvalid, changes_table, plan_upsert, upsert

__all__ = ["CoraAccessor"]


@pd.api.extensions.register_dataframe_accessor("cora")
class CoraAccessor:
    """Cora operations on a DataFrame of accounts (``import recocora`` registers it).

    Column names are API fields; a dotted name is a path into an object field
    (``metadata.filenumber``, ``person.name.first``). Missing cells are left out of the row,
    never sent as null.
    """

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def validate(
        self, columns: dict[str, str] | None = None, mode: Mode = "upsert"
    ) -> pd.DataFrame:
        """Every problem in the frame, as a failure-cases frame (empty when valid):
        columns ``index``, ``column``, ``check``, ``value``, ``message``. Sends nothing.

        >>> df.cora.validate()  # doctest: +SKIP
        """
        return schema.validate(schema.prepare(self._df, columns=columns), mode=mode)

    def payloads(
        self,
        *,
        dry_run: bool = False,
        include_changes: bool = False,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
    ) -> Iterator[bytes]:
        """The exact request bodies ``upsert`` would send, one per chunk of 500, built lazily.

        >>> body = next(df.cora.payloads())  # doctest: +SKIP
        """
        plan = plan_upsert(self._df, columns=columns, on_invalid=on_invalid, mode=mode)
        for _, _, body in plan.bodies(dry_run=dry_run, include_changes=include_changes):
            yield body

    def upsert(
        self,
        client: CoraClient | None = None,
        dry_run: bool = False,
        include_changes: bool = False,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
        progress: bool = True,
    ) -> pd.DataFrame:
        """Create or update Cora accounts by ``externalId``, 500 rows per request.

        The whole frame is validated first: with ``on_invalid="raise"`` nothing is sent when
        any row is invalid (the :class:`~recocora.errors.ValidationError` carries the failure
        cases); with ``"skip"`` the valid rows are sent and the rest marked ``invalid``.
        ``mode="create"`` also requires ``phoneNumber``, ``portfolioId`` and
        ``metadata.filenumber`` on every row.

        Returns a frame with the input's index and one row per input row: ``cora_status``
        (``created``, ``updated``, ``unchanged``, ``failed``, ``invalid``, ``not_sent``),
        ``cora_account_id``, ``cora_updated_at``, ``cora_code``, ``cora_message``,
        ``cora_details``, ``cora_changes`` (with ``include_changes=True``), ``cora_batch``
        and ``cora_external_id`` (the id as sent). ``attrs`` hold the run summary. A
        request-level error mid-run carries the partial result in ``.result``.

        >>> res = df.cora.upsert(client=cora)  # doctest: +SKIP
        >>> df.join(res)  # doctest: +SKIP
        """
        return upsert(
            self._df, client, dry_run=dry_run, include_changes=include_changes,
            columns=columns, on_invalid=on_invalid, mode=mode, progress=progress,
        )

    def changes(self) -> pd.DataFrame:
        """On a result frame: one row per changed field (``index``, ``externalId``,
        ``field``, ``from``, ``to``).

        >>> df.cora.upsert(include_changes=True).cora.changes()  # doctest: +SKIP
        """
        return changes_table(self._df)
