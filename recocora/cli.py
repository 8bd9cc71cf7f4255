"""The ``recocora`` command: ``demo``, ``cora upsert``, ``recotap map-ids``,
``recotap unmapped``, ``runs``, ``worker`` and ``sandbox``.

Credentials come from the environment only (``CORA_API_KEY``, ``CORA_BASE_URL``,
``RECOTAP_API_KEY``, ``RECOTAP_BASE_URL``). Progress goes to stderr, the summary to stdout.
Exit codes: 0 every row fine, 1 some rows failed, invalid or not sent, 2 a usage,
configuration, auth or request-level error (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ._cli_hints import report_for_command_line, results_for_command_line
from ._io import (
    UsageError,
    check_writable,
    emit,
    read_column_map,
    read_cora_file,
    read_frame,
    save_results,
    write_frame,
)
from ._report import cora_summary, has_problems, one_line, recotap_summary
from ._runs_cli import add_runs_parser, run_runs
from ._validation import failure_message
from .cora import _adapter as cora_run
from .cora import _diff as cora_diff
from .cora._client import CoraClient
from .errors import ConfigError, RecocoraError, RunInterrupted, TooManyFailedError, ValidationError
from .recotap import _adapter as recotap_run
from .recotap._client import RecotapClient
from .recotap._match_cli import add_match_parser, run_match
from .sandbox._command import add_sandbox_parser, run_sandbox

__all__ = ["build_parser", "main"]

_WIDTH = 88
_ADVICE = ("Nothing was sent. Fix these rows in the file, or pass --on-invalid skip to send "
           "only the valid rows (the others come back invalid).")


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

_CORA_EXAMPLES = f"""\
examples:
  # what would happen, computed from the accounts' current state (no write, no rate slot)
  recocora cora upsert accounts.csv --diff
  # ask Cora itself (validates server-side; spends one 20 s slot per {CoraClient.MAX_ROWS} rows)
  recocora cora upsert accounts.csv --dry-run --include-changes
  # the real run: send valid rows, mark the rest invalid, keep every row's outcome
  recocora cora upsert accounts.parquet --on-invalid skip --out results.csv
  # rename the file's columns to Cora fields
  echo '{{"File #": "externalId", "Phone": "phoneNumber"}}' > map.json
  recocora cora upsert export.csv --columns map.json --out results.parquet
  # a raw export: leave columns out, convert phones, send what is valid
  recocora cora upsert notebooks/data/messy_accounts.csv --drop-columns legacy_no,updatedAt \
      --phone-region US --on-invalid skip --out results.csv

credentials come from the environment only: CORA_API_KEY (cora_org_<keyId>.<secret>)
and CORA_BASE_URL (default https://api.corafone.com).
stdout: a summary (counts by status, the first problem rows and changes); the results
go to --out (CSV or Parquet by extension; "-" writes CSV to stdout), whose folder is
checked before anything is sent. progress: stderr.
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
  recocora recotap unmapped --out unmapped.csv
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
            "Validate every row, then create or update Cora accounts by externalId, "
            f"{CoraClient.MAX_ROWS} per "
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
    p.add_argument("--skip-unchanged", action="store_true",
                   help="read the accounts first and send only rows that would change; "
                        "the others come back skipped and cost no rate-limit slot")
    p.add_argument("--include-changes", action="store_true",
                   help="ask for the field changes of updated rows (cora_changes)")
    p.add_argument("--columns", metavar="MAP.json",
                   help='JSON object renaming the file\'s columns to fields: {"File #": '
                        '"externalId"}')
    p.add_argument("--drop-columns", metavar="A,B", type=_listed, default=[],
                   help="leave these columns of the file out (comma-separated), e.g. "
                        "updatedAt,legacy_no")
    p.add_argument("--phone-region", metavar="REGION",
                   help="read phone numbers written without + (e.g. (512) 555-0142) as "
                        "numbers of this country (US, GB, ...) and send them in E.164; "
                        "numbers it cannot read are left for validation to report")
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
            "write each row's id onto the Recotap account with that domain, "
            f"{RecotapClient.MAX_MAPPINGS} per request.",
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
    u.add_argument("--limit", type=int, default=RecotapClient.MAX_LIMIT,
                   help=f"how many to list, 1 to {RecotapClient.MAX_LIMIT} (the default)")
    u.add_argument("--out", metavar="FILE", help="write them here (.csv or .parquet)")
    add_match_parser(rsub)


def _add_journal(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("long runs")
    g.add_argument("--journal", metavar="PATH",
                   help="record every acknowledged row in this SQLite file; running the same "
                        "command again sends only rows never acknowledged, changed or failed "
                        "(the others come back skipped)")
    g.add_argument("--force", action="store_true",
                   help="with --journal: send every row again")
    g.add_argument("--background", nargs="?", const=True, default=False, choices=["queue"],
                   help="validate, hand the run to a worker process, print its id at once "
                        "('queue': for a recocora worker); follow it with 'recocora runs'")
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
    if args.background and (args.diff or args.out):
        raise UsageError("--background runs on its own: no --diff or --out (recocora runs "
                         "wait ID shows the outcome)")
    if args.force and not args.journal:
        raise UsageError("--force needs --journal (it re-sends rows the journal holds)")


def _check_outputs(args: argparse.Namespace) -> None:
    """Every path the command will write, checked before its first request."""
    if getattr(args, "out", None) is not None:
        check_writable(args.out, "--out")
    if getattr(args, "journal", None) is not None:
        check_writable(args.journal, "--journal", table=False)


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options every run takes, from the flags both ``cora upsert`` and
    ``recotap map-ids`` have."""
    run = {"progress": not args.no_progress, "on_invalid": args.on_invalid}
    if args.diff:
        return run
    return {**run, "journal": args.journal, "force": args.force, "max_failed": args.max_failed}


def _listed(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of columns")
    return names


def _run_cora_upsert(args: argparse.Namespace) -> int:
    out = sys.stdout if args.out != "-" else sys.stderr
    columns = read_column_map(args.columns)
    _check_journal_use(args)
    _check_outputs(args)
    frame = read_cora_file(args.file, columns, drop=args.drop_columns,
                           phone_region=args.phone_region)
    client = CoraClient(min_interval=args.min_interval)
    verb = "preview (local)" if args.diff else "dry run" if args.dry_run else "upsert"
    print(f"Cora {verb}: {len(frame):,} rows from {args.file} -> {client.base_url} "
          f"(key id {client.key_id})", file=sys.stderr)
    if args.background:
        with contextlib.closing(client):
            return _started(frame.cora.upsert(
                client=client, columns=columns, mode=args.mode, dry_run=args.dry_run,
                include_changes=args.include_changes, background=args.background,
                **_run_kwargs(args)))
    try:
        if args.diff:
            options = cora_run.UpsertOptions(columns=columns, mode=args.mode,
                                             include_changes=True, **_run_kwargs(args))
            result = cora_diff.diff(frame, client, options)
        else:
            options = cora_run.UpsertOptions(
                columns=columns, mode=args.mode, dry_run=args.dry_run,
                include_changes=args.include_changes, skip_unchanged=args.skip_unchanged,
                **_run_kwargs(args),
            )
            result = cora_run.upsert(frame, client, options)
    except (RecocoraError, RunInterrupted) as exc:
        _save_partial(exc.result, args.out, "cora_message")
        raise
    finally:
        client.close()
    result = results_for_command_line(result, "cora_message")
    emit(cora_summary(result, args.file, interval=args.min_interval,
                       rows_per_request=client.MAX_ROWS), out)
    save_results(result, args.out, out)
    return 1 if has_problems(result) else 0


def _started(run: Any) -> int:
    print(run.id)
    print(f"Started in the background: {run!r}. Follow it with 'recocora runs show {run.id}'.",
          file=sys.stderr)
    return 0


def _save_partial(result: pd.DataFrame | None, path: str | None, messages: str) -> None:
    if path is not None and result is not None:
        try:
            save_results(results_for_command_line(result, messages), path, sys.stderr, partial=True)
        except UsageError as err:
            print(f"recocora: {err}", file=sys.stderr)


# --------------------------------------------------------------------------- recotap


def _run_recotap_map(args: argparse.Namespace) -> int:
    out = sys.stdout if args.out != "-" else sys.stderr
    _check_journal_use(args)
    _check_outputs(args)
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
    options = recotap_run.MapOptions(
        domain=args.domain_col, external_id=args.id_col, overwrite=args.overwrite,
        verify=args.verify and not preview, **_run_kwargs(args),
    )
    if args.background:
        with contextlib.closing(client):
            return _started(frame.recotap.map_ids(
                client=client, domain=args.domain_col, external_id=args.id_col,
                overwrite=args.overwrite, verify=args.verify, **_run_kwargs(args),
                background=args.background))
    try:
        if preview:
            result = recotap_run.diff(frame, client, options)
        else:
            result = recotap_run.map_ids(frame, client, options)
    except (RecocoraError, RunInterrupted) as exc:
        _save_partial(exc.result, args.out, "recotap_message")
        raise
    finally:
        client.close()
    result = results_for_command_line(result, "recotap_message")
    emit(recotap_summary(result, args.file), out)
    save_results(result, args.out, out)
    return 1 if has_problems(result) else 0


def _run_recotap_unmapped(args: argparse.Namespace) -> int:
    _check_outputs(args)
    if not 1 <= args.limit <= RecotapClient.MAX_LIMIT:
        raise UsageError(f"--limit must be between 1 and {RecotapClient.MAX_LIMIT}, "
                         f"not {args.limit}")
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
    add_sandbox_parser(sub)
    add_runs_parser(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        return run_sandbox(args)
    if args.command == "demo":
        return _run_demo(args)
    if args.command in ("runs", "worker"):
        return run_runs(args)
    if args.command == "cora":
        return _run_cora_upsert(args)
    if args.action == "map-ids":
        return _run_recotap_map(args)
    if args.action == "match":
        return run_match(args, read_frame, write_frame, UsageError)
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
        print(failure_message(report_for_command_line(exc.failure_cases), advice=_ADVICE,
                              rest="--on-invalid skip --out FILE writes every row's problems"),
              file=sys.stdout)
        sys.stdout.flush()
        print("recocora: nothing was sent; fix the rows above, or pass --on-invalid skip to "
              "send the valid ones", file=sys.stderr)
        return 1
    except TooManyFailedError as exc:
        print(f"recocora: stopped: {one_line(exc)}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"recocora: configuration error: {one_line(exc)}", file=sys.stderr)
        return 2
    except RecocoraError as exc:
        print(f"recocora: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recocora: interrupted; rows already acknowledged keep their outcome (and are in "
              "the journal, with --journal)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
