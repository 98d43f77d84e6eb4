"""What an Idempotency-Key costs a stock adjustment: adjustments per second with keys vs without, in
the same run, on DynamoDB Local over HTTP, 10 writers at once, on one hot variant (every writer on
the same item: optimistic retries) and spread over 100 variants. A keyed adjustment reads its key
first and writes the key's record in its transaction (3 actions instead of 2).

`value` is milliseconds of wall time per applied adjustment with keys, `baseline` the same without;
the ratio is the key's cost (target <= 1.3). BENCH_ADJUSTMENTS sets the count per case (default 400).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from infra.local.dynamodb_local import DynamoDBLocal
from infra.local.table import create_table
from shelfwise.errors import StorageUnavailable
from shelfwise.idempotency import IdempotentRequest, fingerprint
from shelfwise.inventory.models import Category, NewVariant, ProductIn
from shelfwise.inventory.service import InventoryService
from shelfwise.observability import logger
from shelfwise.services import Services
from shelfwise.storage.dynamo import Dynamo
from tests.fixtures.app import make_settings

WRITERS = 10
TARGET = 1.3


def _variants(inventory: InventoryService, count: int) -> list[tuple[str, str]]:
    """`count` fresh variants, 25 to a product: (sku, size) each."""
    found: list[tuple[str, str]] = []
    for first in range(0, count, 25):
        sizes = [str(n) for n in range(first, min(count, first + 25))]
        data = ProductIn(
            category=Category.TEES,
            name="Bench Tee",
            color="black",
            price=Decimal("10"),
            variants=[NewVariant(size=size, quantity=1_000, reorder_level=0) for size in sizes],
        )
        sku = inventory.create_product(data, actor="bench").sku
        found += [(sku, size) for size in sizes]
    return found


def _rate(adjust: Callable[[int], Any], count: int) -> tuple[float, int]:
    """Adjustments applied per second, WRITERS at a time, and how many were refused as busy (503)."""

    def attempt(i: int) -> bool:
        try:
            adjust(i)
        except StorageUnavailable:
            return False
        return True

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        applied = sum(pool.map(attempt, range(count)))
    return applied / (time.perf_counter() - started), count - applied


def run() -> Iterator[dict[str, Any]]:
    logger.setLevel("WARNING")
    count = int(os.environ.get("BENCH_ADJUSTMENTS", "400"))
    with DynamoDBLocal() as ddb:
        client = ddb.client()
        table = f"bench-adjustments-{uuid.uuid4().hex[:6]}"
        create_table(client, table)
        inventory = Services(make_settings(table), dynamo=Dynamo(client, table)).inventory
        for case, sizes in (("hot_variant", 1), ("spread_100_variants", 100)):
            rates: dict[bool, list[float]] = {False: [], True: []}
            busy = {False: 0, True: 0}
            for keyed in (False, True, False, True):  # interleaved: drift in the emulator hits both
                targets = _variants(inventory, sizes)

                def adjust(i: int, targets: list[tuple[str, str]] = targets, keyed: bool = keyed) -> Any:
                    sku, size = targets[i % len(targets)]
                    once = (
                        IdempotentRequest("bench", uuid.uuid4().hex, fingerprint("POST", sku, i))
                        if keyed
                        else None
                    )
                    return inventory.adjust_stock(
                        sku, size, delta=-1, reason="sale", actor="bench", once=once
                    )

                rate, refused = _rate(adjust, count)
                rates[keyed].append(rate)
                busy[keyed] += refused
            keyed_rate, plain_rate = max(rates[True]), max(rates[False])
            yield {
                "name": f"adjustments.idempotency_key.{case}",
                "value": round(1000 / keyed_rate, 3),
                "unit": "ms/adjustment",
                "baseline": round(1000 / plain_rate, 3),
                "target": TARGET,
                "runs": 2,
                "adjustments_per_second": {
                    "with_keys": round(keyed_rate, 1),
                    "without": round(plain_rate, 1),
                },
                "refused_busy": {"with_keys": busy[True], "without": busy[False]},
                "detail": f"{count} adjustments, {WRITERS} writers, {sizes} variant(s), DynamoDB Local; "
                "best of 2 runs each",
            }
