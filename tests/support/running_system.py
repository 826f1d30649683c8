"""``billing run`` as a real subprocess on a temporary directory with free ports, for the e2e tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.mariadb import free_port
from tests.support.processes import clean_env, find_billing


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


@dataclass
class RunningSystem:
    workdir: Path
    webhook_port: int = field(default_factory=free_port)
    mcp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "billing-run.log"

    @property
    def run_file(self) -> Path:
        return self.workdir / "var" / "run.json"

    def output(self) -> str:
        return self.log_path.read_bytes().decode(errors="replace") if self.log_path.exists() else ""

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(**extra)

    def start(self, timeout: float = 120) -> dict[str, Any]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [find_billing(), "run", "--webhook-port", str(self.webhook_port), "--mcp-port", str(self.mcp_port)],
            cwd=self.workdir,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"billing run exited with {self.process.returncode}:\n{self.output()}")
            if self.run_file.exists() and "Ctrl-C stops everything" in self.output():
                return self.info()
            time.sleep(0.2)
        raise AssertionError(f"billing run was not ready within {timeout} s:\n{self.output()}")

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run_file.read_text())
        return data

    def billing(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [find_billing(), *args],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self.billing(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.webhook_port}{path}", timeout=10)

    def interrupt(self, timeout: float = 60) -> int:
        """SIGINT, as Ctrl-C would send; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
