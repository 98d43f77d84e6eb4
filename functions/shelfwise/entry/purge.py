"""PurgeFunction: the table's stream -> a deleted product's items and stock history removed.

DELETE /products/{sku} only hides the product and takes its variants out of every index (one
transaction, whatever the history's size); the stream carries that change here, and the event
source mapping's FilterCriteria (template.yaml) let through only the record of a product that has
just been hidden. Each record is purged on its own; one that fails is reported in
`batchItemFailures`, so Lambda retries from it (bounded, then the on-failure destination, an SQS
queue with an alarm). A purge is idempotent: a retried or cut-short one finishes the job.

`lambda_handler` reads its settings from the environment on first use; `make_handler(services)`
builds the same handler over given services (the local stack's stream pump uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shelfwise.observability import logger, metrics, tracer
from shelfwise.settings import get_settings
from shelfwise.storage.keys import product_of

if TYPE_CHECKING:
    from shelfwise.services import Services

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _sku(record: DynamoDBRecord) -> str | None:
    stream = record.dynamodb
    found = (stream.keys if stream is not None else None) or {}
    pk, sk = found.get("pk"), found.get("sk")
    return product_of(pk, sk) if isinstance(pk, str) and isinstance(sk, str) else None


def make_handler(services: Callable[[], Services]) -> Handler:
    """The PurgeFunction handler over `services()` (called on first use, not here)."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)

    def body(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        inventory = services().inventory

        def record_handler(record: DynamoDBRecord) -> str:
            sku = _sku(record)
            if sku is None:  # the filter should not let these through; say so, do not fail
                logger.warning("stream record is not about a product", extra={"event_id": record.event_id})
                return "skipped"
            logger.thread_safe_append_keys(sku=sku)
            try:
                removed = inventory.purge_product(sku)
            finally:
                logger.thread_safe_remove_keys(["sku"])
            return "purged" if removed else "skipped"

        response: dict[str, Any] = dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
        if failures := response.get("batchItemFailures"):
            metrics.add_metric(name="PurgeRecordsFailed", unit="Count", value=len(failures))
        return response

    traced: list[Handler] = []

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not traced:  # the Tracer costs ~185 ms to import: only on the first invocation
            traced.append(tracer().capture_lambda_handler(body, capture_response=False))
        return traced[0](event, context)

    decorated: Handler = handler
    return decorated


@cache
def _services() -> Services:
    from shelfwise.services import Services

    return Services(get_settings())


lambda_handler = make_handler(_services)
