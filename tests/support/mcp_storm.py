"""An MCP client beside a webhook storm: read calls, and balance adjustments that must land exactly once.

It talks to a real ``billing mcp --transport http`` with the SDK's streamable HTTP client and a bearer token,
from a thread of its own (the storm's senders are threads too). Every adjustment carries an idempotency key
and is confirmed in two steps (no elicitation: the first call returns a confirmation token, the second
executes). Any call is retried, with the same arguments, token and key, after an error that says nothing
about the call itself: a timeout, a transport error, a retryable tool error (the database was unavailable).
Some retries are provoked on purpose, as a client that gives up waiting would make them:

- every third confirmation is first sent and abandoned after a few milliseconds (the answer is lost: the
  money may or may not have moved), then sent again;
- every fourth executed confirmation is sent once more and must come back as the same outcome;
- every fifth adjustment asks for its confirmation twice and confirms with the second token.

Half of the adjustments wait until ``halfway`` is set (the test sets it when it kills a database node), so
they run while the cluster loses a member and takes it back. Each attempt opens a session of its own, so an
abandoned or timed-out one leaves nothing behind. Every loop is bounded by a deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ATTEMPT_SECONDS = 30  # a call that takes longer is given up and sent again
CALL_DEADLINE_SECONDS = 150  # retries of one call stop here
RETRYABLE_CODES = ("database_unavailable", "database_error", "internal_error")


class McpStormFailure(AssertionError):
    pass


@dataclass(frozen=True, slots=True)
class Adjustment:
    company_id: int
    cents: int
    key: str


@dataclass
class McpStorm:
    url: str  # the server's /mcp
    token: str
    companies: list[int]
    adjustments: int = 24
    seed: int = 0
    halfway: threading.Event = field(default_factory=threading.Event)
    plan: list[Adjustment] = field(init=False)
    entries: dict[str, int] = field(default_factory=dict)  # idempotency key -> the ledger entry it made
    outcomes: Counter[str] = field(default_factory=Counter)  # statuses of the confirmations' final answers
    retries: Counter[str] = field(default_factory=Counter)  # why calls were sent again
    reads: int = 0
    failure: BaseException | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.plan = [
            Adjustment(rng.choice(self.companies), rng.randint(100, 999), f"storm-adjustment-{self.seed}-{n:03d}")
            for n in range(self.adjustments)
        ]

    @property
    def expected(self) -> dict[int, int]:
        """Cents each company gains from the adjustments."""
        gained: Counter[int] = Counter()
        for adjustment in self.plan:
            gained[adjustment.company_id] += adjustment.cents
        return dict(gained)

    def start(self) -> McpStorm:
        self._thread = threading.Thread(target=self._main, name="mcp-storm", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 300) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise McpStormFailure(f"the MCP client did not finish within {timeout} s ({self.summary()})")
        if self.failure is not None:
            raise self.failure

    def summary(self) -> str:
        return (
            f"{len(self.entries)}/{len(self.plan)} adjustments {dict(self.outcomes)}, {self.reads} reads, "
            f"retries {dict(self.retries)}"
        )

    def _main(self) -> None:
        try:
            anyio.run(self._run)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread in join
            self.failure = error

    async def _run(self) -> None:
        for number, adjustment in enumerate(self.plan):
            if number == len(self.plan) // 2:
                await anyio.to_thread.run_sync(self.halfway.wait, 120)
            await self._read(adjustment.company_id, number)
            await self._adjust(adjustment, number)
        for company_id in self.companies:
            await self._read(company_id, 0)

    # -- the calls ------------------------------------------------------------------------------------------

    async def _read(self, company_id: int, number: int) -> None:
        balance = await self._call("get_balance", {"company_id": company_id})
        assert balance["company_id"] == company_id and balance["balance"]["currency"] == "EUR", balance
        page = await self._call("list_transactions", {"company_id": company_id, "limit": 5})
        assert isinstance(page["items"], list) and len(page["items"]) <= 5, page
        if number % 4 == 0:
            overview = await self._call("get_payment_overview", {"days": 1, "company_id": company_id})
            assert "statistics" in overview, overview
            self.reads += 1
        self.reads += 2

    async def _adjust(self, adjustment: Adjustment, number: int) -> None:
        arguments = {
            "company_id": adjustment.company_id,
            "amount_cents": adjustment.cents,
            "reason": f"storm goodwill {number}",
            "idempotency_key": adjustment.key,
        }
        asked = await self._call("adjust_balance", arguments)
        if number % 5 == 2:
            asked = await self._call("adjust_balance", arguments)  # asked again: a second token
        assert asked["status"] == "confirmation_required", asked
        confirm = {**arguments, "confirmation_token": asked["confirmation_token"]}
        if number % 3 == 0:
            await self._abandon("adjust_balance", confirm, seconds=random.Random(number).uniform(0.0, 0.05))
        done = await self._call("adjust_balance", confirm)
        assert done["status"] in ("executed", "replayed"), done
        entry = done["result"]
        assert (entry["company_id"], entry["amount"]["cents"]) == (adjustment.company_id, adjustment.cents), done
        if number % 4 == 1:
            again = await self._call("adjust_balance", confirm)
            assert again["status"] == "replayed" and again["result"]["id"] == entry["id"], (done, again)
        self.outcomes[done["status"]] += 1
        self.entries[adjustment.key] = int(entry["id"])

    # -- retries ----------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=60) as http:
            async with Client(streamable_http_client(self.url, http_client=http)) as client:
                yield client

    async def _abandon(self, tool: str, arguments: dict[str, Any], *, seconds: float) -> None:
        """Send the call and stop waiting for its answer after ``seconds``, as a client that timed out."""
        try:
            async with self._session() as client:
                with anyio.move_on_after(seconds):
                    await client.call_tool(tool, arguments)
        except Exception as error:  # noqa: BLE001 - whatever happened, the caller sends the call again
            self.retries[f"abandoned ({type(error).__name__})"] += 1
        else:
            self.retries["abandoned"] += 1

    async def _call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The structured answer of ``tool``, sent again after errors that leave its outcome open."""
        deadline = time.monotonic() + CALL_DEADLINE_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                with anyio.fail_after(ATTEMPT_SECONDS):
                    async with self._session() as client:
                        result = await client.call_tool(tool, arguments)
            except Exception as error:  # noqa: BLE001 - a timeout or a transport error: the outcome is open
                reason = type(error).__name__
            else:
                if not result.is_error:
                    assert result.structured_content is not None, result
                    return result.structured_content
                text = " ".join(getattr(c, "text", "") for c in result.content)
                if not text.startswith(RETRYABLE_CODES):
                    raise McpStormFailure(f"{tool} {arguments} was refused: {text}")
                reason = text.split(":", 1)[0]
            self.retries[f"{tool}: {reason}"] += 1
            if time.monotonic() > deadline:
                raise McpStormFailure(f"{tool} {arguments} still failed after {attempt} attempts ({reason})")
            await anyio.sleep(min(0.1 * attempt, 2.0))
