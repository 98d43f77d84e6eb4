"""PurgeFunction: the table's stream -> a deleted product's items and stock history removed, and a
bulk adjustment's lines filed in each variant's history.

DELETE /products/{sku} only hides the product and takes its variants out of every index (one
transaction, whatever the history's size); the stream carries that change here, and the event
source mapping's FilterCriteria (template.yaml) let through only the record of a product that has
just been hidden. Each record is purged on its own; one that fails is reported in
`batchItemFailures`, so Lambda retries from it (bounded, then the on-failure destination, an SQS
queue with an alarm). A purge is idempotent: a retried or cut-short one finishes the job.

A bulk adjustment writes its record (holding its lines) in the transaction that moves the stock and
files the lines as adjustment items right after; the record's INSERT passes the second filter, so
the lines are filed here too (the same items again) should the request have stopped in between.

`lambda_handler` reads its settings from the environment on first use; `make_handler(services)`
builds the same handler over given services (the local stack's stream pump uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shelfwise.entry.stream_batch import Handler, record_key, stream_handler
from shelfwise.observability import logger
from shelfwise.settings import get_settings
from shelfwise.storage.items import ProductItem, WriteRecord

if TYPE_CHECKING:
    from shelfwise.services import Services


def purge_record(services: Services, record: DynamoDBRecord, _: LambdaContext) -> str:
    """Purge the hidden product a record is about, or file the lines of a bulk adjustment; its outcome."""
    key = record_key(record)
    new = (record.dynamodb.new_image if record.dynamodb is not None else None) or {}
    if WriteRecord.is_batch(new):
        filed = services.inventory.file_batch(str(new["result"]))
        logger.info("bulk adjustment filed", extra={"lines": filed})
        return "filed"
    sku = ProductItem.sku_of(*key) if key else None
    if sku is None:  # the filter should not let these through; say so, do not fail
        logger.warning("stream record is not about a product", extra={"event_id": record.event_id})
        return "skipped"
    logger.thread_safe_append_keys(sku=sku)
    try:
        removed = services.inventory.purge_product(sku)
    finally:
        logger.thread_safe_remove_keys(["sku"])
    return "purged" if removed else "skipped"


def make_handler(services: Callable[[], Services]) -> Handler:
    """The PurgeFunction handler over `services()` (called on first use, not here)."""
    return stream_handler(services, purge_record, failures_metric="PurgeRecordsFailed")


@cache
def _services() -> Services:
    from shelfwise.services import Services

    return Services(get_settings())


lambda_handler = make_handler(_services)
