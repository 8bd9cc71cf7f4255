"""The sandbox's HTTP server: both APIs on one port, faults, the request log.

Built on the standard library's ``ThreadingHTTPServer``: it needs no dependency and gives
the socket-level control that fault injection needs (closing a connection with no answer).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from ._cora import CoraApi, RateWindow
from ._cora_auth import error as cora_error
from ._core import Clock, Request, Response, Store, json_response
from ._faults import FaultConfig, FaultDecision, FaultInjector
from ._recotap import RecotapApi

__all__ = ["MAX_BODY", "RequestRecord", "Sandbox", "SandboxServer"]

MAX_BODY = 16 * 1024 * 1024
RECOTAP_MOUNT = "/api/v1"
CORA_MOUNT = "/external-api"
SeedName = Literal["none", "demo"]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it: for tests and notebooks to count and inspect."""

    time: float
    method: str
    path: str
    status: int | None  # None: the connection was dropped with no answer
    fault: str | None
    api: str
    #: ``time.monotonic()`` when the request arrived: Cora's rate window counts from here.
    arrived: float = 0.0


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: SandboxApp) -> None:
        self.app = app
        # Connections being served (kept alive between requests), so stopping ends them too.
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open connection: a stopped server must not keep answering on the
        connections clients pooled while it ran."""
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class SandboxApp:
    """Routing, faults and bookkeeping, independent of the socket layer."""

    def __init__(self, store: Store, prefix: str = "", cora_window: float | RateWindow = 20.0,
                 recotap_rps: float | None = None, faults: FaultConfig | None = None) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.clock = Clock()
        self.faults = FaultInjector()
        self.cora = CoraApi(store, self.clock, cora_window)
        self.recotap = RecotapApi(store, self.clock, recotap_rps)
        self.log: deque[RequestRecord] = deque(maxlen=200_000)
        self.set_faults(faults or FaultConfig())

    def set_faults(self, config: FaultConfig) -> None:
        self.faults.configure(config)
        self.clock.skew = config.clock_skew
        self.cora.variants = self.recotap.variants = config

    def api_of(self, path: str) -> tuple[str, str]:
        """``(api, subpath)`` for a raw path; api is ``cora``, ``recotap`` or ``other``."""
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                return "other", path
            path = path[len(self.prefix) :]
        if path == CORA_MOUNT or path.startswith(CORA_MOUNT + "/"):
            return "cora", path
        if path == RECOTAP_MOUNT or path.startswith(RECOTAP_MOUNT + "/"):
            return "recotap", path[len(RECOTAP_MOUNT) :]
        return "other", path

    def fault_response(self, api: str, decision: FaultDecision, path: str) -> Response | None:
        kind = decision.kind
        if kind == "429":
            after = decision.retry_after
            if api == "cora":
                return self.cora.rate_limited(after)
            return self.generic_error(api, 429, path, "Rate limit exceeded",
                                      {} if after is None else {"Retry-After": str(after)})
        if kind in ("500", "502", "503"):
            return self.generic_error(api, int(kind), path, "Injected fault")
        if kind == "auth":
            return cora_error(500, "AUTH_CHECK_FAILED", "Authentication check failed")
        return None

    def generic_error(self, api: str, status: int, path: str, text: str,
                      headers: dict[str, str] | None = None) -> Response:
        phrase = HTTPStatus(status).phrase
        if api == "recotap":
            body: dict[str, Any] = {"statusCode": status, "timestamp": self.clock.iso(),
                                    "path": path, "message": phrase, "customMessage": text}
            if not self.recotap.variants.errors_without_data:
                body["data"] = None
            return json_response(status, body, headers)
        code = phrase.upper().replace(" ", "_").replace("-", "_")
        return json_response(
            status, {"success": False, "code": code, "message": f"{phrase}: {text}"}, headers
        )

    def route(self, req: Request, api: str, subpath: str) -> Response:
        if api == "cora":
            return self.cora.handle(req, subpath)
        if api == "recotap":
            return self.recotap.handle(req, subpath)
        return self.generic_error("other", 404, req.path, f"Cannot {req.method} {req.path}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle on, keep-alive answers stall ~40 ms.
    disable_nagle_algorithm = True
    server: SandboxServer
    server_version = "recocora-sandbox"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is kept in memory; stderr stays quiet

    def _dispatch(self) -> None:
        arrived = time.monotonic()
        app = self.server.app
        split = urlsplit(self.path)
        api, subpath = app.api_of(split.path)
        decision = app.faults.decide(api, self.command)
        record_fault = decision.kind or ("latency" if decision.delay else None)

        def record(status: int | None) -> None:
            app.log.append(
                RequestRecord(time.time(), self.command, split.path, status, record_fault, api,
                              arrived)
            )

        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            record(411)
            self._send(app.generic_error(api, 411, split.path, "Send a Content-Length body"))
            self.close_connection = True
            return
        try:
            length = int(length_header or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            if api == "cora":
                resp = cora_error(413, "PAYLOAD_TOO_LARGE", f"Body exceeds {MAX_BODY} bytes")
            else:
                resp = app.generic_error(api, 413, split.path, f"Body exceeds {MAX_BODY} bytes")
            record(413)
            self._send(resp)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        body_read = time.monotonic()
        if decision.kind == "drop":
            time.sleep(decision.delay)
            record(None)
            self._drop()
            return
        faulted = app.fault_response(api, decision, split.path)
        if faulted is not None:
            resp = faulted
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            req = Request(self.command, split.path, self.path,
                          parse_qs(split.query, keep_blank_values=True), headers, body, arrived,
                          body_read)
            try:
                resp = app.route(req, api, subpath)
            except Exception as exc:  # a sandbox bug must still answer, never hang
                resp = app.generic_error(api, 500, split.path, f"Internal error: {exc!r}")
        # Latency is served after processing: the request is stamped (rate window, writes)
        # when it arrives, as on a real server whose answer is slow to come back.
        if decision.delay:
            time.sleep(decision.delay)
        # Logged before the answer leaves, so a caller that has its answer sees its entry.
        if decision.kind == "drop_after":
            record(None)
            self._drop()
            return
        record(resp.status)
        self._send(resp)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        if not self.server.app.faults.config.no_date:
            self.send_header("Date", self.date_time_string())

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header follows the server's (possibly skewed) clock.
        return self.server.app.clock.http_date()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _dispatch

    def finish(self) -> None:
        # The socket may already be shut down by a dropped-connection fault.
        with contextlib.suppress(OSError):
            super().finish()


class Sandbox:
    """Both APIs on ``127.0.0.1``, in a background thread: the embedded default of the demo,
    the notebooks and the tests.

    >>> from recocora.sandbox import Sandbox
    >>> with Sandbox(seed="demo", cora_window=0) as sb:      # doctest: +SKIP
    ...     print(sb.cora_base_url, len(sb.cora_accounts()))
    http://127.0.0.1:54321 2000
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: SeedName = "none",
        cora_window: float | RateWindow = 20.0,
        recotap_rps: float | None = None,
        faults: FaultConfig | None = None,
        db: str | None = None,
        cora_key: str | None = None,
        recotap_key: str | None = None,
        prefix: str = "",
        cora_org: str = "org_sandbox",
        recotap_org: str = "org_sandbox",
    ) -> None:
        self.host, self.port, self.seed = host, port, seed
        self.cora_key = cora_key or f"cora_org_sandbox.{secrets.token_hex(16)}"
        self.recotap_key = recotap_key or f"rtp_sandbox_{secrets.token_hex(12)}"
        self.cora_org, self.recotap_org = cora_org, recotap_org
        self._initial_rate = (
            cora_window if isinstance(cora_window, RateWindow) else RateWindow(cora_window)
        )
        self._initial_rps = recotap_rps
        self.store = Store(db)
        self.app = SandboxApp(self.store, prefix, cora_window, recotap_rps, faults)
        self._server: SandboxServer | None = None
        self._thread: threading.Thread | None = None
        fresh = db is None or (not self.cora_accounts() and not self.recotap_accounts())
        self._install_keys()
        if fresh:
            self._seed(seed)

    def __repr__(self) -> str:
        where = self.cora_base_url if self._server else "not started"
        return f"Sandbox({where}, seed={self.seed!r})"

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is None:
            self._server = SandboxServer(self.host, self.port, self.app)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="recocora-sandbox", daemon=True,
                kwargs={"poll_interval": 0.1},
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.app.prefix}"

    @property
    def cora_base_url(self) -> str:
        return self.base_url

    @property
    def recotap_base_url(self) -> str:
        return self.base_url + RECOTAP_MOUNT

    def env(self) -> dict[str, str]:
        """The environment variables that point recocora's clients at this sandbox."""
        return {
            "CORA_BASE_URL": self.cora_base_url,
            "CORA_API_KEY": self.cora_key,
            "RECOTAP_BASE_URL": self.recotap_base_url,
            "RECOTAP_API_KEY": self.recotap_key,
        }

    # -- state --------------------------------------------------------------------------------

    def _install_keys(self) -> None:
        self.app.cora.add_key(self.cora_key, self.cora_org)
        self.app.recotap.add_key(self.recotap_key, self.recotap_org)

    def _seed(self, seed: SeedName) -> None:
        if seed == "demo":
            self.app.cora.seed_demo(self.cora_org)
            self.app.recotap.seed_demo(self.recotap_org)
        elif seed != "none":
            raise ValueError(f"seed must be 'demo' or 'none', got {seed!r}")

    def reset(self, seed: SeedName | None = None) -> None:
        """Fresh state: accounts re-seeded, rate windows, faults, clock skew and log cleared."""
        self.app.cora.reset()
        self.app.recotap.reset()
        self.app.cora.rate = self._initial_rate
        self.app.recotap.rps = self._initial_rps
        self.app.set_faults(FaultConfig())
        self.app.log.clear()
        self._install_keys()
        self._seed(self.seed if seed is None else seed)

    def set_faults(self, config: FaultConfig) -> None:
        self.app.set_faults(config)

    @property
    def faults(self) -> FaultConfig:
        return self.app.faults.config

    def force_429(self, n: int, retry_after: int | None = 1) -> None:
        """The next ``n`` requests answer 429 with ``Retry-After: retry_after`` (None: no
        header)."""
        self.app.faults.force_429(n, retry_after)

    def set_clock_skew(self, seconds: float) -> None:
        self.app.clock.skew = seconds

    def set_cora_window(self, window: float | RateWindow) -> None:
        """A new bulk rate window: seconds (the stamping and answers kept as they are), or a
        whole :class:`RateWindow` (where the window is stamped, its jitter, its 429s)."""
        if isinstance(window, RateWindow):
            self.app.cora.rate = window
        else:
            self.app.cora.window = window
        self.app.cora.reset_rate()

    @property
    def cora_rate(self) -> RateWindow:
        """The Cora bulk rate window in force."""
        return self.app.cora.rate

    def set_recotap_rps(self, rps: float | None) -> None:
        self.app.recotap.rps = rps

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.app.log)

    def cora_accounts(self, org: str | None = None) -> list[dict[str, Any]]:
        return self.app.cora.accounts(org or self.cora_org)

    def cora_account(self, external_id: str, org: str | None = None) -> dict[str, Any] | None:
        return self.app.cora.account(org or self.cora_org, external_id)

    def put_cora_account(self, doc: dict[str, Any], org: str | None = None) -> dict[str, Any]:
        return self.app.cora.put_account(org or self.cora_org, doc)

    def recotap_accounts(self, org: str | None = None) -> list[dict[str, Any]]:
        return self.app.recotap.accounts(org or self.recotap_org)

    def add_recotap_account(self, *, domain: str, name: str, external_id: str | None = None,
                            org: str | None = None, **extra: Any) -> dict[str, Any]:
        return self.app.recotap.add_account(org or self.recotap_org, name=name, domain=domain,
                                            external_id=external_id, **extra)

    def add_cora_key(self, key: str, org: str, create_org: bool = True) -> None:
        self.app.cora.add_key(key, org, create_org)

    def add_recotap_key(self, key: str, org: str) -> None:
        self.app.recotap.add_key(key, org)
