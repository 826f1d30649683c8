"""Retell call events: ``call_started`` reserves, ``call_ended`` charges and releases, ``call_analyzed`` is kept.

The company comes from the call's ``metadata.company_id`` or from the agent mapping kept in the
database. Repeated deliveries are stopped by the inbox; a ``call_ended`` without its ``call_started`` and
a ``call_started`` after its ``call_ended`` both end with one correct charge and nothing held. A second
``call_ended`` of one call that says something else is a conflict (see :meth:`RetellEventHandler.differences`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from billing_core.db.tables import retell_agents
from billing_core.errors import NotFound
from billing_core.services.charging import ChargingService
from billing_core.services.webhooks.inbox import FollowUp, HandlerResult, InboundEvent
from billing_core.services.webhooks.payloads import (
    RetellCall,
    RetellEnvelope,
    RetellEvent,
    ended_call_times,
    parse,
    started_at,
)

EVENTS = ("call_started", "call_ended", "call_analyzed")
# What a call's events must agree on; a later delivery that differs here is a conflict, not a duplicate.
CHARGED_FIELDS = ("start_timestamp", "end_timestamp", "duration_ms", "agent_id")


def event_identity(data: Mapping[str, Any]) -> tuple[str, str]:
    """(event id, event type): Retell sends no event id, so the call id and the event name make one."""
    envelope = parse(RetellEnvelope, data)
    return f"{envelope.event}:{envelope.call.call_id}", envelope.event


def _metadata_company(call: Mapping[str, Any]) -> Any:
    metadata = call.get("metadata")
    return metadata.get("company_id") if isinstance(metadata, Mapping) else metadata


class RetellEventHandler:
    def __init__(self, charging: ChargingService, *, max_call_seconds: int) -> None:
        self._charging = charging
        self._max_call_seconds = max_call_seconds

    def __call__(self, conn: Connection, event: InboundEvent) -> HandlerResult:
        if event.event_type not in EVENTS:
            return HandlerResult("ignored", f"event {event.event_type} is not used")
        call = parse(RetellEvent, event.data).call
        if event.event_type == "call_analyzed":
            return HandlerResult("processed", "stored")
        if event.event_type == "call_started":
            company_id = self._company(conn, call)
            held = self._charging.reserve_in(
                conn, call_id=call.call_id, company_id=company_id, started_at=started_at(call)
            )
            return HandlerResult("processed", f"reservation {held.status}: {held.amount}")
        times = ended_call_times(call, max_seconds=self._max_call_seconds)
        company_id = self._company(conn, call)
        charge = self._charging.charge_call_in(
            conn,
            look_first=event.redelivered,  # a first delivery relies on the unique call id (see InboundEvent)
            call_id=call.call_id,
            company_id=company_id,
            duration_seconds=times.duration_seconds,
            started_at=times.started,
            ended_at=times.ended,
            caller_number=call.from_number,
        )
        follow_ups = (FollowUp("auto_topup", company_id),) if charge.auto_topup_due else ()
        note = f"charged {charge.amount}" + (" (balance below zero)" if charge.balance_negative else "")
        return HandlerResult("processed", note, follow_ups)

    @staticmethod
    def differences(stored: Mapping[str, Any], delivered: Mapping[str, Any]) -> list[str]:
        """The charged fields in which a second delivery of one event differs from the stored one."""
        old, new = stored.get("call"), delivered.get("call")
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return []
        fields = [name for name in CHARGED_FIELDS if old.get(name) != new.get(name)]
        if _metadata_company(old) != _metadata_company(new):
            fields.append("metadata.company_id")
        return fields

    @staticmethod
    def _company(conn: Connection, call: RetellCall) -> int:
        if call.metadata is not None and call.metadata.company_id is not None:
            return call.metadata.company_id
        agent = call.agent_id
        company = conn.execute(select(retell_agents.c.company_id).where(retell_agents.c.agent_id == agent)).scalar()
        if company is None:
            raise NotFound(  # the agent id passed the payload model: printable ASCII, fit to quote
                f"no company for Retell agent {agent!r}: the call carries no metadata.company_id and "
                "the agent is not mapped (billing agents add)"
            )
        return int(company)
