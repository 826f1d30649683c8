"""The write tools: scope, then limits, then a person's consent, and only then the service call.

Each write tool is built from its :class:`~mcp_server.operations.Operation`: the operation's argument model
becomes the tool's flat, described parameters (through a generated signature), and two resolvers run before
the body. ``gate`` checks the scope, replays a known idempotency key or confirmation token, plans the write
and checks the four-eyes limits, and decides how consent is obtained; ``consent`` asks the person through
elicitation (the SDK's ``Resolve``/``Elicit`` pattern, which works on both protocol generations) when that is
the path. Without elicitation the first call returns a preview and a single-use confirmation token stored in
the database (bound to the caller, the tool and the exact arguments, valid for a few minutes) and the second
call with the token executes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from billing_core.money import Money
from mcp_server.app import BillingApp, record, tool_errors
from mcp_server.caller import Caller
from mcp_server.models import Amount, WriteOutcome
from mcp_server.operations import OPERATIONS, Args, Operation, Plan, new_key
from mcp_server.tool_specs import ToolSpecs

if TYPE_CHECKING:
    from billing_core.services.tool_calls import Confirmation

CONTROL = ("idempotency_key", "confirmation_token")


class Confirm(BaseModel):
    """The question a person answers before money moves (flat: elicitation forms allow primitives only)."""

    confirm: bool = Field(description="Yes, do exactly this.")


@dataclass(frozen=True, slots=True)
class Gate:
    """What the tool body does, decided by the gate resolver before anyone is asked anything."""

    path: Literal["replay", "approval", "issue_token", "token", "elicit", "execute"]
    caller: Caller
    args: Args
    args_hash: str
    plan: Plan | None = None
    replay: dict[str, Any] | None = None
    confirmation: Confirmation | None = None


def can_elicit(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation (the same test the SDK applies before it asks)."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _signature(params: list[inspect.Parameter], returns: Any) -> inspect.Signature:
    return inspect.Signature(params, return_annotation=returns)


def _set_signature(fn: Any, params: list[inspect.Parameter], returns: Any) -> None:
    fn.__signature__ = _signature(params, returns)
    fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}


def _argument_params(op: Operation) -> list[inspect.Parameter]:
    params = []
    for name, info in op.args.model_fields.items():
        default = inspect.Parameter.empty if info.is_required() else info.default
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[info.annotation, info]
            )
        )
    params.append(
        inspect.Parameter(
            "idempotency_key",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                Field(
                    None,
                    min_length=8,
                    max_length=100,
                    pattern=r"^[A-Za-z0-9._:-]+$",
                    description=(
                        "Optional, your own id for this request. A retry with the same key and arguments returns the "
                        "first outcome (marked replayed) and does nothing again; the same key with other arguments "
                        "is refused."
                    ),
                ),
            ],
        )
    )
    params.append(
        inspect.Parameter(
            "confirmation_token",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                Field(
                    None,
                    max_length=100,
                    description=(
                        "Only for the second step: the token a previous call returned with status "
                        "confirmation_required, after the user agreed to its preview. Same arguments required."
                    ),
                ),
            ],
        )
    )
    return params


def _business_args(op: Operation, values: dict[str, Any]) -> Args:
    return op.args.model_validate({k: v for k, v in values.items() if k in op.args.model_fields})


def _over_limit(app: BillingApp, caller: Caller, plan: Plan) -> str | None:
    """Why a second person must decide (None: within the limits)."""
    if plan.amount is None or plan.limit is None:
        return None
    amount = plan.amount
    settings = app.settings
    single = settings.refund_limit if plan.limit == "refund" else settings.adjustment_limit
    single_cents = app.services.ctx.settings.money(single, amount.currency).cents
    if abs(amount.cents) > single_cents:
        limit = Amount.of(Money(single_cents, amount.currency)).formatted
        asked = Amount.of(Money(abs(amount.cents), amount.currency)).formatted
        return f"{asked} is above the {plan.limit} limit of {limit}"
    daily_cents = app.services.ctx.settings.money(settings.daily_limit, amount.currency).cents
    moved = app.calls.moved_today(caller.name, amount.currency, since=app.day_start())
    if moved + abs(amount.cents) > daily_cents:
        limit = Amount.of(Money(daily_cents, amount.currency)).formatted
        done = Amount.of(Money(moved, amount.currency)).formatted
        return f"this caller moved {done} today; with this call it would pass the daily limit of {limit}"
    return None


def register_write_tools(tools: ToolSpecs, app: BillingApp) -> None:
    for op in OPERATIONS.values():
        _register(tools, app, op)


def _register(tools: ToolSpecs, app: BillingApp, op: Operation) -> None:
    ctx_param = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    arg_params = _argument_params(op)

    def gate_sync(caller: Caller, values: dict[str, Any], elicitable: bool) -> Gate:
        from billing_core.services.tool_calls import arguments_hash

        caller.require(op.scope)
        args = _business_args(op, values)
        digest = arguments_hash(op.name, args.model_dump(mode="json"))
        key = values.get("idempotency_key")
        if key:
            earlier = app.calls.first_outcome(caller.name, key, op.name, digest)
            if earlier is not None:
                return Gate("replay", caller, args, digest, replay=earlier)
        token = values.get("confirmation_token")
        confirmation = None
        if token:
            confirmation = app.calls.check_confirmation(token, caller=caller.name, tool=op.name, args_hash=digest)
            if confirmation.result is not None:
                return Gate("replay", caller, args, digest, replay=confirmation.result)
        plan = op.plan(app.services, caller, args)
        if _over_limit(app, caller, plan) is not None:
            return Gate("approval", caller, args, digest, plan=plan)
        if confirmation is not None:
            return Gate("token", caller, args, digest, plan=plan, confirmation=confirmation)
        if not op.confirm:
            return Gate("execute", caller, args, digest, plan=plan)
        paths = app.settings.confirmation_paths
        if "elicitation" in paths and elicitable:
            return Gate("elicit", caller, args, digest, plan=plan)
        if "token" in paths:
            return Gate("issue_token", caller, args, digest, plan=plan)
        raise ToolError(
            "this server confirms writes through elicitation only, and this client cannot answer an elicitation; "
            "use a client that supports it"
        )

    async def gate(ctx: Context[Any, Any], **values: Any) -> Gate:
        with tool_errors():
            caller = app.caller()
            return await app.services.call(gate_sync, caller, values, can_elicit(ctx))

    _set_signature(gate, [*arg_params, ctx_param], Gate)

    async def consent(gate: Gate) -> Confirm | Elicit[Confirm]:
        if gate.path != "elicit":
            return Confirm(confirm=False)  # not asked: the body goes another way
        assert gate.plan is not None
        return Elicit(f"Please confirm: {gate.plan.preview.action}.", Confirm)

    gate_param = inspect.Parameter("gate", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Gate, Resolve(gate)])
    _set_signature(consent, [gate_param], Confirm | Elicit[Confirm])

    async def tool(gate: Gate, consent: ElicitationResult[Confirm], **values: Any) -> WriteOutcome:
        with tool_errors():
            return await _run(app, op, gate, consent, values.get("idempotency_key"))

    tool_params = [
        *arg_params,
        gate_param,
        inspect.Parameter(
            "consent",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[ElicitationResult[Confirm], Resolve(consent)],
        ),
    ]
    _set_signature(tool, tool_params, WriteOutcome)
    tool.__name__ = op.name
    tool.__doc__ = op.description
    tools.add_tool(
        tool,
        name=op.name,
        description=op.description,
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=op.idempotent,
            open_world_hint=op.name in ("create_topup_link", "refund_topup", "retry_failed_topup"),
        ),
        structured_output=True,
    )


async def _run(
    app: BillingApp, op: Operation, gate: Gate, consent: ElicitationResult[Confirm], key: str | None
) -> WriteOutcome:
    from billing_core.services.tool_calls import service_key

    services = app.services
    caller = gate.caller
    rec = record()
    if gate.plan is not None:
        rec.company_id = gate.plan.company_id
    if gate.path == "replay":
        assert gate.replay is not None
        rec.outcome = "replayed"
        return WriteOutcome.model_validate({**gate.replay, "status": "replayed"})
    plan = gate.plan
    assert plan is not None
    if gate.path == "approval":
        approval = await services.call(
            lambda: app.approvals.request(
                tool=op.name,
                arguments=gate.args.model_dump(mode="json"),
                arguments_hash=gate.args_hash,
                requested_by=caller.name,
                company_id=plan.company_id,
                amount=plan.amount.cents if plan.amount else None,
                currency=plan.amount.currency if plan.amount else None,
                preview=plan.preview.model_dump(mode="json"),
                ttl=app.approval_ttl,
            )
        )
        reason = await services.call(_over_limit, app, caller, plan)
        outcome = WriteOutcome(
            status="approval_requested",
            tool=op.name,
            message=(
                f"Nothing was changed: {reason}. Approval request {approval.id} waits for a second person with "
                f"billing:approve (decide_approval or `billing approvals approve {approval.id}`)."
            ),
            preview=plan.preview,
            approval_id=approval.id,
        )
        rec.outcome = "approval_requested"
        return await _remember(app, op, gate, key, outcome)
    if gate.path == "issue_token":
        token, expires = await services.call(
            lambda: app.calls.issue_confirmation(
                caller=caller.name,
                tool=op.name,
                args_hash=gate.args_hash,
                preview=plan.preview.model_dump(mode="json"),
                ttl=app.confirmation_ttl,
            )
        )
        rec.outcome = "confirmation_required"
        return WriteOutcome(
            status="confirmation_required",
            tool=op.name,
            message=(
                f"Nothing was changed yet. Show the user: {plan.preview.action}. If they agree, call {op.name} again "
                "with the same arguments and this confirmation_token."
            ),
            preview=plan.preview,
            confirmation_token=token,
            confirmation_expires_at=expires,
        )
    if gate.path == "elicit":
        if not (consent.action == "accept" and consent.data.confirm):
            rec.outcome = "declined"
            return WriteOutcome(
                status="declined",
                tool=op.name,
                message="The user did not confirm; nothing was changed.",
                preview=plan.preview,
            )
        service_idem = service_key(caller.name, key) if key else new_key()
        return await _execute(app, op, gate, key, service_idem)
    if gate.path == "token":
        assert gate.confirmation is not None
        confirmation = gate.confirmation
        await services.call(app.calls.claim_confirmation, confirmation.id)
        # The service call's idempotency key: from the caller's key when there is one, so neither a token sent
        # again after a lost answer nor a fresh token for the same key moves the money twice; else from the token.
        service_idem = service_key(caller.name, key) if key else f"mcp-confirmation-{confirmation.id}"
        outcome = await _execute(app, op, gate, key, service_idem)
        stored = await services.call(
            app.calls.store_confirmation_result, confirmation.id, outcome.model_dump(mode="json")
        )
        return WriteOutcome.model_validate(stored)
    service_idem = service_key(caller.name, key) if key else new_key()
    return await _execute(app, op, gate, key, service_idem)


async def _execute(app: BillingApp, op: Operation, gate: Gate, key: str | None, service_idem: str) -> WriteOutcome:
    plan = gate.plan
    assert plan is not None
    result = await app.services.call.blocking(op.execute, app.services, gate.caller.name, gate.args, service_idem)
    rec = record()
    rec.outcome = "executed"
    if plan.amount is not None:
        rec.amount = abs(plan.amount.cents)
        rec.currency = plan.amount.currency
    outcome = WriteOutcome(
        status="executed", tool=op.name, message=f"Done: {plan.preview.action}.", preview=plan.preview, result=result
    )
    return await _remember(app, op, gate, key, outcome)


async def _remember(app: BillingApp, op: Operation, gate: Gate, key: str | None, outcome: WriteOutcome) -> WriteOutcome:
    if not key:
        return outcome
    stored = await app.services.call(
        app.calls.remember_outcome,
        gate.caller.name,
        key,
        op.name,
        gate.args_hash,
        outcome.model_dump(mode="json"),
    )
    return WriteOutcome.model_validate(stored)
