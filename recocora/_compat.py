"""What differs between the pandas versions recocora supports (2.2 and newer), in one place.

pandas 3 reads text as its ``str`` dtype: Arrow-backed, ``NaN`` for a missing cell. pandas 2.x
still reads text as ``object``, but it has the same dtype under another name: 2.2 calls it
``string[pyarrow_numpy]``, 2.3 ``StringDtype("pyarrow", na_value=np.nan)``. recocora builds
its own text columns (ids, normalised values, result columns) with that dtype on every
version, so the same input gives the same result frame whatever pandas the user has. Code
elsewhere asks this module, never ``pd.__version__``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionDtype
from pandas.api.types import infer_dtype

__all__ = ["STR_DTYPE", "is_arrow_text_storage", "text_cells"]


def _str_dtype() -> ExtensionDtype:
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    except TypeError:  # pandas 2.2: no na_value yet; its NaN-semantics Arrow storage
        legacy: Any = "pyarrow_numpy"
        return pd.StringDtype(legacy)


#: pandas 3's ``"str"``: Arrow text, ``NaN`` for missing (``dtype="str"`` means ``object``
#: before pandas 3, so code that wants Arrow text names this instead).
STR_DTYPE: ExtensionDtype = _str_dtype()

_ARROW_STORAGES = frozenset({"pyarrow", "pyarrow_numpy"})


def is_arrow_text_storage(dtype: pd.StringDtype) -> bool:
    """True when a ``StringDtype`` keeps its text in Arrow (any ``na_value``, any pandas).

    >>> is_arrow_text_storage(STR_DTYPE), is_arrow_text_storage(pd.StringDtype("python"))
    (True, False)
    """
    return str(dtype.storage) in _ARROW_STORAGES


def text_cells(values: np.ndarray) -> Any:
    """Object cells as pandas 3 stores them in a new column: :data:`STR_DTYPE` when every
    present cell is a ``str`` (``None`` and ``NaN`` become missing), else ``values`` itself.
    pandas 2 would keep such cells as objects; this gives them the same dtype everywhere.

    >>> text_cells(np.array(["a", None], dtype=object)).dtype == STR_DTYPE
    True
    >>> text_cells(np.array(["a", 1], dtype=object)).dtype
    dtype('O')
    """
    if infer_dtype(values, skipna=True) != "string":
        return values
    try:
        return pd.Series(values, dtype=STR_DTYPE, copy=False).array
    except UnicodeEncodeError:  # broken UTF-16 cannot be Arrow text: left as objects
        return values
