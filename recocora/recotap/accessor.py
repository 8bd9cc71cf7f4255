"""``df.recotap``: the Recotap methods on any DataFrame (registered on import).

>>> import recocora.recotap.accessor  # doctest: +SKIP
>>> df.recotap.validate()              # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal, overload

import pandas as pd

from .._progress import Listener
from .._state import JournalSpec
from ._adapter import MapOptions, map_ids
from ._adapter import diff as local_diff
from ._client import RecotapClient
from ._decisions import accepted
from ._mapping import OnInvalid
from ._match import Columns, match_accounts
from ._schema import validate

if TYPE_CHECKING:
    from .._runs import Run
    from ..widgets._preview import RecotapPreview
    from ..widgets._review import MatchReview

__all__ = ["RecotapAccessor"]


@pd.api.extensions.register_dataframe_accessor("recotap")
class RecotapAccessor:
    """Holds the frame and hands it, with its options, to the Recotap run."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    @overload
    def map_ids(
        self,
        client: RecotapClient | None = None,
        domain: Hashable = "domain",
        external_id: Hashable = "externalId",
        overwrite: bool = False,
        verify: bool = False,
        on_invalid: OnInvalid = "raise",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        *,
        background: Literal[False] = False,
    ) -> pd.DataFrame: ...

    @overload
    def map_ids(
        self,
        client: RecotapClient | None = None,
        domain: Hashable = "domain",
        external_id: Hashable = "externalId",
        overwrite: bool = False,
        verify: bool = False,
        on_invalid: OnInvalid = "raise",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        *,
        background: Literal[True, "queue"],
    ) -> Run: ...

    def map_ids(
        self,
        client: RecotapClient | None = None,
        domain: Hashable = "domain",
        external_id: Hashable = "externalId",
        overwrite: bool = False,
        verify: bool = False,
        on_invalid: OnInvalid = "raise",
        progress: bool = True,
        journal: JournalSpec = None,
        force: bool = False,
        max_failed: int | float | None = None,
        only: pd.DataFrame | None = None,
        on_progress: Listener | None = None,
        *,
        background: bool | Literal["queue"] = False,
    ) -> pd.DataFrame | Run:
        """Write the frame's external ids onto Recotap accounts matched by domain.

        One result row per input row, with the frame's index. No existing id is replaced
        unless ``overwrite=True``.

        ``journal="mappings.db"`` (or ``True``) records every answer, and a re-run skips the
        mappings already acknowledged (``skipped``); ``force=True`` sends them again.
        ``max_failed`` (a count, or a fraction of the rows sent) stops the run once more
        mappings came back ``not_found``. ``only=res`` maps just the rows an earlier
        result marks ``failed`` or ``not_sent``. Ctrl-C raises
        :class:`~recocora.RunInterrupted` carrying the partial ``.result``.
        ``on_progress`` is called after every answer with a progress event (rows done,
        counts by status, requests, 429s met); the last one has ``finished=True``.

        ``background=True`` validates here, then returns a :class:`recocora.Run` at once
        while a worker process of its own does the run; ``background="queue"`` leaves it for
        a ``recocora worker`` (see ``df.cora.upsert``).

        >>> res = crm.recotap.map_ids(client=rtp, journal=True)  # doctest: +SKIP
        >>> res = crm.recotap.map_ids(client=rtp, only=res)      # doctest: +SKIP
        >>> res["recotap_status"].value_counts()             # doctest: +SKIP
        """
        if background:
            from .._runs import start

            return start("recotap", self._df, client, {
                "domain": domain, "external_id": external_id, "overwrite": overwrite,
                "verify": verify, "on_invalid": on_invalid, "journal": journal, "force": force,
                "max_failed": max_failed, "only": only,
            }, on_progress=on_progress, background=background)
        options = MapOptions(
            domain=domain, external_id=external_id, overwrite=overwrite, verify=verify,
            on_invalid=on_invalid, progress=progress, journal=journal, force=force,
            max_failed=max_failed, on_progress=on_progress,
        )
        return map_ids(self._df, client, options, only=only)

    def validate(
        self, domain: Hashable = "domain", external_id: Hashable = "externalId"
    ) -> pd.DataFrame:
        """Failure cases (``index, column, check, value, message``), empty when every row can
        become a mapping. Nothing is sent.

        >>> pd.DataFrame({"domain": ["localhost"], "externalId": ["a"]}).recotap.validate()
        ... # doctest: +SKIP
        """
        return validate(self._df, domain=domain, external_id=external_id)

    def diff(
        self,
        client: RecotapClient | None = None,
        *,
        domain: Hashable = "domain",
        external_id: Hashable = "externalId",
        overwrite: bool = False,
        on_invalid: OnInvalid = "raise",
        progress: bool = True,
    ) -> pd.DataFrame:
        """A preview of :meth:`map_ids` that writes nothing: the same result frame, each row
        saying what would happen (``mapped``, ``unchanged``, ``already_mapped``,
        ``superseded``, ``not_found``, ``invalid``), read from the accounts' current state;
        ``attrs["preview"] == "local"``, ``read_requests`` (GETs made) and
        ``bulk_requests`` (mapping requests the real run needs).

        >>> crm.recotap.diff(client=rtp)["recotap_status"].value_counts()  # doctest: +SKIP
        """
        options = MapOptions(domain=domain, external_id=external_id, overwrite=overwrite,
                             on_invalid=on_invalid, progress=progress)
        return local_diff(self._df, client, options)

    def preview(
        self, client: RecotapClient | None = None, **map_ids_kwargs: Any
    ) -> RecotapPreview:
        """A notebook widget showing what :meth:`map_ids` would do, before anything is written.

        It shows the validation report, the counts (mapped / not_found / already_mapped /
        superseded / unchanged) worked out with :meth:`diff`, a filterable, paged table of
        domain, id to write and the id each account holds now, and the requests the real run
        needs. Its **Apply** button first reads the accounts again (the same diff) and, when
        rows changed since the preview, says so with the new counts and asks for a
        confirmation; it also asks when ``overwrite=True`` would replace an id an account
        already holds. Then it runs ``map_ids(client=client, **map_ids_kwargs)`` with a live
        progress bar, the header says what was written and ``.result`` holds the result
        frame. A closed client is refused before any request.
        ``progress`` shows a bar while the preview is worked out. Outside a widget front end
        it shows as static HTML or text.

        >>> w = crm.recotap.preview(client=rtp, overwrite=True)  # doctest: +SKIP
        >>> w  # doctest: +SKIP
        """
        from ..widgets._preview import RecotapPreview

        return RecotapPreview(self._df, client, **map_ids_kwargs)

    def match(
        self,
        accounts: pd.DataFrame,
        *,
        name: Hashable | None = None,
        domain: Columns = None,
        email: Columns = None,
        external_id: Hashable | None = None,
        decisions: str | os.PathLike[str] | None = None,
    ) -> pd.DataFrame:
        """Match the frame's rows to Recotap accounts by domain, e-mail and name
        (:func:`recocora.match_accounts`, which says what every column means).

        >>> matches = crm.recotap.match(rtp.unmapped_accounts(all=True), name="company",
        ...                             domain="website", email="email")  # doctest: +SKIP
        >>> matches["match_status"].value_counts()  # doctest: +SKIP
        """
        return match_accounts(
            self._df, accounts, name=name, domain=domain, email=email,
            external_id=external_id, decisions=decisions,
        )

    def review(self, page_size: int = 10) -> MatchReview:
        """A notebook widget to review a matches frame: counts by status, filters, search,
        each row's candidates with score and reason, **Accept** / **Reject** / **No match**,
        the conflicts grouped by account, and **Accept all auto**. Decisions are written into
        the frame and appended to its decisions file (``decisions=`` of the match).

        >>> matches.recotap.review()  # doctest: +SKIP
        """
        from ..widgets._review import MatchReview

        return MatchReview(self._df, page_size=page_size)

    def accepted(self, auto: bool = True) -> pd.DataFrame:
        """The matches to write, as ``[domain, externalId]`` with the CRM index, ready for
        :meth:`map_ids`: rows accepted in review plus, with ``auto=True``, the ``auto`` rows
        nobody rejected. Two different ids on one domain raise
        :class:`~recocora.ValidationError`. ``map_ids`` still refuses to replace an id an
        account gained meanwhile.

        >>> matches.recotap.accepted().recotap.map_ids(client=rtp)  # doctest: +SKIP
        """
        return accepted(self._df, auto=auto)
