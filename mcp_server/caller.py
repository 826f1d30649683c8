"""Who is calling: a bearer token's owner over HTTP, the configured local operator over stdio."""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver.exceptions import ToolError

READ = "billing:read"
REFUND = "billing:refund"
ADJUST = "billing:adjust"
APPROVE = "billing:approve"
ADMIN = "billing:admin"


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    scopes: frozenset[str]
    company_id: int | None = None  # a company-bound token sees and touches only this company
    token_id: int | None = None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise ToolError(f"insufficient_scope: this needs the scope {scope}; the caller has {self.scope_text}")

    @property
    def scope_text(self) -> str:
        return " ".join(sorted(self.scopes)) or "no scopes"

    def company(self, company_id: int | None) -> int | None:
        """The company a call may look at: a bound caller gets its own whatever it passed (None: all companies)."""
        if self.company_id is None:
            return company_id
        if company_id is not None and company_id != self.company_id:
            raise ToolError(f"company {company_id} does not exist")  # the same answer as for a missing one
        return self.company_id

    def owns(self, company_id: int, refusal: str) -> None:
        """Refuse, with the answer a missing object gets, anything of another company than a bound caller's."""
        if self.company_id is not None and company_id != self.company_id:
            raise ToolError(refusal)


def caller_from_token_claims(client_id: str, scopes: list[str], claims: dict[str, object] | None) -> Caller:
    claims = claims or {}
    company = claims.get("company_id")
    token_id = claims.get("token_id")
    return Caller(
        name=client_id,
        scopes=frozenset(scopes),
        company_id=company if isinstance(company, int) else None,
        token_id=token_id if isinstance(token_id, int) else None,
    )


def current_caller(local: Caller) -> Caller:
    """The HTTP token's caller when there is one, else the local operator (stdio, in-memory)."""
    token = get_access_token()
    if token is None:
        return local
    return caller_from_token_claims(token.client_id, token.scopes, token.claims)
