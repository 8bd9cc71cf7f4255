"""``recocora runs [list | show ID | wait ID | cancel ID]``: background runs from a shell;
``recocora worker [--once]``: a process that claims queued runs from the state database.

>>> main(["runs", "list"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ._runs import Run, attach, runs

__all__ = ["add_runs_parser", "run_runs"]

_EXAMPLES = """\
examples:
  recocora cora upsert accounts.parquet --background   # prints the run id, returns at once
  recocora runs                                          # every run: state, rows, counts
  recocora runs show cora-20261201-213000-a1b2c3         # one run, with its log
  recocora runs wait cora-20261201-213000-a1b2c3         # block until it ends
  recocora runs cancel cora-20261201-213000-a1b2c3       # stop before its next request

exit codes (wait): 0 succeeded, 1 it ended otherwise (failed, cancelled, interrupted).
With RECOCORA_STATE_URL set (or --state), the runs are those of the state database: any
machine's.
"""

_WORKER_EXAMPLES = """\
examples:
  export RECOCORA_STATE_URL=postgresql://recocora@db.internal:5432/recocora
  export CORA_API_KEY=cora_org_k1.…   RECOTAP_API_KEY=rtp_live_…
  recocora worker            # claim queued runs of these keys until SIGTERM or Ctrl-C
  recocora worker --once     # do the runs queued now, then exit (an Airflow task, cron)

A run is queued with df.cora.upsert(..., background="queue") on any machine sharing the
database. On SIGTERM the request in flight finishes and is recorded, and the run goes back in
the queue for another worker.
"""


def add_runs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``runs`` and ``worker`` commands."""
    p = sub.add_parser("runs", help="background runs: list, show, wait, cancel",
                       description="Background runs started with --background or "
                                   "background=True, from any process on this machine.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_EXAMPLES)
    _add_state(p)
    w = sub.add_parser("worker", help='claim and do runs queued with background="queue"',
                       description="Claim runs queued in the state database with one of this "
                                   "environment's keys, and do them one after another.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=_WORKER_EXAMPLES)
    _add_state(w)
    w.add_argument("--once", action="store_true",
                   help="do the runs queued now, then exit")
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    rsub.add_parser("list", help="every run, newest first (the default)")
    for name, text in (("show", "one run's state, counts and log"),
                       ("wait", "block until the run ends, then show it"),
                       ("cancel", "stop the run before its next request")):
        q = rsub.add_parser(name, help=text)
        q.add_argument("run_id", metavar="ID")
        if name == "wait":
            q.add_argument("--timeout", type=float, metavar="SECONDS",
                           help="give up waiting after this long (the run goes on)")


def _add_state(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", metavar="URL",
                   help="the state database (default RECOCORA_STATE_URL; prefer the variable "
                        "when the URL holds a password: a command line shows in process lists)")


def _show(run: Run) -> None:
    print(repr(run))
    info = run.info()
    for key in ("api", "rows", "started_at", "finished_at", "key_id", "run_dir"):
        print(f"  {key}: {info[key]}")
    log = run.log().strip()
    if log:
        print("log:")
        print("\n".join("  " + line for line in log.splitlines()[-20:]))


def run_runs(args: argparse.Namespace) -> int:
    if args.command == "worker":
        from ._queue import Queue

        return Queue(args.state).serve(once=args.once)
    action = args.action or "list"
    if action == "list":
        table = runs(args.state)
        if table.empty:
            print("No background runs.", file=sys.stderr)
            return 0
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(table.drop(columns=["eta_s"]).to_string(index=False))
        return 0
    run = attach(args.run_id, args.state)
    if action == "show":
        _show(run)
        return 0
    if action == "cancel":
        run.cancel()
        print(f"Cancel requested: {run!r}")
        return 0
    try:
        run.wait(timeout=args.timeout)
    except TimeoutError as exc:
        print(f"recocora: {exc}", file=sys.stderr)
        return 1
    except Exception:
        _show(run)
        raise
    _show(run)
    return 0 if run.state == "succeeded" else 1
