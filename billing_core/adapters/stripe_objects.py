"""Stripe objects as small typed views, parsed from SDK objects or from webhook JSON alike.

No ``stripe`` import here: services and webhook handlers read Stripe's objects without loading the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PaymentIntentView:
    id: str
    status: str  # requires_payment_method | requires_confirmation | requires_action | processing | succeeded | canceled
    amount: int
    amount_received: int
    currency: str
    customer: str | None
    payment_method: str | None
    latest_charge: str | None
    metadata: dict[str, str]
    failure_code: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    client_secret: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutSessionView:
    id: str
    url: str | None
    status: str | None  # open | complete | expired
    payment_status: str | None  # paid | unpaid | no_payment_required
    payment_intent: str | None
    customer: str | None
    amount_total: int | None
    currency: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class PaymentMethodView:
    id: str
    type: str
    customer: str | None
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    country: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "brand": self.brand,
            "last4": self.last4,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "country": self.country,
        }


@dataclass(frozen=True, slots=True)
class RefundView:
    id: str
    status: str  # pending | succeeded | failed | canceled | requires_action
    amount: int
    currency: str
    payment_intent: str | None
    charge: str | None
    failure_reason: str | None
    metadata: dict[str, str]


def _metadata(obj: Any) -> dict[str, str]:
    value = _get(obj, "metadata")
    if value is None:
        return {}
    plain = value.to_dict() if hasattr(value, "to_dict") else dict(value)
    return {str(k): str(v) for k, v in plain.items()}


def _get(obj: Any, key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError):
        return None


def _id_of(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, str) else _get(value, "id")


def payment_intent_view(intent: Any) -> PaymentIntentView:
    error = _get(intent, "last_payment_error")
    return PaymentIntentView(
        id=str(intent["id"]),
        status=str(intent["status"]),
        amount=int(intent["amount"]),
        amount_received=int(_get(intent, "amount_received") or 0),
        currency=str(intent["currency"]).upper(),
        customer=_id_of(_get(intent, "customer")),
        payment_method=_id_of(_get(intent, "payment_method")),
        latest_charge=_id_of(_get(intent, "latest_charge")),
        metadata=_metadata(intent),
        failure_code=_get(error, "code") if error else None,
        decline_code=_get(error, "decline_code") if error else None,
        failure_message=_get(error, "message") if error else None,
        client_secret=_get(intent, "client_secret"),
    )


def checkout_session_view(session: Any) -> CheckoutSessionView:
    total = _get(session, "amount_total")
    currency = _get(session, "currency")
    return CheckoutSessionView(
        id=str(session["id"]),
        url=_get(session, "url"),
        status=_get(session, "status"),
        payment_status=_get(session, "payment_status"),
        payment_intent=_id_of(_get(session, "payment_intent")),
        customer=_id_of(_get(session, "customer")),
        amount_total=None if total is None else int(total),
        currency=None if currency is None else str(currency).upper(),
        metadata=_metadata(session),
    )


def payment_method_view(pm: Any) -> PaymentMethodView:
    kind = str(pm["type"])
    details = _get(pm, kind) or {}
    return PaymentMethodView(
        id=str(pm["id"]),
        type=kind,
        customer=_id_of(_get(pm, "customer")),
        brand=_get(details, "brand") or _get(details, "bank_code"),
        last4=_get(details, "last4"),
        exp_month=_get(details, "exp_month"),
        exp_year=_get(details, "exp_year"),
        country=_get(details, "country"),
    )


def refund_view(refund: Any) -> RefundView:
    return RefundView(
        id=str(refund["id"]),
        status=str(_get(refund, "status") or "pending"),
        amount=int(refund["amount"]),
        currency=str(refund["currency"]).upper(),
        payment_intent=_id_of(_get(refund, "payment_intent")),
        charge=_id_of(_get(refund, "charge")),
        failure_reason=_get(refund, "failure_reason"),
        metadata=_metadata(refund),
    )
