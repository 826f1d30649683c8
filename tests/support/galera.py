"""A 3-node MariaDB Galera cluster on loopback for tests, benchmarks and ``make cluster``.

Each node is a :class:`~tests.support.mariadb.MariaDBServer` with its own data directory under ``build/`` and
its own ports: SQL, group communication (gmcast), incremental state transfer (IST) and snapshot state
transfer (SST). The first node bootstraps the cluster (``--wsrep-new-cluster``); the others join it and
receive a full copy by SST through ``mariabackup`` (Debian's ``mariadb-backup``; ``rsync`` SST cannot write
the joiner's data directory when the server runs as root). A node killed with SIGKILL and launched again
rejoins by IST when the donor's gcache still holds what it missed, by SST otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.mariadb import MariaDBServer, free_port

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
CLUSTER_NAME = "billing-test"


@dataclass
class GaleraNode(MariaDBServer):
    name: str = "node1"
    gmcast_port: int = field(default_factory=free_port)
    ist_port: int = field(default_factory=free_port)
    sst_port: int = field(default_factory=free_port)
    peers: list[int] = field(default_factory=list)  # gmcast ports of every node, this one included
    bootstrap: bool = False

    @property
    def config_path(self) -> Path:
        return self.base_dir / "node.cnf"

    def server_args(self) -> list[str]:
        """Everything in a per-node option file: the SST script reads the server's options from the file
        it was started with (``--defaults-file``), never from the machine's /etc/mysql."""
        options = [arg.removeprefix("--") for arg in self._options()]
        sst = "[sst]\n# mariabackup's messages go to the node's log, not to syslog\nsst-syslog=-1\n"
        self.config_path.write_text("[mysqld]\n" + "\n".join(options) + "\n\n" + sst)
        return [f"--defaults-file={self.config_path}", *(["--wsrep-new-cluster"] if self.bootstrap else [])]

    def _options(self) -> list[str]:
        args = [
            arg
            for arg in super().server_args()
            if not arg.startswith(("--no-defaults", "--innodb-buffer-pool-size", "--innodb-log-file-size"))
        ]
        provider_options = (
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.gmcast_port};ist.recv_addr=127.0.0.1:{self.ist_port};"
            "gcache.size=128M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;evs.install_timeout=PT4S"
        )
        cluster = ",".join(f"127.0.0.1:{port}" for port in self.peers)
        args += [
            "--innodb-buffer-pool-size=128M",
            "--innodb-log-file-size=64M",
            "--binlog-format=ROW",
            "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2",
            # Galera needs a primary key on every table: a migration that forgets one fails here, not in production
            "--innodb-force-primary-key=1",
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={CLUSTER_NAME}",
            f"--wsrep-cluster-address=gcomm://{cluster}",
            f"--wsrep-node-name={self.name}",
            "--wsrep-node-address=127.0.0.1",
            f'--wsrep-provider-options="{provider_options}"',
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_port}",
            "--wsrep-sst-method=mariabackup",
            "--wsrep-sst-auth=root:",
            "--wsrep-slave-threads=2",
        ]
        return args

    def start(self, timeout: float = 180) -> GaleraNode:
        """Bootstrap node: a fresh data directory; joiner: an empty one that SST fills."""
        if not PROVIDER.exists():
            raise RuntimeError(f"{PROVIDER} is missing: install Debian's galera-4 (make test does)")
        if shutil.which("mariabackup") is None and shutil.which("mariadb-backup") is None:
            raise RuntimeError("mariabackup is missing: install Debian's mariadb-backup (make test does)")
        if self.bootstrap:
            super().start(timeout)
        else:
            if self.base_dir.exists():
                shutil.rmtree(self.base_dir)
            self.datadir.mkdir(parents=True)
            self.launch(timeout, tries=1)
        self.wait_synced(timeout)
        return self

    def status(self, name: str) -> str | None:
        import pymysql

        try:
            conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
        except pymysql.err.OperationalError:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cur.fetchone()
                return None if row is None else str(row[1])
        finally:
            conn.close()

    def synced(self) -> bool:
        return self.status("wsrep_local_state_comment") == "Synced"

    def wait_synced(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            if self.synced():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not reach Synced in {timeout} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.base_dir / "mariadb.log"
        return path.read_bytes()[-chars:].decode(errors="replace") if path.exists() else ""

    def rejoin(self, timeout: float = 180) -> str:
        """Launch a stopped or killed node on its data directory; returns how it caught up (IST or SST)."""
        self.bootstrap = False
        log_path = self.base_dir / "mariadb.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        self.launch(timeout, tries=1)
        self.wait_synced(timeout)
        since = log_path.read_bytes()[offset:].decode(errors="replace")
        return "IST" if "IST received" in since else "SST" if "SST received" in since else "state transfer"


@dataclass
class GaleraCluster:
    base_dir: Path
    size: int = 3
    nodes: list[GaleraNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            gmcast = [free_port() for _ in range(self.size)]
            self.nodes = [
                GaleraNode(
                    self.base_dir / f"node{i + 1}",
                    name=f"node{i + 1}",
                    gmcast_port=gmcast[i],
                    peers=gmcast,
                    bootstrap=i == 0,
                )
                for i in range(self.size)
            ]

    def start(self, timeout: float = 180) -> GaleraCluster:
        # Joiners one at a time: two SSTs from one donor at once only slow each other down.
        try:
            for node in self.nodes:
                node.start(timeout)
            self.wait_size(self.size, timeout)
        except BaseException:
            self.stop()
            raise
        # Once formed, a bootstrapped node restarts as an ordinary member.
        self.nodes[0].bootstrap = False
        return self

    def wait_size(self, size: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [n for n in self.nodes if n.process is not None]
            if alive and all(n.status("wsrep_cluster_size") == str(size) for n in alive):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not reach {size} nodes in {timeout} s")

    def create_database(self, name: str) -> list[str]:
        """Create the schema once (DDL replicates) and return one URL per node."""
        self.nodes[0].create_database(name)
        return [node.url(name) for node in self.nodes]

    def stop(self) -> None:
        # Joiners first, the bootstrap node last, each with a clean shutdown.
        for node in reversed(self.nodes):
            try:
                node.stop()
            except (OSError, subprocess.SubprocessError):
                node.kill()

    def remove(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)


def main() -> None:
    """``make cluster``: start three nodes, print their URLs, stop them on Ctrl-C."""
    import os
    import signal
    import sys

    from tests.support.mariadb import build_dir

    cluster = GaleraCluster(build_dir() / "cluster")
    print("starting a 3-node MariaDB Galera cluster on 127.0.0.1 (about 30 s) ...", flush=True)
    cluster.start()
    urls = cluster.create_database("billing")
    from billing_core.db import migrate

    migrate.upgrade(urls[0])
    print("synced; the schema 'billing' is migrated on every node. One DATABASE_URL per replica:")
    for node, url in zip(cluster.nodes, urls, strict=True):
        print(f"  {node.name}: DATABASE_URL={url}")
    print(f"data directories under {cluster.base_dir}; Ctrl-C stops the cluster", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    try:
        while all(node.process is not None and node.process.poll() is None for node in cluster.nodes):
            time.sleep(1)
        print("a node exited; stopping the cluster", file=sys.stderr)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
        print(f"stopped (pid {os.getpid()})")


if __name__ == "__main__":
    main()
