"""A bulk adjustment whose request stops between its transaction and filing its lines: the stock
moved and the batch's record holds the lines, so PurgeFunction, fed by the table's stream through the
template's own mapping and filters, files them in each variant's history (moto and DynamoDB Local)."""

from __future__ import annotations

from typing import Any

import pytest

from shelfwise.errors import StorageUnavailable
from shelfwise.idempotency import IdempotentRequest, fingerprint
from shelfwise.inventory.models import Adjustment, AdjustmentReason, BulkAdjustmentIn, BulkLine
from shelfwise.inventory.service import InventoryService
from shelfwise.services import Services
from shelfwise.storage.codec import Item
from shelfwise.storage.dynamo import Dynamo
from tests.fixtures.app import make_settings
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget


class FilingFails(Dynamo):
    """The table, except that the first batch of adjustment items fails (the request 'stops')."""

    failures = 1

    def batch_write(self, *, puts: Any = (), deletes: Any = ()) -> int:
        puts = list(puts)
        if any(item.get("type") == "adjustment" for item in puts) and self.failures:
            self.failures -= 1
            raise StorageUnavailable("the database is busy, retry shortly")
        return super().batch_write(puts=puts, deletes=deletes)


def _lines(inventory: InventoryService, sku: str, size: str) -> list[Adjustment]:
    return inventory.adjustments(sku, size, limit=10)


@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "key"])
def test_lines_left_unfiled_are_filed_from_the_stream(ddb: DynamoTarget, with_key: bool) -> None:
    db = FilingFails(ddb.client, ddb.table_name)
    services = Services(make_settings(ddb.table_name), dynamo=db)
    inventory = services.inventory
    sku = inventory.create_product(black_tee(("S", 4), ("M", 6)), actor="dock").sku
    receipt = BulkAdjustmentIn(
        reason=AdjustmentReason.RECEIVED,
        note="PO 7",
        lines=[BulkLine(sku=sku, size="S", delta=3), BulkLine(sku=sku, size="M", delta=-1)],
    )
    once = IdempotentRequest("dock", "po-7", fingerprint("POST", "/x", {})) if with_key else None
    pump = ddb.purge_pump(lambda: services)
    with pump:
        batch = inventory.adjust_many(receipt, actor="dock", once=once)  # answered: the stock moved
        assert db.failures == 0
        assert {v.size: v.quantity for v in inventory.get_product(sku).variants} == {"S": 7, "M": 5}
        assert pump.wait_until_idle(timeout=60)
    assert pump.stats.invocations == 1  # the batch's record, not the variants or the product
    filed: list[Item] = [a.model_dump() for size in ("S", "M") for a in _lines(inventory, sku, size)]
    assert filed == [a.model_dump() for a in batch.lines]
    # filing is idempotent: the stream delivering the record again changes nothing
    assert inventory.repo.file_batch(batch) == 2
    assert [len(_lines(inventory, sku, size)) for size in ("S", "M")] == [1, 1]
