"""Retell call events: ``call_started`` reserves, ``call_ended`` charges and releases, ``call_analyzed`` is kept.

The company comes from the call's ``metadata.company_id`` or from the agent mapping kept in the
database. Repeated deliveries are stopped by the inbox; a ``call_ended`` without its ``call_started`` and
a ``call_started`` after its ``call_ended`` both end with one correct charge and nothing held.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from billing_core.db.tables import retell_agents
from billing_core.errors import InvalidInput, NotFound
from billing_core.services.charging import ChargingService
from billing_core.services.webhooks.inbox import FollowUp, HandlerResult, InboundEvent

EVENTS = ("call_started", "call_ended", "call_analyzed")


def event_identity(data: Mapping[str, Any]) -> tuple[str, str]:
    """(event id, event type): Retell sends no event id, so the call id and the event name make one."""
    event = data.get("event")
    call = data.get("call")
    if not isinstance(event, str) or not isinstance(call, Mapping) or not isinstance(call.get("call_id"), str):
        raise InvalidInput("a Retell webhook needs 'event' and 'call.call_id'")
    return f"{event}:{call['call_id']}", event


def _instant(ms: Any, what: str) -> datetime:
    if isinstance(ms, bool) or not isinstance(ms, int) or ms <= 0:
        raise InvalidInput(f"call.{what} must be a positive integer of milliseconds")
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def duration_seconds(call: Mapping[str, Any]) -> int:
    """Whole seconds, rounded up: ``duration_ms`` when given, else end minus start."""
    ms = call.get("duration_ms")
    if ms is None and call.get("end_timestamp") is not None and call.get("start_timestamp") is not None:
        ms = call["end_timestamp"] - call["start_timestamp"]
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise InvalidInput("call_ended needs duration_ms or start_timestamp and end_timestamp in milliseconds")
    return math.ceil(ms / 1000)


class RetellEventHandler:
    def __init__(self, charging: ChargingService) -> None:
        self._charging = charging

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        call = event.data["call"]
        if event.event_type == "call_analyzed":
            return HandlerResult("processed", "stored")
        if event.event_type not in EVENTS:
            return HandlerResult("ignored", f"event {event.event_type} is not used")
        company_id = self._company(conn, call)
        started = _instant(call.get("start_timestamp"), "start_timestamp")
        if event.event_type == "call_started":
            held = self._charging.reserve_in(conn, call_id=call["call_id"], company_id=company_id, started_at=started)
            return HandlerResult("processed", f"reservation {held.status}: {held.amount}")
        ended = call.get("end_timestamp")
        caller = call.get("from_number")
        charge = self._charging.charge_call_in(
            conn,
            look_first=event.redelivered,  # a first delivery relies on the unique call id (see InboundEvent)
            call_id=call["call_id"],
            company_id=company_id,
            duration_seconds=duration_seconds(call),
            started_at=started,
            ended_at=_instant(ended, "end_timestamp") if ended is not None else None,
            caller_number=caller if isinstance(caller, str) else None,
        )
        follow_ups = (FollowUp("auto_topup", company_id),) if charge.auto_topup_due else ()
        note = f"charged {charge.amount}" + (" (balance below zero)" if charge.balance_negative else "")
        return HandlerResult("processed", note, follow_ups)

    @staticmethod
    def _company(conn: Connection, call: Mapping[str, Any]) -> int:
        metadata = call.get("metadata") or {}
        raw = metadata.get("company_id") if isinstance(metadata, Mapping) else None
        if raw is not None:
            if isinstance(raw, bool) or not str(raw).isdigit():
                raise InvalidInput(f"call metadata company_id {raw!r} is not a company id")
            return int(raw)
        agent = call.get("agent_id")
        company = conn.execute(select(retell_agents.c.company_id).where(retell_agents.c.agent_id == agent)).scalar()
        if company is None:
            raise NotFound(
                f"no company for Retell agent {agent!r}: the call carries no metadata.company_id and "
                "the agent is not mapped (billing agents add)"
            )
        return int(company)
