"""``df.cora``: the DataFrame accessor. It holds the frame and delegates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

import pandas as pd

from .._progress import Listener
from .._report import changes_table
from .._state import JournalSpec
from . import _schema as schema
from ._adapter import UpsertOptions, upsert
from ._client import CoraClient
from ._diff import diff as local_diff
from ._upsert import Mode, OnInvalid, plan_upsert

if TYPE_CHECKING:
    from .._runs import Run
    from ..widgets._preview import CoraPreview

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

    @overload
    def upsert(
        self,
        client: CoraClient | None = None,
        dry_run: bool = False,
        include_changes: bool = False,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        skip_unchanged: bool = False,
        *,
        background: Literal[False] = False,
    ) -> pd.DataFrame: ...

    @overload
    def upsert(
        self,
        client: CoraClient | None = None,
        dry_run: bool = False,
        include_changes: bool = False,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        skip_unchanged: bool = False,
        *,
        background: Literal[True, "queue"],
    ) -> Run: ...

    def upsert(
        self,
        client: CoraClient | None = None,
        dry_run: bool = False,
        include_changes: bool = False,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        skip_unchanged: bool = False,
        *,
        background: bool | Literal["queue"] = False,
    ) -> pd.DataFrame | Run:
        """Create or update Cora accounts by ``externalId``, 500 rows per request.

        The whole frame is validated first: with ``on_invalid="raise"`` nothing is sent when
        any row is invalid (the :class:`~recocora.errors.ValidationError` carries the failure
        cases); with ``"skip"`` the valid rows are sent and the rest marked ``invalid``.
        ``mode="create"`` also requires ``phoneNumber``, ``portfolioId`` and
        ``metadata.filenumber`` on every row.

        Returns a frame with the input's index and one row per input row: ``cora_status``
        (``created``, ``updated``, ``unchanged``, ``failed``, ``invalid``, ``skipped``,
        ``not_sent``), ``cora_account_id``, ``cora_updated_at``, ``cora_code``,
        ``cora_message``, ``cora_details``, ``cora_changes`` (with ``include_changes=True``),
        ``cora_batch``, ``cora_external_id`` (the id as sent) and ``cora_previous_status``
        (for ``skipped`` rows: what Cora answered when that content was sent). ``attrs`` hold
        the run summary (``requests``, ``rows_sent``, ``skipped``, ``counts``, ...). A
        request-level error mid-run carries the partial result in ``.result``.

        Long runs:

        - ``journal="backfill.db"`` (or ``True`` for a file in the cache directory) records
          every answer as it arrives. Running the same call again sends only the rows never
          acknowledged, changed since, or failed; the others come back ``skipped`` with their
          earlier outcome (incremental sync: re-running a backfill where 1% of rows changed
          sends 1% of them). A dry run is recorded as such and never makes a row count as
          applied. ``force=True`` sends every row again.
        - ``max_failed`` stops the run once more rows failed than a count (``int``) or a
          fraction of the rows sent so far (``float``), raising
          :class:`~recocora.TooManyFailedError` with the partial result.
        - Ctrl-C stops after recording the answer in flight (if it arrived) and raises
          :class:`~recocora.RunInterrupted` (a ``KeyboardInterrupt``) whose
          ``.result`` is the partial result.
        - ``only=res`` sends just the rows ``res`` (an earlier result of this frame) marks
          ``failed`` or ``not_sent``, and returns ``res`` with their new outcomes.
        - ``skip_unchanged=True`` reads the accounts first (``GET``, 200 ids a request,
          the reads ``df.cora.diff()`` makes, several at once, free of the bulk limit) and
          sends only the rows that would be ``created``, ``updated`` or ``failed``; rows whose
          account already holds every value they carry come back ``skipped`` and cost no
          slot, and the rest are packed into full requests of 500. It trusts that nobody
          writes those accounts between the read and the write; upserts are idempotent, so
          the worst case is a row sent that need not have been, never a row lost. Works with
          or without a journal (the journal's skip comes first, then the reads).
        - ``on_progress`` is called after every answer with a progress event (rows done of
          the total, counts by status, requests, 429s met, seconds left); the last one has
          ``finished=True`` and the result's counts.
        - ``background=True`` validates the frame here, then hands the run to a worker
          process of its own and returns a :class:`recocora.Run` at once (``run.wait()``,
          ``run.cancel()``, ``recocora.attach(run.id)`` after a kernel restart). Its journal
          is ``journal`` or, by default, one of its own (a file in the run's folder, or rows
          in the state database). With a state database (``RECOCORA_STATE_URL`` or the
          client's ``state=``) the run is kept there, so any machine can follow, resume and
          read it; ``background="queue"`` starts no process here but leaves the run for a
          ``recocora worker`` holding the same key, wherever one runs.

        >>> res = df.cora.upsert(client=cora, journal="backfill.db")  # doctest: +SKIP
        >>> res = df.cora.upsert(client=cora, only=res)  # doctest: +SKIP
        >>> df.join(res)  # doctest: +SKIP
        """
        if background:
            from .._runs import start

            return start("cora", self._df, client, {
                "dry_run": dry_run, "include_changes": include_changes, "columns": columns,
                "on_invalid": on_invalid, "mode": mode, "journal": journal, "force": force,
                "max_failed": max_failed, "only": only, "skip_unchanged": skip_unchanged,
            }, on_progress=on_progress, background=background)
        options = UpsertOptions(
            dry_run=dry_run, include_changes=include_changes, columns=columns,
            on_invalid=on_invalid, mode=mode, progress=progress, journal=journal, force=force,
            max_failed=max_failed, on_progress=on_progress, skip_unchanged=skip_unchanged,
        )
        return upsert(self._df, client, options, only=only)

    def changes(self) -> pd.DataFrame:
        """On a result frame: one row per changed field (``index``, ``externalId``,
        ``field``, ``from``, ``to``).

        >>> df.cora.upsert(include_changes=True).cora.changes()  # doctest: +SKIP
        """
        return changes_table(self._df)

    def diff(
        self,
        client: CoraClient | None = None,
        *,
        include_changes: bool = True,
        columns: dict[str, str] | None = None,
        on_invalid: OnInvalid = "raise",
        mode: Mode = "upsert",
        progress: bool = True,
    ) -> pd.DataFrame:
        """A free preview of :meth:`upsert`: what it would do to every row, worked out from
        the accounts' current state (read with ``GET ?externalIds=``, 200 per request).
        Writes nothing and spends none of the bulk endpoint's 20-second slots.

        Returns the frame a dry run returns (same columns and statuses: ``created``,
        ``updated``, ``unchanged``, ``failed`` with Cora's codes such as
        ``MISSING_REQUIRED_FIELD``, ``invalid``), with ``cora_changes`` listing
        ``{field, from, to}`` per updated row, so ``.cora.changes()`` works on it. ``attrs``:
        ``preview="local"``, ``dry_run=True``, ``requests`` (GETs made), ``bulk_requests``
        and ``eta_s`` (how many bulk requests the real upsert needs and how long they take at
        the client's ``min_interval``). Rows written by others after the preview, and vendor
        rules the contract does not publish, can still make the real run differ.

        >>> res = df.cora.diff(client=cora)  # doctest: +SKIP
        >>> res.cora.changes()  # doctest: +SKIP
        """
        options = UpsertOptions(include_changes=include_changes, columns=columns,
                                on_invalid=on_invalid, mode=mode, progress=progress)
        return local_diff(self._df, client, options)

    def preview(self, client: CoraClient | None = None, **upsert_kwargs: Any) -> CoraPreview:
        """A notebook widget showing what :meth:`upsert` would do, before anything is written.

        It shows the validation report, the counts (created / updated / unchanged / failed)
        worked out with :meth:`diff` (no bulk slot spent), the field changes as a filterable,
        paged table and how long the real run takes at the rate limit. Its **Apply** button
        first reads the accounts again (the same diff) and, when rows changed since the
        preview, says so with the new counts and asks for a confirmation; it also asks when
        existing accounts would be updated. Then it runs ``upsert(client=client,
        **upsert_kwargs)`` with a live progress bar, the header says what was written and
        ``.result`` holds the result frame. A closed client is refused before any request.
        ``progress`` shows a bar while the preview is worked out. Outside a widget front end
        it shows as static HTML or text.

        >>> w = df.cora.preview(client=cora, on_invalid="skip")  # doctest: +SKIP
        >>> w  # doctest: +SKIP
        """
        from ..widgets._preview import CoraPreview

        return CoraPreview(self._df, client, **upsert_kwargs)
