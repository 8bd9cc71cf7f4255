"""``recocora recotap match``: match a CRM export to Recotap's unmapped accounts from the
command line. The parser entries and the handler live here; ``recocora.cli`` registers
them and hands over its file reader and writer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import pandas as pd

from ._match import STATUSES, match_accounts

__all__ = ["EXAMPLES", "add_match_parser", "run_match"]

EXAMPLES = """\
examples:
  recocora recotap match crm.csv --name-col company --domain-col website \\
      --email-col email --out matches.csv
  recocora recotap match crm.csv --accounts unmapped.csv --out matches.csv
  recocora recotap match crm.csv --out matches.csv --decisions matches.csv   # keep edits

Without --accounts, every unmapped account is listed from the API (List Accounts walked
page by page: one request per 100 accounts of the tenant). The output holds the CRM
columns and match_status (auto, review, ambiguous, conflict, none), match_domain,
match_name, match_score, match_tier, match_reason, match_external_id, match_decision.
Fill match_decision (accepted, rejected, no_match) in a spreadsheet, then map with
  recocora recotap map-ids accepted.csv
after keeping the accepted and auto rows (or use matches.recotap.accepted() in Python).
credentials: RECOTAP_API_KEY and RECOTAP_BASE_URL from the environment.
"""


def add_match_parser(rsub: Any) -> None:
    """The ``match`` action of ``recocora recotap``."""
    p = rsub.add_parser(
        "match", help="match CRM rows to unmapped Recotap accounts by domain, e-mail and name",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Match each CRM row to the unmapped Recotap account it most likely is, "
                    "and say why. Writes nothing to Recotap.",
    )
    p.add_argument("file", metavar="CRM", help="the CRM export (.csv, .tsv, .parquet)")
    p.add_argument("--accounts", metavar="FILE",
                   help="unmapped accounts with name and domain columns (default: list them "
                        "from the API)")
    p.add_argument("--name-col", default=None, metavar="COLUMN",
                   help="company name column (default: company or name, if present)")
    p.add_argument("--domain-col", action="append", metavar="COLUMN",
                   help="website or domain column; repeat for several (default: website "
                        "or domain, if present)")
    p.add_argument("--email-col", action="append", metavar="COLUMN",
                   help="e-mail column; repeat for several (default: email, if present)")
    p.add_argument("--id-col", default=None, metavar="COLUMN",
                   help="CRM id column (default: externalId if present, else the row number)")
    p.add_argument("--decisions", metavar="FILE",
                   help="re-apply the decisions saved here (a decisions file, or a matches "
                        "CSV with match_decision filled in)")
    p.add_argument("--out", metavar="FILE", default="-",
                   help="where the matches go (.csv, .tsv, .parquet; default - = stdout)")


def _default(frame: pd.DataFrame, given: Any, candidates: tuple[str, ...]) -> Any:
    if given:
        return given
    found = [c for c in candidates if c in frame.columns]
    return found[:1] or None


def run_match(
    args: argparse.Namespace,
    read: Callable[[str], pd.DataFrame],
    write: Callable[[pd.DataFrame, str], None],
    usage: Callable[[str], Exception],
) -> int:
    """Run ``recocora recotap match`` with the command's file ``read``/``write`` functions;
    ``usage`` builds the error that exits with code 2."""
    from ._client import RecotapClient

    crm = read(args.file)
    name = _default(crm, args.name_col, ("company", "name"))
    domain = _default(crm, args.domain_col, ("website", "domain"))
    email = _default(crm, args.email_col, ("email",))
    if not (name or domain or email):
        raise usage("say what to match on: --name-col, --domain-col or --email-col "
                    f"(the file has {', '.join(map(str, crm.columns))})")
    if args.accounts:
        accounts = read(args.accounts)
        source = args.accounts
    else:
        with RecotapClient() as client:
            accounts = client.unmapped_accounts(all=True, limit=client.PAGE_LIMIT)
        source = client.base_url
    matches = match_accounts(
        crm, accounts, name=name[0] if isinstance(name, list) else name, domain=domain,
        email=email, external_id=args.id_col, decisions=args.decisions,
    )
    write(crm.join(matches), args.out)
    report = sys.stderr if args.out == "-" else sys.stdout
    counts = matches["match_status"].value_counts()
    print(f"Matched {len(crm):,} rows of {args.file} against {len(accounts):,} unmapped "
          f"accounts ({source}):", file=report)
    for status in STATUSES:
        print(f"  {status:<10}{int(counts.get(status, 0)):>9,}", file=report)
    decided = matches["match_decision"].value_counts()
    for decision, n in decided.items():
        print(f"  decided {decision}: {int(n):,}", file=report)
    if args.out != "-":
        print(f"Matches: {args.out}", file=report)
    return 0
