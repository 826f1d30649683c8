"""Typed views of exactly the webhook fields the handlers read, validated once, with bounds.

Ids fit the columns they are stored in (see ``db.tables``) and are printable ASCII; amounts are integers
(never booleans or strings) that are positive where Stripe's are and far inside the ledger's BIGINT;
currencies are real ISO 4217 codes; a call's timestamps and duration agree. Anything else is
:class:`~billing_core.errors.InvalidPayload`, whose message names the fields and the rules broken,
never the values sent: a payload carries callers' phone numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from billing_core.errors import CallTooLong, InvalidAmount, InvalidPayload
from billing_core.money import normalize_currency

# Column widths from db.tables.
EVENT_ID_LENGTH = 191  # webhook_events.event_id
EVENT_TYPE_LENGTH = 64  # webhook_events.event_type
STRIPE_ID_LENGTH = 64  # balance_topups.stripe_payment_intent_id / stripe_charge_id, disputes, refunds
CHECKOUT_SESSION_ID_LENGTH = 128  # balance_topups.stripe_checkout_session_id
CALL_ID_LENGTH = 128  # call_charges.call_id, call_reservations.call_id
AGENT_ID_LENGTH = 128  # retell_agents.agent_id
RETELL_EVENT_LENGTH = EVENT_ID_LENGTH - CALL_ID_LENGTH - 1  # "<event>:<call id>" is the inbox's event id

MAX_AMOUNT = 10**12  # minor units: ten billion euros, far above any one payment and far inside BIGINT
MAX_TIMESTAMP_MS = 10**14  # the year 5138
MAX_COMPANY_ID = 2**63 - 1
# Retell's duration_ms and end - start may differ a little (they are measured at different points).
DURATION_TOLERANCE_MS = 5_000


def _printable_ascii(max_length: int) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=max_length, pattern=r"^[!-~]+$")


def _expanded_id(value: Any) -> Any:
    """Stripe sends a related object as its id, or expanded as the object itself."""
    if isinstance(value, Mapping):
        return value.get("id")
    return value


def _currency(value: str) -> str:
    try:
        return normalize_currency(value)
    except InvalidAmount:
        raise ValueError("not an ISO 4217 currency") from None


StripeId = Annotated[str, _printable_ascii(STRIPE_ID_LENGTH)]
RelatedId = Annotated[StripeId | None, BeforeValidator(_expanded_id)]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(_currency)]
Amount = Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
AmountOrZero = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
Token = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9_.\-]*$")]
Message = Annotated[str, StringConstraints(max_length=1000)]
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=40)], Annotated[str, StringConstraints(max_length=500)]],
    Field(max_length=50),
]  # Stripe's own limits: 50 keys, keys of 40 and values of 500 characters


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# -- Stripe ----------------------------------------------------------------------------------------


class StripeEventKey(_Strict):
    """What the inbox needs to store an event: its id and type, each within its column."""

    id: Annotated[str, _printable_ascii(EVENT_ID_LENGTH)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=EVENT_TYPE_LENGTH, pattern=r"^[a-z0-9_.]+$")]


class StripeEvent(StripeEventKey):
    """The envelope as the handler reads it: which event, in which mode."""

    livemode: bool


def stripe_identity(data: Mapping[str, Any]) -> tuple[str, str]:
    key = parse(StripeEventKey, data)
    return key.id, key.type


class PaymentError(_Strict):
    code: Token | None = None
    decline_code: Token | None = None
    message: Message | None = None


class EmbeddedCharge(_Strict):
    """A PaymentIntent's latest charge when the event carries it expanded (emulators, older API versions)."""

    status: Token
    amount: AmountOrZero
    paid: bool | None = None
    captured: bool | None = None
    amount_captured: AmountOrZero | None = None


class PaymentIntent(_Strict):
    id: StripeId
    status: Token
    amount: Amount
    amount_received: AmountOrZero | None = None
    currency: Currency
    latest_charge: RelatedId = None
    latest_charge_detail: EmbeddedCharge | None = None  # filled from latest_charge only (see below)
    cancellation_reason: Token | None = None
    last_payment_error: PaymentError | None = None
    metadata: Metadata = {}

    @model_validator(mode="before")
    @classmethod
    def _embedded_charge(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        charge = data.get("latest_charge")
        return {**data, "latest_charge_detail": charge if isinstance(charge, Mapping) else None}

    @property
    def received(self) -> int | None:
        """What was received: ``amount_received``; where an emulator leaves it out, what its captured charge took.

        Never ``amount``, which is only what was asked for.
        """
        if self.amount_received is not None:
            return self.amount_received
        charge = self.latest_charge_detail
        if charge is None or charge.status != "succeeded" or charge.paid is False or charge.captured is False:
            return None
        return charge.amount_captured if charge.amount_captured is not None else charge.amount


class CheckoutSession(_Strict):
    id: Annotated[str, _printable_ascii(CHECKOUT_SESSION_ID_LENGTH)]
    payment_intent: RelatedId = None
    payment_status: Token | None = None
    amount_total: AmountOrZero | None = None
    currency: Currency | None = None
    metadata: Metadata = {}


class Refund(_Strict):
    id: StripeId
    amount: Amount
    currency: Currency
    status: Token | None = None
    payment_intent: RelatedId = None
    charge: RelatedId = None
    metadata: Metadata = {}

    @property
    def our_refund_id(self) -> int | None:
        """The row id we put in the metadata of refunds we make (ASCII digits only)."""
        value = self.metadata.get("topup_refund_id", "")
        if value.isascii() and value.isdigit() and 0 < len(value) <= 18:
            return int(value)
        return None


class RefundList(_Strict):
    data: Annotated[list[Refund], Field(max_length=100)] = []


class Charge(_Strict):
    id: StripeId
    amount: Amount
    currency: Currency
    status: Token
    paid: bool | None = None
    payment_intent: RelatedId = None
    failure_code: Token | None = None
    failure_message: Message | None = None
    refunds: RefundList | None = None


class Dispute(_Strict):
    id: StripeId
    amount: Amount
    currency: Currency
    status: Token
    charge: Annotated[StripeId, BeforeValidator(_expanded_id)]
    payment_intent: RelatedId = None
    reason: Token | None = None


class PaymentMethod(_Strict):
    id: StripeId


StripeObject = PaymentIntent | CheckoutSession | Refund | Charge | Dispute | PaymentMethod
OBJECT_MODELS: dict[str, type[StripeObject]] = {
    "payment_intent": PaymentIntent,
    "checkout.session": CheckoutSession,
    "charge": Charge,
    "refund": Refund,
    "charge.dispute": Dispute,
    "payment_method": PaymentMethod,
}


def stripe_object_model(event_type: str) -> type[StripeObject] | None:
    """The model of the object an event type carries (``charge.refund.updated`` carries a refund)."""
    if event_type.startswith("charge.refund."):
        return Refund
    prefix = event_type.rsplit(".", 1)[0]
    return OBJECT_MODELS.get(prefix)


# -- Retell ----------------------------------------------------------------------------------------

CallId = Annotated[str, _printable_ascii(CALL_ID_LENGTH)]
Millis = Annotated[int, Field(gt=0, le=MAX_TIMESTAMP_MS)]


def _company_id(value: Any) -> Any:
    """Metadata values are strings in Retell's dashboard and numbers from the API: take ASCII digits only."""
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise ValueError("company_id must be ASCII digits")
        return int(value)
    return value


class RetellMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    company_id: Annotated[int, Field(strict=True, gt=0, le=MAX_COMPANY_ID), BeforeValidator(_company_id)] | None = None


class RetellCall(_Strict):
    call_id: CallId
    agent_id: Annotated[str, _printable_ascii(AGENT_ID_LENGTH)] | None = None
    start_timestamp: Millis | None = None
    end_timestamp: Millis | None = None
    duration_ms: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)] | None = None
    from_number: Annotated[str, StringConstraints(max_length=64, pattern=r"^[ -~]*$")] | None = None
    metadata: RetellMetadata | None = None


RetellEventName = Annotated[
    str, StringConstraints(min_length=1, max_length=RETELL_EVENT_LENGTH, pattern=r"^[a-z0-9_]+$")
]


class RetellCallKey(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    call_id: CallId


class RetellEnvelope(_Strict):
    """What the inbox needs to store an event: its name and its call's id (together its event id)."""

    event: RetellEventName
    call: RetellCallKey


class RetellEvent(_Strict):
    event: RetellEventName
    call: RetellCall


@dataclass(frozen=True, slots=True)
class CallTimes:
    started: datetime
    ended: datetime | None
    duration_seconds: int


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ended_call_times(call: RetellCall, *, max_seconds: int) -> CallTimes:
    """Start, end and whole seconds (rounded up) of a finished call, after checking they agree."""
    if call.start_timestamp is None:
        raise InvalidPayload("call.start_timestamp is required")
    start, end, duration = call.start_timestamp, call.end_timestamp, call.duration_ms
    if end is not None:
        if end < start:
            raise InvalidPayload("call.end_timestamp is before call.start_timestamp")
        if duration is None:
            duration = end - start
        elif abs(duration - (end - start)) > DURATION_TOLERANCE_MS:
            raise InvalidPayload("call.duration_ms disagrees with end_timestamp - start_timestamp")
    if duration is None:
        raise InvalidPayload("call_ended needs duration_ms or end_timestamp")
    seconds = -(-duration // 1000)
    if seconds > max_seconds:
        raise CallTooLong(call.call_id, seconds, max_seconds)
    return CallTimes(_instant(start), None if end is None else _instant(end), seconds)


def started_at(call: RetellCall) -> datetime:
    if call.start_timestamp is None:
        raise InvalidPayload("call.start_timestamp is required")
    return _instant(call.start_timestamp)


# -- validation, once --------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError, *, prefix: str = "") -> str:
    """Where and which rule, never the value: ``data.object.amount: greater_than``."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False)[:5]:
        where = ".".join(
            str(part) if isinstance(part, int) or (part.isascii() and part.isidentifier() and len(part) <= 40) else "*"
            for part in item["loc"]
        )
        problems.append(f"{prefix}{where}: {item['type']}")
    return "; ".join(problems)


def parse(model: type[M], data: Any, *, prefix: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidPayload(f"invalid payload: {describe(error, prefix=prefix)}") from None
