"""The structured answers of the write and approval tools (the read tools answer with the read side's models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_core.money import Money


class Amount(BaseModel):
    """An amount: integer minor units and currency plus the text people read."""

    model_config = ConfigDict(frozen=True)

    cents: int = Field(description="Integer minor units, e.g. 4200 for 42.00 EUR.")
    currency: str = Field(description="ISO 4217 currency code.")
    formatted: str = Field(description="The amount as people read it, e.g. '42,00 €'.")

    @classmethod
    def of(cls, money: Money, locale: str = "de_DE") -> Amount:
        return cls(cents=money.cents, currency=money.currency, formatted=money.format(locale))


class Preview(BaseModel):
    """What a write would do, shown before anything changes."""

    action: str = Field(description="What will happen, in one sentence.")
    company_id: int | None = Field(None, description="The company affected.")
    amount: Amount | None = Field(None, description="The money that moves, if any.")
    details: dict[str, Any] = Field(description="The facts the decision rests on (refundable amount, balance, ...).")


Status = Literal["executed", "replayed", "confirmation_required", "approval_requested", "declined"]


class WriteOutcome(BaseModel):
    """The answer of every write tool."""

    status: Status = Field(
        description=(
            "executed: done now. replayed: the same idempotency key or confirmation token was used before; "
            "this is the first outcome and nothing happened again. confirmation_required: nothing happened yet; "
            "show the preview to the user and, if they agree, call the tool again with the same arguments and "
            "confirmation_token. approval_requested: above the limits; a second person must approve request "
            "approval_id. declined: the user said no; nothing happened."
        )
    )
    tool: str
    message: str = Field(description="One sentence for the user.")
    preview: Preview | None = None
    result: dict[str, Any] | None = Field(None, description="What the service recorded, when executed.")
    confirmation_token: str | None = Field(None, description="Single use, bound to these arguments and caller.")
    confirmation_expires_at: datetime | None = None
    approval_id: int | None = None


class ApprovalView(BaseModel):
    id: int
    tool: str
    arguments: dict[str, Any]
    requested_by: str
    company_id: int | None
    amount: Amount | None
    preview: dict[str, Any]
    status: str = Field(description="pending | approved | rejected | expired | failed")
    decided_by: str | None
    decision_reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None


class ApprovalList(BaseModel):
    items: list[ApprovalView]
    has_more: bool = Field(description="True when more pending requests exist than were listed.")
