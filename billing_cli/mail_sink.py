"""The local SMTP sink of ``billing run`` in emulator mode: every mail becomes an ``.eml`` file.

Run as ``python -m billing_cli.mail_sink --port P --dir ./var/mail``; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any


class EmlWriter:
    """aiosmtpd handler: writes each accepted message to ``<dir>/<time>-<id>.eml`` (atomically)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        temporary = self.directory / f".{name}.tmp"
        content = envelope.original_content or envelope.content
        temporary.write_bytes(content if isinstance(content, bytes) else str(content).encode())
        temporary.replace(self.directory / name)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(EmlWriter(args.dir), hostname="127.0.0.1", port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
