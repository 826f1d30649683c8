"""localstripe as ``billing run``'s Stripe emulator, with its store kept under ``./var/`` instead of the
``/tmp/localstripe.pickle`` every localstripe on the machine shares, so a second run finds its customers
and payment methods again and no other run can read or overwrite them.

Run as ``python -m billing_cli.stripe_emulator --port P --store FILE``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Any


def keep_store_at(path: Path) -> None:
    from localstripe import resources

    store_class: Any = type(resources.store)

    def load(self: Any) -> None:
        try:
            with path.open("rb") as f:
                old = pickle.load(f)  # noqa: S301 - our own file, written by this emulator
        except FileNotFoundError:
            return
        self.clear()
        self.update(old)

    def dump(self: Any) -> None:
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(path)

    store_class.try_load_from_disk = load
    store_class.dump_to_disk = dump


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args(argv)
    args.store.parent.mkdir(parents=True, exist_ok=True)
    keep_store_at(args.store.resolve())
    from localstripe import server

    sys.argv = [sys.argv[0], "--port", str(args.port)]  # localstripe reads its own arguments
    server.start()


if __name__ == "__main__":
    main()
