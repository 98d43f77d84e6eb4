"""Per-user token usage per period, and the atomic budget check (see chat.usage).

DynamoDB conditions cannot add, so the item keeps `committed`: tokens used plus tokens reserved by
turns still running. A reservation is one conditional ADD (`committed <= limit - reservation`), so
concurrent turns of one user cannot together pass the limit; settling adds the difference between
what a turn used and what it reserved.
"""

from __future__ import annotations

from decimal import Decimal

from shelfwise.chat.models import PeriodUsage
from shelfwise.storage.dynamo import Dynamo
from shelfwise.storage.expressions import Update, absent, le
from shelfwise.storage.items import UsageItem


class UsageRepository:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    def reserve(self, user_id: str, period: str, tokens: int, *, limit: int | None, expires_at: int) -> bool:
        """Reserve `tokens` of the period's budget; False (nothing written) when it would pass `limit`."""
        update = Update().add(committed=tokens).set(type=UsageItem.TYPE, expires_at=expires_at)
        key = UsageItem.key(user_id, period)
        if limit is None:
            self.db.update(key, update)
            return True
        return tokens <= limit and self.db.update_if(
            key, update, absent("committed") | le("committed", limit - tokens)
        )

    def settle(
        self, user_id: str, period: str, *, reserved: int, prompt: int, completion: int, cost_usd: Decimal
    ) -> None:
        """Replace a turn's reservation by what it used."""
        self.db.update(
            UsageItem.key(user_id, period),
            Update().add(
                committed=prompt + completion - reserved,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost_usd,
                turns=1,
            ),
        )

    def read(self, user_id: str, period: str) -> PeriodUsage:
        item = self.db.get(UsageItem.key(user_id, period), consistent=False)
        return UsageItem.parse(item) if item else PeriodUsage()
