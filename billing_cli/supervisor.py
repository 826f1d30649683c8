"""A small process supervisor for ``billing run``: starts children, waits until each is ready, restarts
one that dies (and says so), and stops them all on Ctrl-C or SIGTERM.

Each child runs in a process group of its own, so a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in reverse order with SIGTERM (their own graceful shutdown) and SIGKILL
after a grace period. On Linux a child also gets SIGTERM when the supervisor itself dies, so a killed
supervisor leaves no orphans behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

Report = Callable[[str], None]


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM when the supervisor goes away (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return probe


def port_ready(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    import socket

    def probe() -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((host, port)) == 0

    return probe


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    after_start: Callable[[], None] | None = None  # e.g. register webhooks again after a restart


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")


class ChildFailed(RuntimeError):
    pass


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM came while children were still being started."""


@dataclass
class Supervisor:
    log_dir: Path
    report: Report
    cwd: Path = field(default_factory=Path.cwd)
    ready_timeout: float = 60
    stop_timeout: float = 15
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def start(self, spec: ChildSpec) -> Child:
        """Start a child and wait until it is ready; a child that cannot start fails the caller."""
        if self._stopping:
            raise Interrupted(f"stopped before {spec.name} started")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(spec, self.log_dir / f"{spec.name}.log")
        self.children.append(child)
        self._launch(child)
        return child

    def _launch(self, child: Child) -> None:
        child._log = open(child.log_path, "ab")  # noqa: SIM115 - closed when the child is reaped
        child.process = subprocess.Popen(
            child.spec.argv,
            cwd=self.cwd,
            env=child.spec.env,
            stdin=subprocess.DEVNULL,
            stdout=child._log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + self.ready_timeout
        while not child.spec.ready():
            if child.process.poll() is not None:
                code = child.process.returncode
                self._reap(child)
                raise ChildFailed(f"{child.spec.name} exited with {code} while starting:\n{child.log_tail()}")
            if self._stopping:
                raise Interrupted(f"stopped while {child.spec.name} was starting")
            if time.monotonic() > deadline:
                self._terminate(child)
                raise ChildFailed(f"{child.spec.name} was not ready within {self.ready_timeout:.0f} s")
            time.sleep(0.1)
        if child.spec.after_start is not None:
            child.spec.after_start()

    def watch(self, *, poll: float = 0.5, on_change: Callable[[], None] | None = None) -> None:
        """Until :meth:`request_stop`: restart any child that exited, with a growing pause between tries."""
        while not self._stopping:
            for child in self.children:
                process = child.process
                if self._stopping or process is None or process.poll() is None:
                    continue
                code = process.returncode
                self._reap(child)
                child.restarts += 1
                self.report(
                    f"{child.spec.name} exited with {code}; restarting (restart {child.restarts}, "
                    f"log {child.log_path})"
                )
                time.sleep(min(0.5 * child.restarts, 5))
                try:
                    self._launch(child)
                    self.report(f"{child.spec.name} is back (pid {child.pid})")
                except ChildFailed as error:
                    self.report(str(error))
                if on_change is not None:
                    on_change()
            time.sleep(poll)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def request_stop(self) -> None:
        self._stopping = True

    def stop_all(self) -> None:
        """SIGTERM every child (last started first), wait, SIGKILL what is left."""
        self._stopping = True
        for child in reversed(self.children):
            self._terminate(child)

    def _terminate(self, child: Child) -> None:
        process = child.process
        if process is None:
            return
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.report(f"{child.spec.name} did not stop within {self.stop_timeout:.0f} s; killing it")
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=30)
        self._reap(child)

    @staticmethod
    def _reap(child: Child) -> None:
        child.process = None
        if child._log is not None:
            child._log.close()
            child._log = None
