"""The event-loop path of ``services.call``: one shared limit, and a call that started runs to its end."""

from __future__ import annotations

import anyio
from sqlalchemy.util.concurrency import await_

from billing_core.concurrency import ServiceCaller


def test_calls_in_the_loop_never_run_more_at_once_than_the_limit():
    caller = ServiceCaller(2, in_loop=True)
    running: list[int] = []
    most = 0

    def work(n: int) -> int:
        nonlocal most
        running.append(n)
        most = max(most, len(running))
        await_(anyio.sleep(0.01))  # a statement awaiting the database
        running.remove(n)
        return n * 10

    async def main() -> list[int]:
        results: list[int] = []

        async def one(n: int) -> None:
            results.append(await caller(work, n))

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(one, n)
        return results

    assert sorted(anyio.run(main)) == [0, 10, 20, 30, 40, 50]
    assert most == 2


def test_a_caller_cancelled_before_its_call_starts_runs_nothing():
    caller = ServiceCaller(2, in_loop=True)
    ran: list[str] = []

    async def main() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await caller(ran.append, "ran")

    anyio.run(main)
    assert ran == []


def test_a_call_that_started_runs_to_its_end_when_its_caller_is_cancelled():
    caller = ServiceCaller(2, in_loop=True)
    steps: list[str] = []

    def work() -> None:
        steps.append("begin")
        await_(anyio.sleep(0.05))
        steps.append("commit")

    async def main() -> None:
        with anyio.move_on_after(0.01):
            await caller(work)
            await anyio.lowlevel.checkpoint()  # where the caller's cancellation arrives
            steps.append("caller went on")
        async with caller.limiter:  # the token came back
            pass

    anyio.run(main)
    assert steps == ["begin", "commit"]
