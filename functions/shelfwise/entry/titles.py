"""TitleFunction: the table's stream -> conversation titles (Powertools BatchProcessor).

The event source mapping's FilterCriteria (template.yaml) lets through only the records of
conversations that need a title: a turn just ended on an untitled conversation, or a fresh title was
asked for. Each record is processed on its own; one that fails (storage trouble: the model never
fails a record, it falls back) is reported in `batchItemFailures`, so Lambda retries from it
(bounded, then the on-failure destination, an SQS queue with an alarm) and the others are not held
up. Every write is conditional, so the retries and duplicate deliveries this implies are harmless.

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
from shelfwise.storage.titles import ConversationRef

if TYPE_CHECKING:
    from shelfwise.services import Services

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

# Seconds kept free at the end of an invocation: a record that would run past it is reported as
# failed (Lambda retries it) instead of being cut off by the function's timeout with its batch.
SAFETY_SECONDS = 5.0
# The most one record's model call may take, retries included.
MODEL_BUDGET_SECONDS = 20.0


class OutOfTime(Exception):
    """Too little of the invocation is left to title this record; Lambda will deliver it again."""


def _conversation(record: DynamoDBRecord) -> ConversationRef | None:
    """The conversation a stream record is about (its key), None when it is about anything else."""
    stream = record.dynamodb
    found = (stream.keys if stream is not None else None) or {}
    pk, sk = found.get("pk"), found.get("sk")
    return ConversationRef.of_key(pk, sk) if isinstance(pk, str) and isinstance(sk, str) else None


def make_handler(services: Callable[[], Services]) -> Handler:
    """The TitleFunction handler over `services()` (called on first use, not here)."""
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)

    def body(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        titles = services().titles

        def record_handler(record: DynamoDBRecord) -> str:
            ref = _conversation(record)
            if ref is None:  # the filter should not let these through; say so, do not fail
                logger.warning(
                    "stream record is not about a conversation", extra={"event_id": record.event_id}
                )
                metrics.add_metric(name="TitlesSkipped", unit="Count", value=1)
                return "skipped"
            remaining = context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS
            if remaining < 2:
                raise OutOfTime(f"{remaining:.1f} s left")
            # Thread-local: locally this handler runs on the stream pump's thread, beside the app.
            logger.thread_safe_append_keys(conversation_id=ref.conversation_id)
            try:
                result = titles.process(ref, budget_seconds=min(MODEL_BUDGET_SECONDS, remaining))
            finally:
                logger.thread_safe_remove_keys(["conversation_id"])
            return result.outcome

        response: dict[str, Any] = dict(
            process_partial_response(
                event=event, record_handler=record_handler, processor=processor, context=context
            )
        )
        if failures := response.get("batchItemFailures"):
            metrics.add_metric(name="TitleRecordsFailed", unit="Count", value=len(failures))
        return response

    traced: list[Handler] = []

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not traced:  # the Tracer costs ~185 ms to import: only on the first invocation
            traced.append(tracer().capture_lambda_handler(body))
        return traced[0](event, context)

    decorated: Handler = handler
    return decorated


@cache
def _services() -> Services:
    from shelfwise.services import Services

    return Services(get_settings())


lambda_handler = make_handler(_services)
