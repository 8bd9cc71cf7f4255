"""``recocora sandbox``: serve both APIs on one port until Ctrl-C, for trying recocora.

The keys the sandbox accepts are printed with the ``export`` lines to paste into a shell;
unless given (``--cora-key``, ``--recotap-key``) they are new on every start, and the output
says so. A port already in use, a host that cannot be bound or a ``--db`` file that cannot be
written end the command with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from types import FrameType

from .._io import UsageError, check_writable
from .._report import one_line
from ._cora import RateWindow
from ._faults import FaultConfig
from ._server import Sandbox

__all__ = ["add_sandbox_parser", "run_sandbox"]


def add_sandbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--cora-key",
                   help="Cora key to accept (default: a new random one on every start, printed)")
    p.add_argument("--recotap-key",
                   help="Recotap key to accept (default: a new random one on every start, "
                        "printed)")
    p.add_argument("--cora-window", type=float, default=20.0,
                   help="seconds between bulk upserts per key (default 20, 0 = off)")
    w = p.add_argument_group("Cora's rate window, as a real gateway may keep it")
    w.add_argument("--window-stamp", choices=["arrival", "body", "processed"],
                   default="arrival",
                   help="when a bulk request starts the window: on arrival (default), once "
                        "its body is read, or once it is processed")
    w.add_argument("--window-jitter", type=float, default=0.0, metavar="SECONDS",
                   help="a random delay of up to SECONDS added to each stamp (default 0)")
    w.add_argument("--window-restart", action="store_true",
                   help="a refused request restarts the window too")
    w.add_argument("--retry-after", choices=["seconds", "date", "none", "stale"],
                   default="seconds",
                   help="how a 429 says when to come back (default: whole seconds)")
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
        ("p-unwritten", "Recotap: share of matched accounts left unwritten (matched > updated)"),
    ):
        f.add_argument(f"--{name}", type=float, default=0.0, help=text)
    f.add_argument("--burst-429", type=int, default=1, help="length of a 429 burst")
    f.add_argument("--retry-after-429", type=int, default=1, help="Retry-After of forced 429s")
    f.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    f.add_argument("--spike", type=float, default=0.0, help="seconds of a latency spike")
    f.add_argument("--clock-skew", type=float, default=0.0, help="seconds added to server clock")
    f.add_argument("--variant", action="append", default=[], choices=_VARIANTS,
                   help="an answer variant the vendors' docs allow (repeatable)")


#: FaultConfig's on/off answer variants, as ``--variant`` takes them.
_VARIANTS = ("no_date", "numbers_as_text", "unicode_domains", "not_found_normal",
             "bare_answers", "errors_without_data", "unauthorized_text")


def run_sandbox(args: argparse.Namespace) -> int:
    faults = FaultConfig(
        seed=args.fault_seed, p_500=args.p_500, p_502=args.p_502, p_503=args.p_503,
        p_drop=args.p_drop, p_drop_after=args.p_drop_after, p_429=args.p_429,
        p_auth_error=args.p_auth_error, spike_p=args.spike_p, burst_429=args.burst_429,
        retry_after_429=args.retry_after_429, latency=args.latency, spike=args.spike,
        clock_skew=args.clock_skew, scope=args.fault_scope, p_unwritten=args.p_unwritten,
        **dict.fromkeys(args.variant, True),
    )
    if args.db is not None:
        check_writable(args.db, "--db", table=False)
    window = RateWindow(args.cora_window, stamp=args.window_stamp, jitter=args.window_jitter,
                        restart_on_refusal=args.window_restart, retry_after=args.retry_after,
                        seed=args.fault_seed)
    sb = Sandbox(
        host=args.host, port=args.port, seed=args.seed, cora_window=window,
        recotap_rps=args.recotap_rps, faults=faults, db=args.db, cora_key=args.cora_key,
        recotap_key=args.recotap_key, prefix=args.prefix,
    )
    try:
        sb.start()
    except OSError as exc:
        sb.close()
        raise UsageError(_bind_problem(args.host, args.port, exc)) from None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    out = sys.stdout
    print(f"recocora sandbox serving on {sb.base_url}  (Ctrl-C stops)", file=out)
    print(f"  Cora     {sb.cora_base_url}/external-api/accounts   key {sb.cora_key}", file=out)
    print(f"  Recotap  {sb.recotap_base_url}   key {sb.recotap_key}", file=out)
    if args.cora_key is None or args.recotap_key is None:
        print("  The keys are new on every start (the data of --seed demo is not); pass "
              "--cora-key and --recotap-key to keep the same ones.", file=out)
    stamped = (f", stamped at {window.stamp}" + (f" + up to {window.jitter:g} s" if
               window.jitter else "") if window.seconds else "")
    print(f"  Cora bulk window {args.cora_window:g} s{stamped}; seed {args.seed}"
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


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = (f"port {port} is already in use; stop what is using it, or pick another "
               "--port (0 picks a free one)")
    elif exc.errno == errno.EACCES:
        why = f"port {port} needs privileges; pick a port above 1024"
    else:
        why = f"{one_line(exc)}; check --host"
    return f"cannot serve on {host}:{port}: {why}"
