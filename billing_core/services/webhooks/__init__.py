"""Webhook events from Stripe and Retell: the inbox and one handler per provider."""
