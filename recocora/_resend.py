"""``only=`` of ``df.cora.upsert`` and ``df.recotap.map_ids``: run again just the rows an
earlier result left ``failed`` or ``not_sent``, and fold the new outcomes into that result."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from .errors import RecocoraError, RunInterrupted

__all__ = ["RESEND_STATUSES", "combine_results", "resend_rows"]

#: Statuses ``only=`` sends again.
RESEND_STATUSES = ("failed", "not_sent")


def combine_results(previous: pd.DataFrame, fresh: pd.DataFrame,
                    status_column: str) -> pd.DataFrame:
    """``previous`` with the rows of ``fresh`` (a run over some of its rows) replaced; the
    attrs are ``fresh``'s, with counts over the whole frame and ``resent`` rows.

    >>> fresh = df.loc[res.cora_status == "failed"].cora.upsert()  # doctest: +SKIP
    >>> res = combine_results(res, fresh, "cora_status")  # doctest: +SKIP
    """
    out: pd.DataFrame = previous.copy()
    where = out.index.get_indexer(fresh.index)
    for column in fresh.columns:
        values = fresh[column]
        if column not in out:
            out[column] = pd.Series(pd.NA if values.dtype != object else None,
                                    index=out.index, dtype=values.dtype)
        target = out[column]
        if target.dtype == object:
            merged = target.to_numpy(dtype=object, copy=True)
            merged[where] = values.to_numpy(dtype=object)
            out[column] = pd.Series(merged, index=out.index, dtype=object)
        else:
            updated = target.copy()
            updated.iloc[where] = values.to_numpy()
            out[column] = updated
    out.attrs = dict(fresh.attrs)
    tally = out[status_column].astype(object).value_counts(sort=False).to_dict()
    out.attrs["counts"] = {str(k): int(v) for k, v in tally.items()}
    out.attrs["resent"] = len(fresh)
    return out


def resend_rows(
    df: pd.DataFrame,
    previous: pd.DataFrame,
    run: Callable[[pd.DataFrame], pd.DataFrame],
    *,
    status_column: str,
    call: str,
    dry_run: bool,
    zero: dict[str, int],
) -> pd.DataFrame:
    """``only=previous`` of upsert and map_ids: run ``run`` on the rows of ``df`` that
    ``previous`` (an earlier result of ``call``) marks ``failed`` or ``not_sent``, and fold
    the answers into ``previous``. ``zero`` is the attrs a run that sends nothing reports; an
    error's partial result is folded too."""
    if not isinstance(previous, pd.DataFrame) or status_column not in previous:
        raise TypeError(f"only= takes the result frame of an earlier {call}")
    if (previous.attrs.get("dry_run") or previous.attrs.get("preview")) and not dry_run:
        raise ValueError(
            "only= was given the result of a dry run or preview: none of its rows were "
            "written, so re-sending only some of them would leave the others unwritten. "
            f"Run {call} on the whole frame instead."
        )
    status = previous[status_column].astype(object)
    wanted = previous.index[status.isin(list(RESEND_STATUSES)).to_numpy(dtype=bool)]
    if not len(wanted):
        unchanged: pd.DataFrame = previous.copy()
        unchanged.attrs.update(zero)
        return unchanged
    absent = wanted.difference(df.index, sort=False)
    if len(absent):
        raise ValueError(
            f"{len(absent):,} rows to re-send are not in this frame (e.g. "
            f"{absent[:3].tolist()}); call it on the frame that produced the result."
        )
    try:
        fresh = run(df.loc[wanted])
    except (RecocoraError, RunInterrupted) as exc:
        if exc.result is not None:
            exc.result = combine_results(previous, exc.result, status_column)
        raise
    return combine_results(previous, fresh, status_column)
