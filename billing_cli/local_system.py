"""The running local system (``billing run``) as other local commands see it: ``./var/run.json``.

``billing run`` records where every process listens and which settings it chose for them (the emulator's
key and API base, the local webhook secrets, the test checkout page). Commands started from the same
directory read it, so ``billing simulate`` or ``billing topups checkout`` talk to the running system
without flags. Settings given in the environment always win over the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billing_core.config import Settings

VAR_DIR = Path("var")
RUN_FILE = VAR_DIR / "run.json"


class NotRunning(RuntimeError):
    pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunningSystem:
    data: dict[str, Any]

    @property
    def pid(self) -> int:
        return int(self.data["pid"])

    @property
    def settings_env(self) -> dict[str, str]:
        return dict(self.data.get("settings", {}))

    @property
    def webhook_url(self) -> str:
        return str(self.data["webhooks"]["url"])

    @property
    def emulator(self) -> bool:
        return self.data.get("mode") == "emulator"

    def child_pids(self) -> list[int]:
        return [int(child["pid"]) for child in self.data.get("children", {}).values() if child.get("pid")]


def read_running(path: Path = RUN_FILE) -> RunningSystem | None:
    """The system recorded in ``path`` when its supervisor is still alive; None otherwise."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    system = RunningSystem(data)
    return system if isinstance(data, dict) and "pid" in data and pid_alive(system.pid) else None


def require_running(path: Path = RUN_FILE) -> RunningSystem:
    system = read_running(path)
    if system is None:
        raise NotRunning(f"no running system found in {path}; start it with `make run` or `billing run`")
    return system


def local_settings() -> Settings:
    """Settings from the environment, completed by the running system's choices for names not set there."""
    system = read_running()
    if system is None:
        return Settings()
    base = Settings()
    if base.database_url != system.data.get("database_url"):
        return base  # another database: the running system is not the one this command is about
    overrides: dict[str, Any] = {name: value for name, value in system.settings_env.items() if name not in os.environ}
    return Settings(**overrides)
