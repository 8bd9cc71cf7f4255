"""A background run's input, staged: Parquet (a pickle for frames Arrow cannot hold), read
back by the worker exactly as written, and fingerprinted so the same frame with the same
options is recognised while its run is live. A run on this machine keeps it in its folder; a
run in the state database keeps the same bytes in its record."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pandas as pd

from ..errors import ConfigError

__all__ = ["Staged", "fingerprint", "frame_bytes", "read_frame_bytes", "read_staged", "stage",
           "staged"]

#: The file name of each format in a run's folder.
_FILES = {"parquet": "input.parquet", "pickle": "input.pkl"}


class Staged(NamedTuple):
    """A run's input as stored: ``data`` in ``format`` (``parquet`` or ``pickle``), and the
    run's settings (``spec``: the API, the call's options, the client's settings, no
    secret)."""

    data: bytes
    format: str
    spec: dict[str, Any]


def frame_bytes(df: pd.DataFrame, *, shared: bool = False) -> tuple[bytes, str]:
    """``df`` as Parquet, or as a pickle when Arrow cannot hold it (mixed-type columns,
    non-text column names): ``(data, format)``. A frame ``shared`` through the state
    database must be Parquet: reading a pickle runs whatever code it names, and the workers
    reading the database hold the keys."""
    import pyarrow as pa  # type: ignore[import-untyped]

    buffer = io.BytesIO()
    try:
        df.to_parquet(buffer, engine="pyarrow")
        return buffer.getvalue(), "parquet"
    except (pa.ArrowException, ValueError, TypeError) as exc:
        if shared:
            reason = " ".join(str(exc).split())[:200]
            raise ConfigError(
                "A run kept in the state database stores its frame as Parquet, which cannot "
                f"hold this one ({reason}). Give each column one type (for instance "
                "df[column] = df[column].astype(str)) and text column names, or keep the run "
                "on this machine (state='local' on the client)."
            ) from None
        buffer = io.BytesIO()
    df.to_pickle(buffer)
    return buffer.getvalue(), "pickle"


def read_frame_bytes(data: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    frame: pd.DataFrame = pd.read_pickle(io.BytesIO(data))
    return frame


def staged(df: pd.DataFrame, spec: dict[str, Any], *, shared: bool = False) -> Staged:
    data, fmt = frame_bytes(df, shared=shared)
    return Staged(data, fmt, spec)


def stage(payload: Staged, folder: Path) -> Path:
    """Write the staged frame into ``folder`` (``input.parquet`` or ``input.pkl``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _FILES[payload.format]
    path.write_bytes(payload.data)
    return path


def read_staged(folder: Path) -> pd.DataFrame:
    for fmt, name in _FILES.items():
        path = folder / name
        if path.exists():
            return read_frame_bytes(path.read_bytes(), fmt)
    raise FileNotFoundError(f"no staged input in {folder}")


def fingerprint(payload: Staged) -> str:
    digest = hashlib.blake2b(payload.data, digest_size=16)
    digest.update(orjson.dumps(payload.spec, option=orjson.OPT_SORT_KEYS, default=str))
    return digest.hexdigest()
