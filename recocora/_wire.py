"""DataFrame rows → JSON request rows, shared by the Cora and Recotap clients.

The rules every body follows:

- A column name is a field name; a dotted name is a path into objects:
  ``person.name.first`` becomes ``{"person": {"name": {"first": ...}}}``.
- A column may also hold whole objects (dicts) for an object field, e.g. ``metadata``. It
  is deep-merged with its dotted siblings (``metadata.filenumber``); where both set the same
  leaf, **the dotted column wins** (it is the more specific statement).
- A missing cell (``NaN``, ``None``, ``pd.NA``, ``NaT``) is **left out** of the row, never
  sent as ``null`` (the APIs would overwrite stored data with it). Missing values inside a
  dict cell are left out too, and an object that ends up empty is left out as a whole.
- numpy and pandas scalars become plain JSON types: integers → ``int``, floats → ``float``,
  ``bool``, ``Decimal`` → number, timestamps → ISO 8601 strings (time-zone aware ones in UTC
  with a ``Z``), dates → ``YYYY-MM-DD``; lists, tuples and arrays become lists. Infinite
  floats, missing values inside lists, and values with no JSON form (durations, periods,
  arbitrary objects) raise :class:`~recocora.errors.ValidationError` naming row and column.

Conversion runs column-wise (one numpy/pandas pass per column), then rows are assembled
from the converted columns, so building the bodies for a million rows takes about a second.
For many chunks of one frame, build one :class:`RowBuilder` and call
:meth:`RowBuilder.rows` per slice: that converts each column once per chunk and never
materialises all rows at once.

>>> import pandas as pd
>>> df = pd.DataFrame({"externalId": ["a1", "a2"], "metadata.filenumber": ["F1", None]})
>>> rows_for_chunk(df)
[{'externalId': 'a1', 'metadata': {'filenumber': 'F1'}}, {'externalId': 'a2'}]
>>> dumps({"accounts": rows_for_chunk(df)})[:40]
b'{"accounts":[{"externalId":"a1","metadat'
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ._json_values import Unsendable, convert, is_missing
from ._validation import column_problem, failure_frame, validation_error
from ._wire_columns import Column
from .errors import ValidationError

__all__ = [
    "RowBuilder",
    "chunk_slices",
    "dumps",
    "object_array",
    "rows_for_chunk",
    "to_json_value",
]


def to_json_value(value: Any) -> Any:
    """The JSON form of one cell, following the module's rules.

    A missing value or a dict that ends up empty returns ``None``, meaning "leave it out".
    A value with no JSON form raises :class:`~recocora.errors.ValidationError`.

    >>> import numpy as np
    >>> to_json_value({"a": np.int64(3), "b": float("nan"), "t": pd.Timestamp("2024-05-01")})
    {'a': 3, 't': '2024-05-01T00:00:00'}
    """
    if is_missing(value):
        return None
    try:
        converted = convert(value)
    except Unsendable as exc:
        raise ValidationError(
            f"Cannot send {value!r}: {exc}.",
            failure_frame(
                [
                    {
                        "index": None,
                        "column": None,
                        "check": "json",
                        "value": value,
                        "message": str(exc),
                    }
                ]
            ),
        ) from None
    if type(converted) is dict and not converted:
        return None
    return converted


def _orjson_default(value: Any) -> Any:
    try:
        return convert(value)
    except Unsendable as exc:
        raise TypeError(str(exc)) from None


def dumps(obj: Any) -> bytes:
    """Serialise a request body to the exact bytes to hash, sign and send (compact UTF-8).

    Stray numpy/pandas scalars are converted on the way. Non-finite floats must not be
    passed: orjson would write them as ``null``, which Cora stores as "clear this field".
    Rows from :func:`rows_for_chunk` never hold any.

    >>> dumps({"accounts": [{"externalId": "a1"}], "dryRun": False})
    b'{"accounts":[{"externalId":"a1"}],"dryRun":false}'
    """
    return orjson.dumps(obj, default=_orjson_default)


def chunk_slices(n: int, size: int) -> Iterator[slice]:
    """Positional slices covering ``range(n)`` in order, each at most ``size`` long.

    >>> list(chunk_slices(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, not {size}")
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def object_array(n: int, value: Any) -> np.ndarray:
    """An object array holding ``value`` ``n`` times, as one shared object (``np.full``
    would make ``n`` separate copies of a string).

    >>> a = object_array(3, "not_sent")
    >>> a.tolist(), a[0] is a[2]
    (['not_sent', 'not_sent', 'not_sent'], True)
    """
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


@dataclass
class _Node:
    """One path segment: the column holding this path's own value, and deeper paths."""

    column: int | None = None
    children: dict[str, _Node] = field(default_factory=dict)


def _path_tree(columns: pd.Index) -> _Node:
    root = _Node()
    problems: list[dict[str, Any]] = []
    for pos, name in enumerate(columns):
        if not isinstance(name, str):
            problems.append(
                column_problem(
                    name,
                    "column_name",
                    (
                        f"column names must be field names (text), not {type(name).__name__}; "
                        "rename the column"
                    ),
                )
            )
            continue
        parts = name.split(".")
        if any(not part for part in parts):
            problems.append(
                column_problem(
                    name,
                    "column_name",
                    (
                        "a dotted column name needs a field name between every pair of dots, "
                        "e.g. 'metadata.filenumber'"
                    ),
                )
            )
            continue
        node = root
        for part in parts:
            node = node.children.setdefault(part, _Node())
        if node.column is not None:
            problems.append(
                column_problem(
                    name,
                    "duplicate_column",
                    ("two columns have this name; keep one (df.loc[:, ~df.columns.duplicated()])"),
                )
            )
            continue
        node.column = pos
    if problems:
        raise validation_error(failure_frame(problems), advice="Rename or drop these columns.")
    return root


def _exec_factory(source: str) -> Callable[[list[str]], Callable[..., dict[str, Any]]]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<recocora._wire row maker>", "exec"), namespace)
    factory: Callable[[list[str]], Callable[..., dict[str, Any]]] = namespace["factory"]
    return factory


@functools.lru_cache(maxsize=256)
def _factory(body: str, n_values: int, n_keys: int) -> Callable[..., Callable[..., dict[str, Any]]]:
    """Compile ``make(v0, …) -> <body>`` where ``body`` is a dict display over v*/k* names.

    A dict display in generated code builds rows several times faster than
    ``dict(zip(keys, values))`` level by level, which is most of the cost of serialising
    large frames. Only argument names and indices go into the source; the keys themselves
    are bound as keyword defaults, so no column name is ever evaluated as code.
    """
    args = "".join(f"v{i}, " for i in range(n_values))
    defaults = ", ".join(f"k{i}=keys[{i}]" for i in range(n_keys))
    source = (
        "def factory(keys):\n"
        f"    def make({args}*, {defaults}):\n"
        f"        return {body}\n"
        "    return make\n"
    )
    return _exec_factory(source)


def _dict_maker(keys: list[str]) -> Callable[..., dict[str, Any]]:
    """``f(v0, …, vN) -> {keys[0]: v0, …}`` for one flat level."""
    body = "{" + ", ".join(f"k{i}: v{i}" for i in range(len(keys))) + "}"
    return _factory(body, len(keys), len(keys))(keys)


@dataclass(frozen=True)
class _Plan:
    """Builds whole rows, nested objects included, with one generated call per row.

    ``leaves`` are the generated function's arguments in order: a column, or a node that
    has its own dict column *and* dotted children (built separately, then merged).
    ``objects`` lists each nested object's path and the leaves under it, deepest first:
    an object is empty on exactly the rows where every leaf under it is missing.
    """

    make: Callable[..., dict[str, Any]]
    leaves: tuple[_Node, ...]
    leaf_paths: tuple[tuple[str, ...], ...]
    objects: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]


def _plan(root: _Node) -> _Plan:
    keys: list[str] = []
    leaves: list[_Node] = []
    leaf_paths: list[tuple[str, ...]] = []
    objects: list[tuple[tuple[str, ...], tuple[int, ...]]] = []

    def display(node: _Node, path: tuple[str, ...]) -> tuple[str, list[int]]:
        items: list[str] = []
        under: list[int] = []
        for key, child in node.children.items():
            items.append(f"k{len(keys)}: ")
            keys.append(key)
            child_path = (*path, key)
            if child.children and child.column is None:
                text, child_leaves = display(child, child_path)
                objects.append((child_path, tuple(child_leaves)))
                under.extend(child_leaves)
            else:
                text = f"v{len(leaves)}"
                under.append(len(leaves))
                leaves.append(child)
                leaf_paths.append(child_path)
            items[-1] += text
        return "{" + ", ".join(items) + "}", under

    body, _ = display(root, ())
    make = _factory(body, len(leaves), len(keys))(keys)
    objects.sort(key=lambda item: -len(item[0]))
    return _Plan(make, tuple(leaves), tuple(leaf_paths), tuple(objects))


def _delete(rows: list[Any], path: tuple[str, ...], positions: Iterable[int]) -> None:
    last = path[-1]
    if len(path) == 1:
        for i in positions:
            del rows[i][last]
        return
    head = path[:-1]
    for i in positions:
        node = rows[i]
        for key in head:
            node = node[key]
        del node[last]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        current = base.get(key)
        if type(current) is dict and type(value) is dict:
            base[key] = _deep_merge(current, value)
        else:
            base[key] = value
    return base


class RowBuilder:
    """Turns a DataFrame into JSON-ready row dicts, one slice of rows at a time.

    Column dtypes are inspected and missing-cell masks computed once, here; each call to
    :meth:`rows` converts only the requested rows. Infinite floats and malformed column
    names raise :class:`~recocora.errors.ValidationError` on construction; cells with no
    JSON form inside object columns raise it when their slice is built.

    >>> df = pd.DataFrame({"externalId": ["a", "b", "c"], "currentBalance": [1.5, None, 2.0]})
    >>> builder = RowBuilder(df)
    >>> builder.rows(slice(1, 3))
    [{'externalId': 'b'}, {'externalId': 'c', 'currentBalance': 2.0}]
    """

    def __init__(self, df: pd.DataFrame) -> None:
        self._n = len(df)
        self._index = df.index
        self._root = _path_tree(df.columns)
        self._columns = [
            Column(df.iloc[:, pos], str(name), df.index) for pos, name in enumerate(df.columns)
        ]
        self._plan = _plan(self._root) if self._root.children else None

    def __len__(self) -> int:
        return self._n

    def rows(self, positions: slice | None = None) -> list[dict[str, Any]]:
        """Row dicts for the rows at ``positions`` (a step-1 positional slice; all by default).

        >>> RowBuilder(pd.DataFrame({"person.name.first": ["Ada", None]})).rows()
        [{'person': {'name': {'first': 'Ada'}}}, {}]
        """
        a, b, step = (positions or slice(None)).indices(self._n)
        if step != 1:
            raise ValueError("RowBuilder.rows takes a contiguous slice (step 1)")
        b = max(a, b)
        plan = self._plan
        if plan is None:
            return [{} for _ in range(b - a)]
        args: list[list[Any]] = []
        missing: list[list[int]] = []
        for leaf in plan.leaves:
            values, absent = (
                self._assemble(leaf, a, b)
                if leaf.children
                else self._columns[leaf.column].values(a, b)  # type: ignore[index]
            )
            args.append(values)
            missing.append(absent)
        rows: list[dict[str, Any]] = list(map(plan.make, *args))
        for path, absent in zip(plan.leaf_paths, missing, strict=True):
            if absent:
                _delete(rows, path, absent)
        for path, under in plan.objects:
            empty = set(missing[under[0]])
            for leaf_index in under[1:]:
                if not empty:
                    break
                empty.intersection_update(missing[leaf_index])
            if empty:
                _delete(rows, path, sorted(empty))
        return rows

    def chunks(self, size: int) -> Iterator[tuple[slice, list[dict[str, Any]]]]:
        """``(slice, rows)`` for consecutive chunks of at most ``size`` rows, in input order.

        >>> [len(rows) for _, rows in RowBuilder(pd.DataFrame({"a": range(5)})).chunks(2)]
        [2, 2, 1]
        """
        for positions in chunk_slices(self._n, size):
            yield positions, self.rows(positions)

    def _assemble(self, node: _Node, a: int, b: int) -> tuple[list[Any], list[int]]:
        if not node.children:
            assert node.column is not None
            return self._columns[node.column].values(a, b)
        keys = list(node.children)
        lists: list[list[Any]] = []
        misses: list[list[int]] = []
        for key in keys:
            values, missing = self._assemble(node.children[key], a, b)
            lists.append(values)
            misses.append(missing)
        built: list[Any] = list(map(_dict_maker(keys), *lists))
        for key, missing in zip(keys, misses, strict=True):
            for i in missing:
                del built[i][key]
        if node.column is not None:
            self._merge_own(node.column, built, a, b)
            return built, [i for i, d in enumerate(built) if type(d) is dict and not d]
        if any(not m for m in misses):
            # A child present on every row means no row's object can be empty.
            return built, []
        return built, [i for i, d in enumerate(built) if not d]

    def _merge_own(self, column: int, built: list[Any], a: int, b: int) -> None:
        """Merge a column holding whole objects with the object built from dotted columns."""
        col = self._columns[column]
        own, own_missing = col.values(a, b)
        skip = set(own_missing)
        conflicts: list[int] = []
        for i, value in enumerate(own):
            if i in skip:
                continue
            sub = built[i]
            if not sub:
                built[i] = value
            elif type(value) is dict:
                built[i] = _deep_merge(value, sub)
            else:
                conflicts.append(i)
        if conflicts:
            col.raise_for(
                [a + i for i in conflicts],
                [own[i] for i in conflicts],
                [
                    f"this row also has values under '{col.name}.…' columns, which need "
                    f"'{col.name}' to be an object (dict); leave one of them empty"
                ]
                * len(conflicts),
            )


def rows_for_chunk(df_chunk: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready row dicts for every row of ``df_chunk``, in order.

    Equivalent to ``RowBuilder(df_chunk).rows()``; for many chunks of one large frame, build
    one :class:`RowBuilder` instead.

    >>> rows_for_chunk(pd.DataFrame({"metadata": [{"a": 1}], "metadata.b": [2]}))
    [{'metadata': {'a': 1, 'b': 2}}]
    """
    return RowBuilder(df_chunk).rows()
