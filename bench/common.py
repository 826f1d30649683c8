"""What the benchmarks share: a private MariaDB server for the run, and a scratch folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.mariadb import MariaDBServer, build_dir


@contextmanager
def bench_databases(backends: list[str]) -> Iterator[tuple[MariaDBServer | None, Path]]:
    """Start MariaDB only when a MariaDB run is asked for; remove everything afterwards."""
    server = MariaDBServer(build_dir() / f"mariadb-bench-{os.getpid()}").start() if "mariadb" in backends else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            yield server, Path(tmp)
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.base_dir, ignore_errors=True)
