"""Use cases. Each public method is one transaction, safe to retry with the same idempotency key."""
