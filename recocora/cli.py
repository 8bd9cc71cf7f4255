"""The ``recocora`` command: ``demo``, ``cora upsert``, ``recotap map-ids``,
``recotap unmapped`` and ``sandbox``.

Credentials come from the environment only (``CORA_API_KEY``, ``CORA_BASE_URL``,
``RECOTAP_API_KEY``, ``RECOTAP_BASE_URL``). Progress goes to stderr, the summary to stdout.
Exit codes: 0 every row fine, 1 some rows failed, invalid or not sent, 2 a usage,
configuration, auth or request-level error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import orjson
import pandas as pd

from ._progress import format_duration
from .cora._schema import field_kind
from .cora._upsert import changes_table
from .cora.accessor import CoraAccessor
from .errors import ConfigError, RecocoraError, RunInterrupted, TooManyFailedError, ValidationError
from .recotap.accessor import RecotapAccessor

__all__ = [
    "PROBLEM_STATUSES",
    "UsageError",
    "cora_summary",
    "count_lines",
    "file_format",
    "main",
    "read_frame",
    "recotap_summary",
    "status_counts",
    "write_frame",
]


def _sandbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox",
        help="serve a local server that behaves like Cora and Recotap",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve both APIs on one port, for trying recocora safely.",
        epilog=(
            "examples:\n"
            "  recocora sandbox --seed demo\n"
            "  recocora sandbox --port 8765 --cora-key cora_org_demo.s3cret "
            "--recotap-key rtp_demo --seed demo\n"
            "  recocora sandbox --cora-window 0.5 --p-503 0.1 --latency 0.05 --fault-seed 7\n"
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    p.add_argument("--cora-key", help="Cora key to accept (default: a random one, printed)")
    p.add_argument("--recotap-key", help="Recotap key to accept (default: random, printed)")
    p.add_argument("--cora-window", type=float, default=20.0,
                   help="seconds between bulk upserts per key (default 20, 0 = off)")
    p.add_argument("--recotap-rps", type=float, default=None,
                   help="Recotap requests per second per key (default: unlimited)")
    p.add_argument("--db", help="SQLite file, so state survives restarts (default: memory)")
    p.add_argument("--seed", choices=["demo", "none"], default="demo",
                   help="starting data when the store is empty (default demo)")
    p.add_argument("--prefix", default="", help="serve under this path prefix, e.g. /gw")
    f = p.add_argument_group("fault injection (deterministic from --fault-seed)")
    f.add_argument("--fault-seed", type=int, default=0)
    f.add_argument("--fault-scope", choices=["all", "cora", "recotap", "writes"], default="all")
    for name, text in (
        ("p-500", "probability of a 500"),
        ("p-502", "probability of a 502"),
        ("p-503", "probability of a 503"),
        ("p-drop", "probability of closing the connection before processing"),
        ("p-drop-after", "probability of processing, then closing with no answer"),
        ("p-429", "probability of starting a burst of forced 429s"),
        ("p-auth-error", "probability of a Cora 500 AUTH_CHECK_FAILED"),
        ("spike-p", "probability of a latency spike"),
    ):
        f.add_argument(f"--{name}", type=float, default=0.0, help=text)
    f.add_argument("--burst-429", type=int, default=1, help="length of a 429 burst")
    f.add_argument("--retry-after-429", type=int, default=1, help="Retry-After of forced 429s")
    f.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    f.add_argument("--spike", type=float, default=0.0, help="seconds of a latency spike")
    f.add_argument("--clock-skew", type=float, default=0.0, help="seconds added to server clock")


def _run_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import FaultConfig, Sandbox

    faults = FaultConfig(
        seed=args.fault_seed, p_500=args.p_500, p_502=args.p_502, p_503=args.p_503,
        p_drop=args.p_drop, p_drop_after=args.p_drop_after, p_429=args.p_429,
        p_auth_error=args.p_auth_error, spike_p=args.spike_p, burst_429=args.burst_429,
        retry_after_429=args.retry_after_429, latency=args.latency, spike=args.spike,
        clock_skew=args.clock_skew, scope=args.fault_scope,
    )
    sb = Sandbox(
        host=args.host, port=args.port, seed=args.seed, cora_window=args.cora_window,
        recotap_rps=args.recotap_rps, faults=faults, db=args.db, cora_key=args.cora_key,
        recotap_key=args.recotap_key, prefix=args.prefix,
    )
    sb.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    out = sys.stdout
    print(f"recocora sandbox serving on {sb.base_url}  (Ctrl-C stops)", file=out)
    print(f"  Cora     {sb.cora_base_url}/external-api/accounts   key {sb.cora_key}", file=out)
    print(f"  Recotap  {sb.recotap_base_url}   key {sb.recotap_key}", file=out)
    print(f"  Cora bulk window {args.cora_window:g} s; seed {args.seed}"
          + (f"; state in {args.db}" if args.db else "; state in memory"), file=out)
    print("Point recocora at it (paste into your shell):", file=out)
    for k, v in sb.env().items():
        print(f"export {k}={v}", file=out)
    out.flush()
    try:
        sb.serve_forever()
    except KeyboardInterrupt:
        print("sandbox stopped", file=out)
    finally:
        sb.close()
    return 0


# --------------------------------------------------------------------------- files

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt")
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")


_WIDTH = 88


class UsageError(Exception):
    """A problem with the command line or its files: exit code 2, one line, no traceback."""


def file_format(path: str) -> str:
    """``"parquet"``, ``"csv"`` or ``"tsv"`` from a file name's extension (``-`` is CSV).

    >>> file_format("accounts.csv.gz"), file_format("out.parquet"), file_format("-")
    ('csv', 'parquet', 'csv')
    """
    if path == "-":
        return "csv"
    name = Path(path).name.lower()
    for ext in _COMPRESSED:
        if name.endswith(ext) and not name.endswith(_PARQUET):
            name = name[: -len(ext)]
            break
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(_CSV):
        return "csv"
    raise UsageError(
        f"cannot tell the format of {path!r} from its extension: use .csv (or .tsv, "
        ".csv.gz) or .parquet"
    )


def read_frame(path: str, text: Callable[[str], bool] = lambda column: True) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file into a DataFrame with a 0-based row index.

    CSV columns for which ``text(column)`` is true are read as text, so ids, zip codes and
    phone numbers keep their leading zeros and ``+``; only empty cells are missing (``NA``
    or ``null`` stay text). Parquet keeps its own types.

    >>> read_frame("accounts.csv").columns.tolist()  # doctest: +SKIP
    ['externalId', 'bucket']
    """
    fmt = file_format(path)
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        if fmt == "parquet":
            table: pd.DataFrame = pd.read_parquet(source).reset_index(drop=True)
            return table
        sep = "\t" if fmt == "tsv" else ","
        header = pd.read_csv(source, sep=sep, nrows=0, encoding="utf-8-sig").columns
        dtypes: dict[Any, Any] = {c: str for c in header if text(str(c))}
        frame = pd.read_csv(
            source, sep=sep, dtype=dtypes, keep_default_na=False, na_values=[""],
            encoding="utf-8-sig",
        )
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot read {path}: {_one_line(exc)}") from None
    return frame


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells holding lists or dicts (details, changes) become JSON text, so CSV and Parquet
    both hold them as one readable column."""
    out: pd.DataFrame = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype != object:
            continue
        nested = series.map(lambda v: isinstance(v, (list, dict)))
        if nested.any():
            out[column] = series.map(
                lambda v: orjson.dumps(v, default=str).decode() if isinstance(v, (list, dict))
                else v
            )
    return out


def write_frame(frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` as CSV/TSV or Parquet, chosen by ``path``'s extension; ``-`` writes
    CSV to standard output. Nested cells are written as JSON text.

    >>> write_frame(result, "results.parquet")  # doctest: +SKIP
    """
    fmt = file_format(path)
    flat = _jsonable(frame)
    try:
        if path == "-":
            flat.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        elif fmt == "parquet":
            flat.to_parquet(path, index=False)
        else:
            flat.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"cannot write {path}: {_one_line(exc)}") from None


def _load_columns(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read the --columns file: {_one_line(exc)}") from None
    except ValueError as exc:
        raise UsageError(f"--columns {path} is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise UsageError(
            f'--columns {path} must hold one JSON object of column names to fields, e.g. '
            '{"File #": "externalId", "Phone": "phoneNumber"}'
        )
    return mapping


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- reports

#: Statuses that make a command exit 1: the row was not applied and needs attention.
PROBLEM_STATUSES = frozenset({"failed", "invalid", "not_sent"})


def status_counts(result: pd.DataFrame, column: str, order: Sequence[str]) -> dict[str, int]:
    """Rows per status, in ``order`` (unknown statuses last), zero counts left out.

    >>> status_counts(pd.DataFrame({"s": ["b", "a", "b"]}), "s", ["a", "b"])
    {'a': 1, 'b': 2}
    """
    tally = result[column].astype(object).value_counts(sort=False).to_dict()
    known = {s: int(tally.pop(s)) for s in order if s in tally}
    known.update({str(s): int(n) for s, n in tally.items()})
    return known


def count_lines(counts: Mapping[str, int], indent: str = "  ") -> list[str]:
    """``created 12``-style lines, numbers aligned.

    >>> count_lines({"created": 3, "failed": 12})
    ['  created   3', '  failed   12']
    """
    if not counts:
        return [f"{indent}(no rows)"]
    width = max(len(s) for s in counts)
    digits = max(len(f"{n:,}") for n in counts.values())
    return [f"{indent}{s:<{width}} {n:>{digits + 1},}" for s, n in counts.items()]


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
        return ""
    return str(value)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _problem_lines(result: pd.DataFrame, prefix: str, key: str, limit: int = 10) -> list[str]:
    """The first ``limit`` rows whose status is a problem, one line each: row, key, status,
    code and message."""
    status = result[f"{prefix}_status"].astype(object)
    bad = result[status.isin(sorted(PROBLEM_STATUSES))]
    if not len(bad):
        return []
    lines = [f"Rows to look at (first {min(limit, len(bad))} of {len(bad):,}):"]
    codes = bad.get(f"{prefix}_code")
    for label, row in bad.head(limit).iterrows():
        code = _cell(codes.loc[label]) if codes is not None else ""
        message = _cell(row.get(f"{prefix}_message"))
        parts = [f"row {label}", _cell(row.get(key)) or "-", str(row[f"{prefix}_status"])]
        if code:
            parts.append(code)
        lines.append("  " + "  ".join(parts) + (f": {_short(message, 110)}" if message else ""))
    return lines


def _change_lines(result: pd.DataFrame, limit: int = 10) -> list[str]:
    """The first ``limit`` field changes of a Cora result, ``from → to``."""
    if "cora_changes" not in result:
        return []
    table = changes_table(result)
    if not len(table):
        return []
    lines = [f"Field changes (first {min(limit, len(table))} of {len(table):,}):"]
    for rec in table.head(limit).to_dict("records"):
        lines.append(
            f"  row {rec['index']}  {rec['externalId']}  {rec['field']}: "
            f"{_short(repr(rec['from']), 40)} → {_short(repr(rec['to']), 40)}"
        )
    return lines


def _emit(lines: Iterable[str], stream: TextIO) -> None:
    for line in lines:
        print(line, file=stream)
    stream.flush()


def _exit_code(result: pd.DataFrame, column: str) -> int:
    return 1 if result[column].astype(object).isin(sorted(PROBLEM_STATUSES)).any() else 0


def _with_row(result: pd.DataFrame) -> pd.DataFrame:
    out: pd.DataFrame = result.copy()
    out.insert(0, "row", result.index)
    return out


def _save(result: pd.DataFrame, path: str | None, report: TextIO, partial: bool = False) -> None:
    if path is None:
        return
    write_frame(_with_row(result), path)
    where = "standard output" if path == "-" else path
    what = "Partial results" if partial else "Results"
    print(f"{what} ({len(result):,} rows, one per input row, by 0-based row number): "
          f"{where}", file=report)


# --------------------------------------------------------------------------- cora

_MAIN_EXAMPLES = """\
examples:
  recocora demo                                   # the whole story, on a built-in sandbox
  recocora cora upsert accounts.csv --diff        # what would change, for free
  recocora cora upsert accounts.csv --out results.csv
  recocora recotap unmapped --out unmapped.csv
  recocora recotap map-ids crm.csv --domain-col website --id-col crm_id --verify
  recocora sandbox --seed demo                    # a local Cora + Recotap to point at

Each command has --help with more examples. Credentials come from the environment only:
CORA_API_KEY, CORA_BASE_URL, RECOTAP_API_KEY, RECOTAP_BASE_URL.
exit codes: 0 every row fine, 1 some rows failed, invalid or not sent, 2 usage,
configuration, auth or request-level error.
"""

_CORA_EXAMPLES = """\
examples:
  # what would happen, computed from the accounts' current state (no write, no rate slot)
  recocora cora upsert accounts.csv --diff
  # ask Cora itself (validates server-side; spends one 20 s slot per 500 rows)
  recocora cora upsert accounts.csv --dry-run --include-changes
  # the real run: send valid rows, mark the rest invalid, keep every row's outcome
  recocora cora upsert accounts.parquet --on-invalid skip --out results.csv
  # rename the file's columns to Cora fields
  echo '{"File #": "externalId", "Phone": "phoneNumber"}' > map.json
  recocora cora upsert export.csv --columns map.json --out results.parquet

credentials come from the environment only: CORA_API_KEY (cora_org_<keyId>.<secret>)
and CORA_BASE_URL (default https://api.corafone.com).
stdout: a summary (counts by status, the first problem rows and changes); the results
go to --out (CSV or Parquet by extension; "-" writes CSV to stdout). progress: stderr.
exit codes: 0 every row fine, 1 some rows failed, invalid or not sent,
2 usage, configuration, auth or request-level error (one line on stderr).
"""

_RECOTAP_MAP_EXAMPLES = """\
examples:
  recocora recotap map-ids crm.csv --domain-col website --id-col crm_id --out mapped.csv
  recocora recotap map-ids crm.parquet --verify          # read back what was written
  recocora recotap map-ids crm.csv --overwrite           # replace ids already there

No existing id is replaced without --overwrite (those rows end already_mapped); of rows
sharing a domain the last wins (the others end superseded).
credentials come from the environment only: RECOTAP_API_KEY and RECOTAP_BASE_URL
(default https://eapi.recotap.com/api/v1).
exit codes: 0 every row fine (mapped, unchanged, not_found, already_mapped and superseded
are outcomes, not failures), 1 some rows failed, invalid or not sent, 2 usage,
configuration, auth or request-level error.
"""

_RECOTAP_UNMAPPED_EXAMPLES = """\
examples:
  recocora recotap unmapped --limit 1000 --out unmapped.csv
  recocora recotap unmapped | head

Without --out the accounts are written to stdout as CSV (name, domain) and the count goes
to stderr. The API has no pagination: map a batch, then ask again for the next.
credentials: RECOTAP_API_KEY and RECOTAP_BASE_URL from the environment.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="RESULTS",
                   help="write one result row per input row (.csv, .tsv or .parquet; - = stdout)")
    p.add_argument("--on-invalid", choices=["raise", "skip"], default="raise",
                   help="raise (default): send nothing if any row is invalid; "
                        "skip: send the valid rows, mark the rest invalid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _cora_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cora = sub.add_parser("cora", help="Cora: bulk upsert of debt accounts",
                          description="Cora (Corafone) debt accounts.")
    csub = cora.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = csub.add_parser(
        "upsert", help="create or update accounts by externalId from a CSV or Parquet file",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_CORA_EXAMPLES,
        description=textwrap.fill(
            "Validate every row, then create or update Cora accounts by externalId, 500 per "
            "request, one request per --min-interval seconds. Columns are API fields; a "
            "dotted name is a path into an object (metadata.filenumber, person.name.first). "
            "Empty cells are left out, never sent as null. CSV cells are read as text, "
            "except currentBalance.", _WIDTH,
        ),
    )
    p.add_argument("file", metavar="FILE", help="accounts (.csv, .tsv, .csv.gz or .parquet)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="Cora validates and answers, writes nothing (spends rate slots)")
    what.add_argument("--diff", action="store_true",
                      help="preview locally from the current accounts: no write, no bulk "
                           "request, no rate slot")
    p.add_argument("--include-changes", action="store_true",
                   help="ask for the field changes of updated rows (cora_changes)")
    p.add_argument("--columns", metavar="MAP.json",
                   help='JSON object renaming the file\'s columns to fields: {"File #": '
                        '"externalId"}')
    p.add_argument("--mode", choices=["upsert", "create"], default="upsert",
                   help="create: also require phoneNumber, portfolioId, metadata.filenumber "
                        "on every row")
    p.add_argument("--min-interval", type=float, default=20.0, metavar="SECONDS",
                   help="seconds between bulk requests (default 20, Cora's limit; lower "
                        "only for a sandbox started with a shorter --cora-window)")
    _add_common(p)
    _add_journal(p)


def _recotap_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rtp = sub.add_parser("recotap", help="Recotap: map CRM ids onto accounts by domain",
                         description="Recotap accounts and their CRM ids.")
    rsub = rtp.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = rsub.add_parser(
        "map-ids", help="write CRM ids onto Recotap accounts matched by domain",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_RECOTAP_MAP_EXAMPLES,
        description=textwrap.fill(
            "Validate every row, normalise domains (https://www.Acme.com/ -> acme.com), then "
            "write each row's id onto the Recotap account with that domain, 100 per request.",
            _WIDTH,
        ),
    )
    p.add_argument("file", metavar="FILE", help="rows with a domain and an id (.csv, .parquet)")
    p.add_argument("--domain-col", default="domain", metavar="COLUMN",
                   help="column holding the domain or website (default: domain)")
    p.add_argument("--id-col", default="externalId", metavar="COLUMN",
                   help="column holding the CRM id (default: externalId)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace ids accounts already hold (default: leave them, "
                        "already_mapped)")
    p.add_argument("--verify", action="store_true",
                   help="read the accounts back afterwards; ids that did not land are failed")
    p.add_argument("--diff", action="store_true",
                   help="preview from the accounts' current ids; writes nothing")
    _add_common(p)
    _add_journal(p)

    u = rsub.add_parser(
        "unmapped", help="list accounts that have no external id yet",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_RECOTAP_UNMAPPED_EXAMPLES,
        description="List Recotap accounts without an external id (name, domain).",
    )
    u.add_argument("--limit", type=int, default=1000,
                   help="how many to list, 1 to 1000 (default 1000)")
    u.add_argument("--out", metavar="FILE", help="write them here (.csv or .parquet)")


def _add_journal(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("long runs")
    g.add_argument("--journal", metavar="PATH",
                   help="record every acknowledged row in this SQLite file; running the same "
                        "command again sends only rows never acknowledged, changed or failed "
                        "(the others come back skipped)")
    g.add_argument("--force", action="store_true",
                   help="with --journal: send every row again")
    g.add_argument("--max-failed", metavar="N", type=_max_failed,
                   help="stop once more than N rows failed (a count, or a fraction of the "
                        "rows sent such as 0.05); the partial results are still written")


def _max_failed(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a count nor a fraction"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction must be between 0 and 1, not {text}")
    return value


def _check_journal_use(args: argparse.Namespace) -> None:
    if args.diff and (args.journal or args.force or args.max_failed is not None):
        raise UsageError("--journal, --force and --max-failed apply to real runs, not to --diff")
    if args.force and not args.journal:
        raise UsageError("--force needs --journal (it re-sends rows the journal holds)")


def _journal_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"journal": args.journal, "force": args.force, "max_failed": args.max_failed}


def _cora_text_column(columns: Mapping[str, str] | None) -> Callable[[str], bool]:
    def text(column: str) -> bool:
        field = (columns or {}).get(column, column)
        return field_kind(field) != "number"

    return text


def _run_cora_upsert(args: argparse.Namespace) -> int:
    from .cora._client import CoraClient

    out = sys.stdout if args.out != "-" else sys.stderr
    columns = _load_columns(args.columns)
    if args.out is not None:
        file_format(args.out)
    _check_journal_use(args)
    frame = read_frame(args.file, _cora_text_column(columns))
    client = CoraClient(min_interval=args.min_interval)
    verb = "preview (local)" if args.diff else "dry run" if args.dry_run else "upsert"
    print(f"Cora {verb}: {len(frame):,} rows from {args.file} -> {client.base_url} "
          f"(key id {client.key_id})", file=sys.stderr)
    kwargs: dict[str, Any] = {"columns": columns, "on_invalid": args.on_invalid,
                              "mode": args.mode}
    try:
        if args.diff:
            result = CoraAccessor(frame).diff(
                client=client, progress=not args.no_progress, **kwargs
            )
        else:
            result = CoraAccessor(frame).upsert(
                client=client, dry_run=args.dry_run, include_changes=args.include_changes,
                progress=not args.no_progress, **kwargs, **_journal_kwargs(args),
            )
    except (RecocoraError, RunInterrupted) as exc:
        _save_partial(exc.result, args.out)
        raise
    finally:
        client.close()
    _emit(cora_summary(result, args.file, interval=args.min_interval), out)
    _save(result, args.out, out)
    return _exit_code(result, "cora_status")


def cora_summary(result: pd.DataFrame, source: str, interval: float = 20.0) -> list[str]:
    """The lines ``recocora cora upsert`` prints: what ran, counts by status, the first
    problem rows and field changes; ``interval`` is the rate window used for the estimate.

    >>> cora_summary(df.cora.diff(client=cora), "accounts.csv")[0]  # doctest: +SKIP
    'Cora preview of accounts.csv, computed locally (nothing written, no bulk request): ...'
    """
    from .cora._upsert import STATUSES

    attrs = result.attrs
    local = attrs.get("preview") == "local"
    dry = bool(attrs.get("dry_run"))
    if local:
        head, tail = "Cora preview", ", computed locally (nothing written, no bulk request)"
    elif dry:
        head, tail = "Cora dry run", " (nothing written)"
    else:
        head, tail = "Cora upsert", ""
    bits = [_plural(len(result), "row")]
    if "requests" in attrs:
        bits.append(_plural(int(attrs["requests"]), "read request" if local else "bulk request"))
    seconds = attrs.get("duration_s", attrs.get("duration"))
    if seconds is not None:
        bits.append(f"{float(seconds):.1f} s")
    lines = [f"{head} of {source}{tail}: {', '.join(bits)}"]
    counts = status_counts(result, "cora_status", STATUSES)
    lines.append("would be:" if local or dry else "outcome:")
    lines.extend(count_lines(counts))
    if local or dry:
        sendable = sum(n for s, n in counts.items() if s not in ("invalid", "skipped"))
        requests = -(-sendable // 500)
        eta = max(0, requests - 1) * interval
        if requests > 1:
            lines.append(f"The real run needs {requests} bulk requests, one every "
                         f"{interval:g} s: {format_duration(eta)}.")
        else:
            lines.append(f"The real run needs {_plural(requests, 'bulk request')}: no wait "
                         "for the rate limit.")
    lines.extend(_problem_lines(result, "cora", "cora_external_id"))
    lines.extend(_change_lines(result))
    return lines


def _save_partial(result: pd.DataFrame | None, path: str | None) -> None:
    if path is not None and result is not None:
        try:
            _save(result, path, sys.stderr, partial=True)
        except UsageError as err:
            print(f"recocora: {err}", file=sys.stderr)


# --------------------------------------------------------------------------- recotap


def _run_recotap_map(args: argparse.Namespace) -> int:
    from .recotap._client import RecotapClient

    out = sys.stdout if args.out != "-" else sys.stderr
    if args.out is not None:
        file_format(args.out)
    _check_journal_use(args)
    frame = read_frame(args.file)
    for flag, column in (("--domain-col", args.domain_col), ("--id-col", args.id_col)):
        if column not in frame.columns:
            raise UsageError(
                f"{args.file} has no column {column!r} ({flag}); its columns are "
                f"{', '.join(map(str, frame.columns[:20]))}"
            )
    client = RecotapClient()
    preview = bool(args.diff)
    print(f"Recotap {'preview' if preview else 'map-ids'}: {len(frame):,} rows from "
          f"{args.file} -> {client.base_url}", file=sys.stderr)
    try:
        if preview:
            result = RecotapAccessor(frame).diff(
                client=client, domain=args.domain_col, external_id=args.id_col,
                overwrite=args.overwrite, on_invalid=args.on_invalid,
                progress=not args.no_progress,
            )
        else:
            result = RecotapAccessor(frame).map_ids(
                client=client, domain=args.domain_col, external_id=args.id_col,
                overwrite=args.overwrite, verify=args.verify, on_invalid=args.on_invalid,
                progress=not args.no_progress, **_journal_kwargs(args),
            )
    except (RecocoraError, RunInterrupted) as exc:
        _save_partial(exc.result, args.out)
        raise
    finally:
        client.close()
    _emit(recotap_summary(result, args.file), out)
    _save(result, args.out, out)
    return _exit_code(result, "recotap_status")


def recotap_summary(result: pd.DataFrame, source: str) -> list[str]:
    """The lines ``recocora recotap map-ids`` prints: counts by status, requests, problems.

    >>> recotap_summary(crm.recotap.map_ids(client=rtp), "crm.csv")[0]  # doctest: +SKIP
    'Recotap map-ids of crm.csv: 3 rows, 1 mapping request, 1 read request, 0.1 s'
    """
    from .recotap._mapping import STATUSES

    attrs = result.attrs
    local = attrs.get("preview") == "local"
    head = "Recotap preview (nothing written)" if local else "Recotap map-ids"
    bits = [_plural(len(result), "row")]
    if "requests" in attrs:
        bits.append(_plural(int(attrs["requests"]), "mapping request"))
    if attrs.get("read_requests"):
        bits.append(_plural(int(attrs["read_requests"]), "read request"))
    seconds = attrs.get("duration", attrs.get("duration_s"))
    if seconds is not None:
        bits.append(f"{float(seconds):.1f} s")
    lines = [f"{head} of {source}: {', '.join(bits)}"]
    lines.append("would be:" if local else "outcome:")
    lines.extend(count_lines(status_counts(result, "recotap_status", STATUSES)))
    lines.extend(_problem_lines(result, "recotap", "recotap_domain"))
    held = result[result["recotap_status"].astype(object) == "already_mapped"]
    if len(held):
        lines.append(f"{_plural(len(held), 'account')} already held another id and "
                     f"{'was' if len(held) == 1 else 'were'} left alone "
                     "(--overwrite replaces them).")
    return lines


def _run_recotap_unmapped(args: argparse.Namespace) -> int:
    from .recotap._client import RecotapClient

    if args.out is not None:
        file_format(args.out)
    if not 1 <= args.limit <= 1000:
        raise UsageError(f"--limit must be between 1 and 1000, not {args.limit}")
    with RecotapClient() as client:
        frame = client.unmapped_accounts(limit=args.limit)
    target = args.out or "-"
    write_frame(frame, target)
    report = sys.stderr if target == "-" else sys.stdout
    more = " (the limit: there may be more)" if len(frame) == args.limit else ""
    where = "" if target == "-" else f" -> {target}"
    print(f"{len(frame):,} Recotap accounts without an external id{more}{where}", file=report)
    return 0


# --------------------------------------------------------------------------- demo


def _demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="run the whole story on a built-in sandbox, in under a minute",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
            "Start the embedded sandbox, build a messy accounts frame, validate and fix it, "
            "preview, upsert into Cora, then backfill CRM ids into Recotap, and print what "
            "happened. Nothing leaves this machine.", _WIDTH,
        ),
        epilog="examples:\n  recocora demo\n  recocora demo --rows 200 --no-progress\n",
    )
    p.add_argument("--rows", type=int, default=1000,
                   help="rows in the messy accounts frame (default 1000, at least 20)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run

    if args.rows < 20:
        raise UsageError(f"--rows must be at least 20, not {args.rows}")
    return run(rows=args.rows, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    """The ``recocora`` argument parser, with every subcommand.

    >>> build_parser().parse_args(["cora", "upsert", "a.csv", "--diff"]).diff
    True
    """
    parser = argparse.ArgumentParser(
        prog="recocora",
        description="Push pandas DataFrames into Cora and Recotap in bulk, safely.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_MAIN_EXAMPLES,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _demo_parser(sub)
    _cora_parser(sub)
    _recotap_parser(sub)
    _sandbox_parser(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        return _run_sandbox(args)
    if args.command == "demo":
        return _run_demo(args)
    if args.command == "cora":
        return _run_cora_upsert(args)
    if args.action == "map-ids":
        return _run_recotap_map(args)
    return _run_recotap_unmapped(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``recocora`` command; returns its exit code.

    >>> main(["cora", "upsert", "accounts.csv", "--diff"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except UsageError as exc:
        parser.exit(2, f"recocora: error: {exc}\n")
    except ValidationError as exc:
        # The report is the point of this outcome: every row and column at fault.
        print(str(exc), file=sys.stdout)
        sys.stdout.flush()
        print("recocora: nothing was sent; fix the rows above, or pass --on-invalid skip to "
              "send the valid ones", file=sys.stderr)
        return 1
    except TooManyFailedError as exc:
        print(f"recocora: stopped: {_one_line(exc)}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"recocora: configuration error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RecocoraError as exc:
        print(f"recocora: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recocora: interrupted; rows already acknowledged keep their outcome (and are in "
              "the journal, with --journal)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
