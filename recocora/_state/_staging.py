"""A background run's input, staged in its folder: Parquet (a pickle for frames Arrow cannot
hold), read back by the worker exactly as written, and fingerprinted so the same frame with
the same options is recognised while its run is live."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

__all__ = ["fingerprint", "read_staged", "stage"]


def stage(df: pd.DataFrame, folder: Path) -> Path:
    """Write ``df`` into ``folder`` as ``input.parquet`` (``input.pkl`` when Arrow cannot
    hold it: mixed-type columns, non-text column names), as the worker will read it."""
    import pyarrow as pa  # type: ignore[import-untyped]

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "input.parquet"
    try:
        df.to_parquet(path, engine="pyarrow")
        return path
    except (pa.ArrowException, ValueError, TypeError):
        path.unlink(missing_ok=True)
    path = folder / "input.pkl"
    df.to_pickle(path)
    return path


def read_staged(folder: Path) -> pd.DataFrame:
    parquet = folder / "input.parquet"
    if parquet.exists():
        return pd.read_parquet(parquet, engine="pyarrow")
    frame: pd.DataFrame = pd.read_pickle(folder / "input.pkl")
    return frame


def fingerprint(staged: Path, spec: Mapping[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with staged.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    digest.update(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS, default=str))
    return digest.hexdigest()
