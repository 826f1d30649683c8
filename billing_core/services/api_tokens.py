"""Bearer tokens for the MCP server over HTTP: shown once at creation, stored as SHA-256 only.

A token carries scopes (``billing:read`` ...) and may be bound to one company, in which case everything
it reads or changes is confined to that company whatever ids the caller passes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from billing_core.db.database import inserted_id
from billing_core.db.tables import api_tokens, companies
from billing_core.domain.scopes import parse_scopes
from billing_core.errors import CompanyNotFound, InvalidInput, NotFound
from billing_core.services import audit, validation
from billing_core.services.context import ServiceContext

TOKEN_PREFIX = "bk_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiTokenView:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    company_id: int | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "company_id": self.company_id,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def _view(row: Any) -> ApiTokenView:
    return ApiTokenView(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(row.scopes.split()),
        company_id=row.company_id,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def active_tokens(conn: Connection, tokens: Sequence[str], now: datetime) -> dict[str, ApiTokenView | None]:
    """Each of these plain texts with its active token, or None (unknown, revoked or expired), in one lookup
    (the MCP server's concurrent requests share it)."""
    found: dict[str, ApiTokenView | None] = dict.fromkeys(tokens)
    digests = {token_hash(t): t for t in tokens if t.startswith(TOKEN_PREFIX) and len(t) <= 200}
    if not digests:
        return found
    for row in conn.execute(select(api_tokens).where(api_tokens.c.token_hash.in_(tuple(digests)))):
        token = digests.get(row.token_hash)  # an exact match: the database's comparison may ignore case
        if token is not None and (view := _view(row)).active(now):
            found[token] = view
    return found


class ApiTokenService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx

    def create(
        self,
        *,
        name: str,
        scopes: str | list[str] | tuple[str, ...],
        actor: str,
        company_id: int | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, ApiTokenView]:
        """A new token; the plain text is returned here once and never stored."""
        name = validation.text(name, "token name", max_length=100)
        actor = validation.text(actor, "actor", max_length=200)
        parsed = parse_scopes(scopes)
        if company_id is not None:
            company_id = validation.company_id(company_id)
        now = self._ctx.clock()
        if expires_at is not None and validation.aware(expires_at, "expiry") <= now:
            raise InvalidInput("the expiry must lie in the future")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)

        def work(conn: Connection) -> ApiTokenView:
            if (
                company_id is not None
                and conn.execute(select(companies.c.id).where(companies.c.id == company_id)).first() is None
            ):
                raise CompanyNotFound(company_id)
            token_id = inserted_id(
                conn.execute(
                    insert(api_tokens).values(
                        name=name,
                        token_hash=token_hash(token),
                        prefix=token[:10],
                        scopes=" ".join(parsed),
                        company_id=company_id,
                        created_by=actor,
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
            )
            audit.record(
                conn,
                actor=actor,
                action="api_token.created",
                entity_type="api_token",
                entity_id=token_id,
                company_id=company_id,
                details={"name": name, "scopes": list(parsed), "expires_at": expires_at},
                now=now,
            )
            return _view(conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one())

        return token, self._ctx.db.write(work)

    def list(self) -> list[ApiTokenView]:
        return self._ctx.db.read(
            lambda conn: [_view(r) for r in conn.execute(select(api_tokens).order_by(api_tokens.c.id))]
        )

    def revoke(self, token_id: int, *, actor: str) -> ApiTokenView:
        actor = validation.text(actor, "actor", max_length=200)

        def work(conn: Connection) -> ApiTokenView:
            row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
            if row is None:
                raise NotFound(f"token {token_id} does not exist")
            now = self._ctx.clock()
            if row.revoked_at is None:
                conn.execute(update(api_tokens).where(api_tokens.c.id == token_id).values(revoked_at=now))
                audit.record(
                    conn,
                    actor=actor,
                    action="api_token.revoked",
                    entity_type="api_token",
                    entity_id=token_id,
                    company_id=row.company_id,
                    details={"name": row.name},
                    now=now,
                )
            return _view(conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).one())

        return self._ctx.db.write(work)

    def verify(self, token: str) -> ApiTokenView | None:
        """The active token with this plain text, or None (unknown, revoked or expired)."""
        return self._ctx.db.read(lambda conn: active_tokens(conn, [token], self._ctx.clock()))[token]
