"""localstripe, the Stripe emulator, as a real process for the tests (own port, empty store)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.mariadb import PortTaken, free_port

SECRET_KEY = "sk_test_localstripe_0123456789"


@dataclass
class LocalStripe:
    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30, *, tries: int = 5) -> LocalStripe:
        """Start on a free port; if another test session takes that port first, try another."""
        for attempt in range(tries):
            try:
                return self._start_once(timeout)
            except PortTaken:
                if attempt == tries - 1:
                    raise
                self.port = 0
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> LocalStripe:
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("localstripe") or str(Path(sys.executable).with_name("localstripe"))
        # --from-scratch: never load the shared /tmp/localstripe.pickle another run may have written
        self._log = open(self.workdir / "localstripe.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--from-scratch"], cwd=self.workdir,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                log_tail = (self.workdir / "localstripe.log").read_text(errors="replace")[-2000:]
                if "Address already in use" in log_tail:
                    (self.workdir / "localstripe.log").unlink()
                    raise PortTaken(self.port)
                raise RuntimeError(f"localstripe exited: {log_tail}")
            try:
                httpx.get(f"{self.url}/v1/customers", auth=(SECRET_KEY, ""), timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("localstripe did not start in time")

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        httpx.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret},
                   timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
