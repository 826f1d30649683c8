"""Prepaid billing for AI phone assistants: the domain and its use cases."""
