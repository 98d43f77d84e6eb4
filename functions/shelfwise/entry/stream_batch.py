"""What every consumer of the table's stream shares: Powertools' BatchProcessor with partial batch
responses (`ReportBatchItemFailures` in template.yaml), Logger with the invocation's context, EMF
metrics, and a Tracer created on the first invocation that keeps neither response nor error in X-Ray.

    lambda_handler = stream_handler(services, handle, failures_metric="TitleRecordsFailed")

`handle(services, record, context)` processes one record and names its outcome; raising reports the
record in `batchItemFailures`, so Lambda retries from it (then the on-failure destination). Each
invocation counts its records (`TitleRecords`, `PurgeRecords`) and the failed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shelfwise.observability import logger, metrics, trace_handler

if TYPE_CHECKING:
    from shelfwise.services import Services

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
RecordHandler = Callable[["Services", DynamoDBRecord, LambdaContext], str]


def record_key(record: DynamoDBRecord) -> tuple[str, str] | None:
    """The (pk, sk) of the item a stream record is about, None when it has none."""
    stream = record.dynamodb
    found = (stream.keys if stream is not None else None) or {}
    pk, sk = found.get("pk"), found.get("sk")
    return (pk, sk) if isinstance(pk, str) and isinstance(sk, str) else None


def stream_handler(
    services: Callable[[], Services], handle: RecordHandler, *, failures_metric: str
) -> Handler:
    """A stream consumer's Lambda handler over `services()` (called on first use, not here)."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)

    def body(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        current = services()
        response: dict[str, Any] = dict(
            process_partial_response(
                event=event,
                record_handler=lambda record: handle(current, record, context),
                processor=processor,
                context=context,
            )
        )
        # every invocation counts its records: a quiet stream is told from a stalled one (and an
        # invocation is never without a metric to publish)
        records = failures_metric.removesuffix("Failed")
        metrics.add_metric(name=records, unit="Count", value=len(event.get("Records") or []))
        if failures := response.get("batchItemFailures"):
            metrics.add_metric(name=failures_metric, unit="Count", value=len(failures))
        return response

    traced: list[Handler] = []

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not traced:  # the Tracer costs ~185 ms to import: only on the first invocation
            traced.append(trace_handler(body))
        return traced[0](event, context)

    decorated: Handler = handler
    return decorated
