"""A real PostgreSQL server for the tests, on a loopback port, in a folder of its own.

Debian's ``postgresql`` package provides the programs (``/usr/lib/postgresql/*/bin``, or
``initdb`` on ``PATH``). ``initdb`` refuses to run as root, so under root (as ``.ci/run`` is)
the cluster belongs to the ``postgres`` user and its programs run through ``runuser``. The
cluster trusts loopback connections and skips fsync (the operating system still holds every
committed write when the server is stopped, which is all an outage test needs; commits stay
synchronous, so a stop loses nothing that was acknowledged): it is thrown away after the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg

__all__ = ["PostgresServer", "find_bindir"]


def find_bindir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``; fails with what to install."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("PostgreSQL's initdb was not found: apt-get install postgresql "
                       "(the tests start a server of their own on a loopback port).")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: :meth:`start`, :meth:`stop` (a real outage: the port goes
    dark), :meth:`new_database`, :meth:`destroy`."""

    USER = "recocora"

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="recocora-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:  # the server writes its socket and log beside the data
            self.root.chmod(0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")

    @property
    def url(self) -> str:
        """The maintenance database's URL."""
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, name: str) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c fsync=off -c full_page_writes=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (connections are cut, as when the database host goes away)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_of(name)

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[PostgresServer]:
        """A new server, started, and destroyed when the block ends."""
        server = cls()
        try:
            server.start()
            yield server
        finally:
            server.destroy()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
