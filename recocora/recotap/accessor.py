"""``df.recotap``: the Recotap methods on any DataFrame (registered on import).

>>> import recocora.recotap.accessor  # doctest: +SKIP
>>> df.recotap.validate()              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable

import pandas as pd

from .client import RecotapClient
from .mapping import OnInvalid, map_ids
from .schema import validate

__all__ = ["RecotapAccessor"]


@pd.api.extensions.register_dataframe_accessor("recotap")
class RecotapAccessor:
    """Holds the frame and hands it to :func:`recocora.recotap.mapping.map_ids` and
    :func:`recocora.recotap.schema.validate`."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def map_ids(
        self,
        client: RecotapClient | None = None,
        domain: Hashable = "domain",
        external_id: Hashable = "externalId",
        overwrite: bool = False,
        verify: bool = False,
        on_invalid: OnInvalid = "raise",
        progress: bool = True,
    ) -> pd.DataFrame:
        """Write the frame's external ids onto Recotap accounts matched by domain.

        One result row per input row, with the frame's index (see
        :func:`recocora.recotap.mapping.map_ids` for statuses and columns). No existing id
        is replaced unless ``overwrite=True``.

        >>> res = crm.recotap.map_ids(client=rtp)            # doctest: +SKIP
        >>> res["recotap_status"].value_counts()             # doctest: +SKIP
        """
        return map_ids(
            self._df, client=client, domain=domain, external_id=external_id,
            overwrite=overwrite, verify=verify, on_invalid=on_invalid, progress=progress,
        )

    def validate(
        self, domain: Hashable = "domain", external_id: Hashable = "externalId"
    ) -> pd.DataFrame:
        """Failure cases (``index, column, check, value, message``), empty when every row can
        become a mapping. Nothing is sent.

        >>> pd.DataFrame({"domain": ["localhost"], "externalId": ["a"]}).recotap.validate()
        ... # doctest: +SKIP
        """
        return validate(self._df, domain=domain, external_id=external_id)
