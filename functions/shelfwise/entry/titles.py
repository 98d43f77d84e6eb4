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
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shelfwise.entry.stream_batch import Handler, record_key, stream_handler
from shelfwise.observability import logger, metrics
from shelfwise.settings import get_settings
from shelfwise.storage.titles import ConversationRef

if TYPE_CHECKING:
    from shelfwise.services import Services

# Seconds kept free at the end of an invocation: a record that would run past it is reported as
# failed (Lambda retries it) instead of being cut off by the function's timeout with its batch.
SAFETY_SECONDS = 5.0
# The most one record's model call may take, retries included.
MODEL_BUDGET_SECONDS = 20.0


class OutOfTime(Exception):
    """Too little of the invocation is left to title this record; Lambda will deliver it again."""


def title_record(services: Services, record: DynamoDBRecord, context: LambdaContext) -> str:
    """Bring the conversation a record is about up to date; its outcome."""
    key = record_key(record)
    ref = ConversationRef.of_key(*key) if key else None
    if ref is None:  # the filter should not let these through; say so, do not fail
        logger.warning("stream record is not about a conversation", extra={"event_id": record.event_id})
        metrics.add_metric(name="TitlesSkipped", unit="Count", value=1)
        return "skipped"
    remaining = context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS
    if remaining < 2:
        raise OutOfTime(f"{remaining:.1f} s left")
    # Thread-local: locally this handler runs on the stream pump's thread, beside the app.
    logger.thread_safe_append_keys(conversation_id=ref.conversation_id)
    try:
        result = services.titles.process(ref, budget_seconds=min(MODEL_BUDGET_SECONDS, remaining))
    finally:
        logger.thread_safe_remove_keys(["conversation_id"])
    return result.outcome


def make_handler(services: Callable[[], Services]) -> Handler:
    """The TitleFunction handler over `services()` (called on first use, not here)."""
    return stream_handler(services, title_record, failures_metric="TitleRecordsFailed")


@cache
def _services() -> Services:
    from shelfwise.services import Services

    return Services(get_settings())


lambda_handler = make_handler(_services)
