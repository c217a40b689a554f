"""A throwaway MariaDB server for tests: private data dir, loopback TCP on a free port, own socket.

Nothing touches a system MariaDB: ``mariadb-install-db`` initialises a temp dir, ``mariadbd`` runs
on it (as root with ``--user=root`` when the tests run as root), and ``stop()`` kills it and
removes the dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

_SEARCH = ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin")


def find_binary(*names: str) -> str | None:
    """First of ``names`` on PATH or in the usual sbin folders (not always on a user's PATH)."""
    for name in names:
        found = shutil.which(name) or next(
            (str(Path(d) / name) for d in _SEARCH if (Path(d) / name).is_file()), None
        )
        if found:
            return found
    return None


def available() -> bool:
    return (
        find_binary("mariadbd", "mysqld") is not None
        and find_binary("mariadb-install-db", "mysql_install_db") is not None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MariaDBServer:
    """Start with :meth:`start` (returns a ``mysql+pymysql://`` URL), stop with :meth:`stop`."""

    def __init__(self, database: str = "marketpipe_test", startup_timeout: float = 60.0) -> None:
        self.database = database
        self.startup_timeout = startup_timeout
        self.tmp: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> str:
        server = find_binary("mariadbd", "mysqld")
        install = find_binary("mariadb-install-db", "mysql_install_db")
        if server is None or install is None:
            raise RuntimeError("MariaDB binaries not found")
        self.tmp = Path(tempfile.mkdtemp(prefix="marketpipe-mariadb-"))
        datadir = self.tmp / "data"
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            [install, "--no-defaults", f"--datadir={datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *user],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        for attempt in range(3):  # the free port can be taken between choosing it and the bind
            conn = self._launch(server, self.tmp, user)
            if conn is not None:
                break
            text = (self.tmp / "mariadbd.log").read_text(errors="replace")[-2000:]
            if attempt == 2 or "Address already in use" not in text:
                self.stop()
                raise RuntimeError(f"MariaDB did not start:\n{text}")
        assert conn is not None
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            cur.execute("CREATE USER 'marketpipe'@'127.0.0.1' IDENTIFIED BY 'test-only-password'")
            cur.execute(f"GRANT ALL ON `{self.database}`.* TO 'marketpipe'@'127.0.0.1'")
        conn.close()
        return f"mysql+pymysql://marketpipe:test-only-password@127.0.0.1:{self.port}/{self.database}"

    def _launch(self, server: str, home: Path, user: list[str]) -> pymysql.Connection | None:
        """Start the server on a free port; its root connection, or None when it exited or timed out."""
        datadir, sock = home / "data", home / "mysqld.sock"
        self.port = _free_port()
        log = open(home / "mariadbd.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
             f"--pid-file={home / 'mariadbd.pid'}", "--bind-address=127.0.0.1", f"--port={self.port}",
             "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
             "--innodb-flush-log-at-trx-commit=2", "--skip-name-resolve", "--skip-log-bin", *user],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                return pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2)
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
