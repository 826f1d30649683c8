"""``billing mcp --transport http`` as a real process, and MCP clients that talk to it with a bearer token."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.mariadb import free_port
from tests.support.processes import clean_env, find_billing, run_billing


def mcp_env(**settings: str) -> dict[str, str]:
    """``clean_env`` without the caller's BILLING_MCP_* settings either, plus ``settings``."""
    env = {k: v for k, v in clean_env().items() if not k.upper().startswith("BILLING_MCP_")}
    env.update(settings)
    return env


@dataclass
class McpHttpProcess:
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mcp.log"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_bytes().decode(errors="replace")[-chars:] if self.log_path.exists() else ""

    def start(self, timeout: float = 30) -> McpHttpProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [find_billing(), "mcp", "--transport", "http", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"billing mcp exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"billing mcp did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def create_token(self, name: str, scopes: str, *extra: str) -> str:
        done = run_billing(
            "tokens", "create", "--name", name, "--scopes", scopes, *extra, "--json", env=self.env, cwd=self.workdir
        )
        assert done.returncode == 0, done.stderr
        return str(json.loads(done.stdout)["token"])

    @asynccontextmanager
    async def client(self, token: str, *, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            transport = streamable_http_client(f"{self.url}/mcp", http_client=http)
            async with Client(transport, mode=mode, **options) as client:
                yield client
