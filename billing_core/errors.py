"""Typed errors of the billing core. Every one carries a stable ``code`` and a message fit for people.

::

    BillingError
    ├── InvalidInput               bad arguments; nothing was changed
    │   ├── InvalidAmount          not a positive/parsable amount, bad currency code
    │   ├── CurrencyMismatch       two currencies in one operation
    │   ├── InvalidCursor          a history cursor we did not issue
    │   ├── InvalidPayload         a webhook's data break the shape or bounds its handler relies on
    │   ├── CallTooLong            a call longer than BILLING_MAX_CALL_SECONDS: never charged, a person decides
    │   └── InvoiceDataMissing     the buyer's data an invoice must show are incomplete
    ├── NotFound
    │   ├── CompanyNotFound
    │   ├── CallChargeNotFound
    │   └── TopupNotFound
    ├── Conflict                   the request contradicts what is already recorded
    │   ├── CallChargedWithDifferentData
    │   ├── IdempotencyKeyReused
    │   ├── RefundExceedsCharge
    │   ├── EventMismatch          a provider's event disagrees with what we stored (currency, mode, amount)
    │   └── InvalidTopupState
    ├── InsufficientBalance        a debit or reservation the available balance cannot cover
    ├── BillingDisabled            prepaid billing is switched off for the company
    ├── DatabaseError              the database failed (raised by billing_core.db and bootstrap, never a driver error)
    │   ├── DatabaseUnavailable    the database could not be reached; retry later (retryable)
    │   ├── DatabaseRejected       the database refused the data (too long, out of range); never retry
    │   ├── DatabaseNotMigrated    the schema is missing or old: run `billing db upgrade`
    │   └── DatabaseMisconfigured  DATABASE_URL cannot be used (not a URL, unknown database, driver missing)
    ├── SettingsInvalid            a setting of the environment or .env cannot be used (only a change of it helps)
    └── PaymentError               Stripe said no, or could not be asked
        ├── PaymentDeclined        the bank declined (decline_code says why)
        ├── AuthenticationRequired the payment needs the customer (3-D Secure) but they are not present
        ├── StripeConfigurationError  bad API key, test/live mismatch
        ├── StripeRequestRejected  Stripe refused the request (unknown object, bad parameter)
        ├── StripeRateLimited      (retryable)
        └── StripeUnavailable      network or Stripe outage; safe to retry with the same idempotency key (retryable)

``retryable`` is the one classification callers use: True means another attempt later may succeed
(an outage, a rate limit); False means no retry can ever fix it (bad data, a refusal), so a webhook goes
to the dead letters at once and a tool call reports it.
"""

from __future__ import annotations


class BillingError(Exception):
    code = "billing_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(BillingError):
    code = "invalid_input"


class InvalidAmount(InvalidInput):
    code = "invalid_amount"


class CurrencyMismatch(InvalidInput):
    code = "currency_mismatch"

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"currency {got} does not match {expected}")
        self.expected = expected
        self.got = got


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


class InvalidPayload(InvalidInput):
    """The message names fields and rules only, never the values sent (they may be personal data)."""

    code = "invalid_payload"


class CallTooLong(InvalidInput):
    code = "call_too_long"

    def __init__(self, call_id: str, seconds: int, maximum: int) -> None:
        super().__init__(f"call {call_id} lasted {seconds} s, more than the maximum of {maximum} s; not charged")
        self.call_id = call_id
        self.seconds = seconds
        self.maximum = maximum


class NotFound(BillingError):
    code = "not_found"


class CompanyNotFound(NotFound):
    code = "company_not_found"

    def __init__(self, company_id: int) -> None:
        super().__init__(f"company {company_id} does not exist")
        self.company_id = company_id


class CallChargeNotFound(NotFound):
    code = "call_charge_not_found"

    def __init__(self, reference: str) -> None:
        super().__init__(f"no charge for call {reference}")
        self.reference = reference


class TopupNotFound(NotFound):
    code = "topup_not_found"

    def __init__(self, topup_id: int) -> None:
        super().__init__(f"top-up {topup_id} does not exist")
        self.topup_id = topup_id


class Conflict(BillingError):
    code = "conflict"


class CallChargedWithDifferentData(Conflict):
    code = "call_charged_with_different_data"

    def __init__(self, call_id: str, differences: list[str]) -> None:
        super().__init__(f"call {call_id} was already charged with different data: {', '.join(differences)}")
        self.call_id = call_id
        self.differences = differences


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was already used for a different request")
        self.key = key


class RefundExceedsCharge(Conflict):
    code = "refund_exceeds_charge"

    def __init__(self, requested: int, refundable: int, currency: str) -> None:
        super().__init__(f"refund of {requested} minor units {currency} exceeds the {refundable} still refundable")
        self.requested = requested
        self.refundable = refundable
        self.currency = currency


class EventMismatch(Conflict):
    code = "event_mismatch"


class InvalidTopupState(Conflict):
    code = "invalid_topup_state"


class InsufficientBalance(BillingError):
    code = "insufficient_balance"

    def __init__(self, company_id: int, requested: int, available: int, currency: str) -> None:
        super().__init__(f"company {company_id} has {available} minor units {currency} available, {requested} needed")
        self.company_id = company_id
        self.requested = requested
        self.available = available
        self.currency = currency


class BillingDisabled(BillingError):
    code = "billing_disabled"

    def __init__(self, company_id: int) -> None:
        super().__init__(f"prepaid billing is disabled for company {company_id}")
        self.company_id = company_id


class DatabaseError(BillingError):
    """What the database boundary (:mod:`billing_core.db.errors`) makes of a driver error."""

    code = "database_error"


class DatabaseUnavailable(DatabaseError):
    code = "database_unavailable"
    retryable = True


class DatabaseRejected(DatabaseError):
    """The database refused a value (too long for its column, out of range): the same data never fits."""

    code = "database_rejected"


class DatabaseNotMigrated(DatabaseError):
    """A table or column is missing: the database was never migrated, or not to this version."""

    code = "database_not_migrated"


class DatabaseMisconfigured(DatabaseError):
    """DATABASE_URL cannot be used: it is not a database URL, names an unknown database, or its driver is
    not installed. Only a change of configuration helps."""

    code = "database_misconfigured"


class SettingsInvalid(BillingError):
    """A setting of the environment or ``.env`` cannot be used (not a decimal, an unknown time zone...)."""

    code = "settings_invalid"


class PaymentError(BillingError):
    code = "payment_error"


class PaymentDeclined(PaymentError):
    code = "payment_declined"

    def __init__(self, message: str, *, decline_code: str | None = None) -> None:
        super().__init__(message)
        self.decline_code = decline_code


class AuthenticationRequired(PaymentError):
    code = "authentication_required"


class StripeConfigurationError(PaymentError):
    code = "stripe_configuration"


class StripeRequestRejected(PaymentError):
    code = "stripe_request_rejected"


class StripeRateLimited(PaymentError):
    code = "stripe_rate_limited"
    retryable = True


class StripeUnavailable(PaymentError):
    code = "stripe_unavailable"
    retryable = True


class InvoiceDataMissing(InvalidInput):
    code = "invoice_data_missing"
    party = "company"  # whose details are missing: the buyer's (company) or the seller's

    def __init__(self, company_id: int, missing: list[str], message: str | None = None) -> None:
        super().__init__(message or f"company {company_id} cannot be invoiced: {', '.join(missing)} missing")
        self.company_id = company_id
        self.missing = missing


class SellerDataMissing(InvoiceDataMissing):
    """No seller is configured (there is no default): nothing can be invoiced until BILLING_SELLER_* are set."""

    code = "seller_data_missing"
    party = "seller"

    def __init__(self, company_id: int, missing: list[str]) -> None:
        super().__init__(
            company_id, missing, f"no invoice can be issued until the seller is configured: {', '.join(missing)}"
        )
