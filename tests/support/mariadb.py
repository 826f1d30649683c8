"""A private MariaDB server for tests and benchmarks: own data directory, loopback port, no systemd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(RuntimeError):
    pass


@dataclass
class MariaDBServer:
    base_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "mysqld.sock"

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60) -> MariaDBServer:
        for binary in ("mariadbd", "mariadb-install-db"):
            if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
                raise RuntimeError(f"{binary} is missing: install Debian's mariadb-server (make test does)")
        if self.base_dir.exists():
            shutil.rmtree(self.base_dir)
        self.base_dir.mkdir(parents=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={self.datadir}",
             "--skip-test-db", "--auth-root-authentication-method=normal"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        return self.launch(timeout)

    def launch(self, timeout: float = 60, *, tries: int = 5) -> MariaDBServer:
        """Start mariadbd on the existing data directory (also after :meth:`stop` or :meth:`kill`).

        Another test session may grab the same free port first: then take another one and try again.
        """
        for attempt in range(tries):
            try:
                return self._launch_once(timeout)
            except PortTaken:
                if attempt == tries - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _launch_once(self, timeout: float) -> MariaDBServer:
        log_path = self.base_dir / "mariadb.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        self._log = log = open(self.base_dir / "mariadb.log", "ab")  # noqa: SIM115 - closed in _reap
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.process = subprocess.Popen(
            [mariadbd, *self.server_args()], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reap()
                log_tail = log_path.read_bytes()[offset:].decode(errors="replace")[-2000:]
                if "Address already in use" in log_tail or "Do you already have another" in log_tail:
                    raise PortTaken(self.port)
                raise RuntimeError(f"mariadbd exited: {log_tail}")
            if self._accepts_connections():
                return self
            time.sleep(0.1)
        raise RuntimeError("mariadbd did not start in time")

    def server_args(self) -> list[str]:
        """The mariadbd command line after the binary (a Galera node adds its wsrep options)."""
        return [
            "--no-defaults", "--user=root", f"--datadir={self.datadir}",
            f"--socket={self.socket_path}", f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--pid-file={self.base_dir / 'mysqld.pid'}", "--skip-name-resolve",
            "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M",
            "--innodb-flush-log-at-trx-commit=1", "--max-connections=500",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        ]

    def _accepts_connections(self) -> bool:
        import pymysql

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
            return True
        except pymysql.err.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()
        return self.url(name)

    def stop(self) -> None:
        if self.process is None:
            return
        subprocess.run(["mariadb-admin", f"--socket={self.socket_path}", "-uroot", "shutdown"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reap()

    def kill(self) -> None:
        """Stop without a clean shutdown (outage tests)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self._reap()

    def _reap(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def build_dir() -> Path:
    return Path(os.environ.get("BILLING_BUILD_DIR", Path(__file__).resolve().parents[2] / "build"))
