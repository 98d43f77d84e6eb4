"""Token budgets per user and period, and what turns cost.

A turn reserves its worst case (the prompt it will send plus the completion it may ask for) before
the model is called, in one conditional write: over budget, it is refused (429 `budget_exceeded`)
before anything is stored. When the turn ends the reservation is replaced by what it used. The
period is the UTC day; limits come from settings: a default for everyone, and per Cognito group
(the largest of the caller's groups wins).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shelfwise import clock
from shelfwise.errors import BudgetExceeded
from shelfwise.observability import metrics
from shelfwise.settings import Settings
from shelfwise.storage.usage import UsageRepository

_MILLION = Decimal(1_000_000)
# Usage items outlive their day, long enough for a month's look back.
_KEEP_DAYS = 35


@dataclass(frozen=True)
class Period:
    name: str  # the UTC day, 2026-12-01
    resets_at: dt.datetime

    @classmethod
    def of(cls, moment: dt.datetime) -> Period:
        day = moment.astimezone(dt.UTC).date()
        return cls(day.isoformat(), dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC))

    def seconds_left(self, moment: dt.datetime) -> int:
        return max(1, int((self.resets_at - moment).total_seconds()))


@dataclass(frozen=True)
class Reservation:
    user_id: str
    period: str
    tokens: int


def cost_usd(settings: Settings, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    """What the model's price table says these tokens cost (0 for a model it does not list)."""
    price = settings.model_prices.get(model)
    if price is None:
        return Decimal(0)
    return (price.prompt * prompt_tokens + price.completion * completion_tokens) / _MILLION


class Budgets:
    def __init__(self, settings: Settings, repo: UsageRepository) -> None:
        self.settings = settings
        self.repo = repo

    def limit_for(self, groups: frozenset[str]) -> int | None:
        by_group = [
            self.settings.budget_tokens_per_day_by_group[g]
            for g in groups
            if g in self.settings.budget_tokens_per_day_by_group
        ]
        return max(by_group) if by_group else self.settings.budget_tokens_per_day

    def reserve(self, user_id: str, groups: frozenset[str], tokens: int) -> Reservation:
        """Reserve a turn's tokens, or refuse it (BudgetExceeded, nothing written)."""
        now = clock.now()
        period = Period.of(now)
        limit = self.limit_for(groups)
        expires_at = int(period.resets_at.timestamp()) + _KEEP_DAYS * 86_400
        if not self.repo.reserve(user_id, period.name, tokens, limit=limit, expires_at=expires_at):
            metrics.add_metric(name="BudgetRejections", unit="Count", value=1)
            raise BudgetExceeded(
                f"the token budget for today is spent; it resets at {clock.iso(period.resets_at)}",
                resets_at=clock.iso(period.resets_at),
                retry_after=period.seconds_left(now),
            )
        return Reservation(user_id, period.name, tokens)

    def settle(self, reservation: Reservation, *, prompt: int, completion: int, cost: Decimal) -> None:
        self.repo.settle(
            reservation.user_id,
            reservation.period,
            reserved=reservation.tokens,
            prompt=prompt,
            completion=completion,
            cost_usd=cost,
        )

    def usage(self, user_id: str, groups: frozenset[str]) -> dict[str, Any]:
        """GET /usage: the caller's tokens and cost this period, and what is left of the budget."""
        now = clock.now()
        period = Period.of(now)
        used = self.repo.read(user_id, period.name)
        limit = self.limit_for(groups)
        return {
            "period": period.name,
            "resets_at": clock.iso(period.resets_at),
            "prompt_tokens": used.prompt_tokens,
            "completion_tokens": used.completion_tokens,
            "cost_usd": float(used.cost_usd),
            "limit_tokens": limit,
            "remaining_tokens": None if limit is None else max(0, limit - used.committed),
        }
