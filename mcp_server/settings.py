"""Settings of the MCP server (environment names ``BILLING_MCP_*``); amounts are decimal strings in major units."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from billing_core.domain.scopes import parse_scopes
from billing_core.errors import InvalidInput

CONFIRMATION_PATHS = ("elicitation", "token")


def env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


class McpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # The local operator over stdio (HTTP callers come from their tokens). Read-only unless configured otherwise.
    actor: str = Field("mcp:local-operator", min_length=1, max_length=200, validation_alias=env("BILLING_MCP_ACTOR"))
    scopes: str = Field("billing:read", validation_alias=env("BILLING_MCP_SCOPES"))
    # Which confirmation paths the deployment allows: elicitation (the client asks its user) and/or token (two steps).
    confirmation: str = Field("elicitation,token", validation_alias=env("BILLING_MCP_CONFIRMATION"))
    confirmation_minutes: int = Field(10, ge=1, le=120, validation_alias=env("BILLING_MCP_CONFIRMATION_MINUTES"))
    # Four-eyes limits: above them a second person with billing:approve decides.
    refund_limit: Decimal = Field(Decimal("50.00"), ge=0, validation_alias=env("BILLING_MCP_REFUND_LIMIT"))
    adjustment_limit: Decimal = Field(Decimal("100.00"), ge=0, validation_alias=env("BILLING_MCP_ADJUSTMENT_LIMIT"))
    daily_limit: Decimal = Field(Decimal("500.00"), ge=0, validation_alias=env("BILLING_MCP_DAILY_LIMIT"))
    approval_hours: int = Field(24, ge=1, le=24 * 30, validation_alias=env("BILLING_MCP_APPROVAL_HOURS"))
    # Calls per minute per caller (tools, resources, prompts); a burst of that size is allowed.
    rate_limit: int = Field(120, ge=1, le=100_000, validation_alias=env("BILLING_MCP_RATE_LIMIT"))
    # HTTP: the public URL of /mcp (RFC 9728 metadata), the token issuer, and the hosts/origins allowed to call.
    public_url: str | None = Field(None, validation_alias=env("BILLING_MCP_PUBLIC_URL"))
    issuer_url: str | None = Field(None, validation_alias=env("BILLING_MCP_ISSUER_URL"))
    allowed_hosts: str = Field("127.0.0.1:*,localhost:*,[::1]:*", validation_alias=env("BILLING_MCP_ALLOWED_HOSTS"))
    allowed_origins: str = Field(
        "http://127.0.0.1:*,http://localhost:*,http://[::1]:*", validation_alias=env("BILLING_MCP_ALLOWED_ORIGINS")
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: str) -> str:
        try:
            return " ".join(parse_scopes(value))
        except InvalidInput as error:
            raise ValueError(error.message) from None

    @field_validator("confirmation")
    @classmethod
    def _known_paths(cls, value: str) -> str:
        paths = _items(value)
        unknown = set(paths) - set(CONFIRMATION_PATHS)
        if unknown or not paths:
            raise ValueError(f"confirmation paths are {', '.join(CONFIRMATION_PATHS)} (one or both)")
        return ",".join(paths)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())

    @property
    def confirmation_paths(self) -> frozenset[str]:
        return frozenset(_items(self.confirmation))

    @property
    def host_list(self) -> list[str]:
        return list(_items(self.allowed_hosts))

    @property
    def origin_list(self) -> list[str]:
        return list(_items(self.allowed_origins))
