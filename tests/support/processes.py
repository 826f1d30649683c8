"""The webhook sidecar as a real process: ``billing webhooks`` under uvicorn, started, probed, stopped, killed.

The console script is the one installed beside ``sys.executable`` (the project's venv). The process gets
a clean environment: the caller's billing settings are dropped, only what the test passes is set, and it
runs in an empty working directory so no stray ``.env`` is read. Its output goes to a log file in that
directory, which assertion messages quote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import AliasChoices

from billing_core.config import Settings
from tests.support.localstripe import SECRET_KEY as LOCALSTRIPE_KEY
from tests.support.mariadb import free_port

# Every environment name Settings reads (the README's names and the BILLING_ ones), from the model itself.
SETTING_NAMES = frozenset(
    name
    for field in Settings.model_fields.values()
    if isinstance(field.validation_alias, AliasChoices)
    for name in field.validation_alias.choices
    if isinstance(name, str) and name.isupper()
)


# The seller a child process invoices as, in the operator's names (Settings has no default seller).
SELLER_ENV: dict[str, str] = {
    "BILLING_SELLER_NAME": "AskProAI GmbH",
    "BILLING_SELLER_ADDRESS": "Friedrichstraße 123",
    "BILLING_SELLER_POSTAL_CODE": "10117",
    "BILLING_SELLER_CITY": "Berlin",
    "BILLING_SELLER_COUNTRY": "DE",
    "BILLING_SELLER_VAT_ID": "DE136695976",
}


def find_billing() -> str:
    beside_python = Path(sys.executable).parent / "billing"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("billing")
    if found is None:
        raise RuntimeError("the billing console script is not installed (pip install -e .)")
    return found


def clean_env(**settings: str) -> dict[str, str]:
    """The caller's environment without billing settings, plus ``settings`` (names as in the README)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    env.update(settings)
    return env


def sidecar_env(
    database_url: str, *, stripe_webhook_secret: str, retell_api_key: str, stripe_api_base: str, **extra: str
) -> dict[str, str]:
    """What an operator sets for ``billing webhooks`` against a Stripe emulator."""
    return clean_env(
        DATABASE_URL=database_url,
        RETELL_API_KEY=retell_api_key,
        STRIPE_WEBHOOK_SECRET=stripe_webhook_secret,
        STRIPE_SECRET=LOCALSTRIPE_KEY,
        STRIPE_API_BASE=stripe_api_base,
        STRIPE_TEST_MODE="true",
        **SELLER_ENV,
        **extra,
    )


def run_billing(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One ``billing`` command to completion (the caller judges the exit code)."""
    return subprocess.run(
        [find_billing(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class SidecarExited(RuntimeError):
    pass


@dataclass
class WebhookProcess:
    """``billing webhooks --host 127.0.0.1 --port P`` as a subprocess; :meth:`start` again after a kill."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "webhooks.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode(errors="replace")[-chars:]

    def start(self, timeout: float = 30, *, tries: int = 4) -> WebhookProcess:
        """Start and wait for ``/healthz``; keeps the port unless another process took it meanwhile."""
        if self.process is not None:
            raise RuntimeError("the sidecar is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(tries):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once(timeout)
            except SidecarExited:
                text = self.log_path.read_bytes()[offset:].decode(errors="replace").lower()
                if "address already in use" not in text or attempt == tries - 1:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> WebhookProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        self.process = subprocess.Popen(
            [find_billing(), "webhooks", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    self._reap()
                    raise SidecarExited(f"billing webhooks exited with {code}:\n{self.log_tail()}")
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"billing webhooks did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL after ``timeout``; returns the exit code."""
        if self.process is None:
            return None
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self._reap()
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL: no shutdown at all, as when the machine or the OOM killer takes the process."""
        if self.process is None:
            return None
        process = self.process
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        self._reap()
        return process.returncode

    def _reap(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 10)
        return httpx.get(f"{self.url}{path}", **kwargs)


@dataclass
class WorkerProcess:
    """``billing worker`` as a subprocess, its output in ``<workdir>/<name>.log``."""

    workdir: Path
    env: dict[str, str]
    name: str = "worker"
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_bytes().decode(errors="replace")[-chars:] if self.log_path.exists() else ""

    def start(self) -> WorkerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [find_billing(), "worker"],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (the worker finishes its step), SIGKILL after ``timeout``; returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode


def run_together(commands: list[list[str]], *, cwd: Path, timeout: float = 120) -> list[Any]:
    """Start child processes, wait until each prints ``ready``, release them at once with ``go``, and return
    the JSON each prints as its last line (a child's failure fails the caller with its stderr)."""
    processes = [
        subprocess.Popen(command, cwd=cwd, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        for command in commands
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        reports = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err[-3000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
