"""Use cases. Each public method is one transaction, safe to retry with the same idempotency key.

The exception is named for it: a method whose name ends in ``_in`` takes the caller's ``Connection`` and
joins its transaction instead of opening one, so one business event commits or rolls back as a whole:
a top-up credited with its invoice (``TopupService.settle_in`` → ``InvoiceService.after_settle_in``), a
webhook event stored with everything it caused (``WebhookInbox`` calls ``ChargingService.charge_call_in``,
``TopupService.settle_in``/``fail_in``/``cancel_in``, ``AutoTopupRecorder.record_success_in``/
``record_failure_in``, ``DisputeService.open_in``/``close_in``, ``TopupRefundService.record_stripe_refund_in``,
``forget_payment_method_in``). An ``_in`` method never commits and never calls outside the process
(Stripe, SMTP); it locks the rows it changes like its one-transaction twin, and a unique-key conflict
it answers itself (a repeated delivery) is caught inside a savepoint, so the caller's transaction stays
usable; any other error leaves the caller to roll back. Its twin
without the suffix (``settle``, ``fail``, ``charge_call``...) is the same work in a transaction of its own.

Services reach the outside only through the ports in :mod:`billing_core.ports`, and see the database's
failures as the typed errors of :mod:`billing_core.db.errors`.
"""
