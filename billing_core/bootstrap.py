"""Wiring: ``build_services(settings)`` is the one place that builds the database and the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing_core.config import Settings
from billing_core.db.database import Database
from billing_core.services.adjustments import AdjustmentService
from billing_core.services.balances import BalanceService
from billing_core.services.bonus_rules import BonusRuleService
from billing_core.services.charging import ChargingService
from billing_core.services.companies import CompanyService
from billing_core.services.context import ServiceContext, utcnow
from billing_core.services.refunds import RefundService
from billing_core.services.topups import TopupService


@dataclass(frozen=True)
class Services:
    ctx: ServiceContext
    companies: CompanyService
    balances: BalanceService
    charging: ChargingService
    refunds: RefundService
    adjustments: AdjustmentService
    topups: TopupService
    bonus_rules: BonusRuleService

    @property
    def db(self) -> Database:
        return self.ctx.db

    def close(self) -> None:
        self.ctx.db.dispose()


def build_services(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow, db: Database | None = None
) -> Services:
    settings = settings or Settings()
    ctx = ServiceContext(db=db or Database(settings.database_url), settings=settings, clock=clock)
    return Services(
        ctx=ctx,
        companies=CompanyService(ctx),
        balances=BalanceService(ctx),
        charging=ChargingService(ctx),
        refunds=RefundService(ctx),
        adjustments=AdjustmentService(ctx),
        topups=TopupService(ctx),
        bonus_rules=BonusRuleService(ctx),
    )
