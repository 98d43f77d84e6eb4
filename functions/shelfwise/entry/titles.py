"""TitleFunction: the table's stream -> conversation titles (Powertools BatchProcessor).

The event source mapping's FilterCriteria (template.yaml) lets through only the records of
conversations that need a title: a turn just ended on an untitled conversation, or a fresh title was
asked for. Each record is processed on its own; one that fails (storage trouble: the model never
fails a record, it falls back) is reported in `batchItemFailures`, so Lambda retries from it
(bounded, then the on-failure destination, an SQS queue with an alarm) and the others are not held
up. Every write is conditional, so the retries and duplicate deliveries this implies are harmless.

Time: each record's model call gets an equal share of what is left of the invocation among the
records still to process (this one included), after their storage work and a reserve, at most
MODEL_BUDGET_SECONDS; recomputed per record, so what a quick record leaves goes to the ones after it.
The batch's model calls therefore fit its timeout however slow the model is, and the model client is
set up (imports, key) before the time is measured out: a cold start's setup is not a model call's.
A share too short for a model call gives the fallback title at once (see TitleService.process); only
a record for which not even its read and write fit is reported, so the invocation ends before its
deadline either way.

`lambda_handler` reads its settings from the environment on first use; `make_handler(services)`
builds the same handler over given services (the local stack's stream pump uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shelfwise.entry.stream_batch import Handler, record_key, stream_handler
from shelfwise.observability import logger, metrics
from shelfwise.settings import get_settings
from shelfwise.storage.items import ConversationItem

if TYPE_CHECKING:
    from shelfwise.services import Services

# Seconds kept free at the end of an invocation: the response, the metrics flush, some slack.
RESERVE_SECONDS = 2.0
# Seconds set aside for each record's read and conditional write (tens of milliseconds as a rule).
STORAGE_SECONDS = 0.5
# The most one record's model call may take, retries included.
MODEL_BUDGET_SECONDS = 20.0


class OutOfTime(Exception):
    """Too little of the invocation is left to title this record; Lambda will deliver it again."""


@dataclass
class _Batch:
    left: int  # records of the invocation's batch not yet done, the current one included
    prepared: bool = False  # the model client is set up (once per invocation, before the first share)


_batch: ContextVar[_Batch | None] = ContextVar("title_batch", default=None)


def title_budget(remaining_seconds: float, records_left: int) -> float:
    """Seconds one record's model call may take when `remaining_seconds` of the invocation are left
    for `records_left` records (this one included): an equal share of what their storage work and
    the reserve leave, at most MODEL_BUDGET_SECONDS, never negative."""
    left = max(1, records_left)
    usable = remaining_seconds - RESERVE_SECONDS - STORAGE_SECONDS * left
    return max(0.0, min(MODEL_BUDGET_SECONDS, usable / left))


def title_record(services: Services, record: DynamoDBRecord, context: LambdaContext) -> str:
    """Bring the conversation a record is about up to date; its outcome."""
    batch = _batch.get()
    if batch is None or not batch.prepared:
        services.titles.prepare()  # a cold process's imports and key read: not the model's time
        if batch is not None:
            batch.prepared = True
    try:
        return _title(services, record, context, batch.left if batch is not None else 1)
    finally:
        if batch is not None:
            batch.left -= 1


def _title(services: Services, record: DynamoDBRecord, context: LambdaContext, records_left: int) -> str:
    key = record_key(record)
    ref = ConversationItem.of_key(*key) if key else None
    if ref is None:  # the filter should not let these through; say so, do not fail
        logger.warning("stream record is not about a conversation", extra={"event_id": record.event_id})
        metrics.add_metric(name="TitlesSkipped", unit="Count", value=1)
        return "skipped"
    remaining = context.get_remaining_time_in_millis() / 1000
    if remaining - RESERVE_SECONDS < STORAGE_SECONDS:
        raise OutOfTime(f"{remaining:.1f} s left")
    # Thread-local: locally this handler runs on the stream pump's thread, beside the app.
    logger.thread_safe_append_keys(conversation_id=ref.conversation_id)
    try:
        result = services.titles.process(ref, budget_seconds=title_budget(remaining, records_left))
    finally:
        logger.thread_safe_remove_keys(["conversation_id"])
    return result.outcome


def make_handler(services: Callable[[], Services]) -> Handler:
    """The TitleFunction handler over `services()` (called on first use, not here)."""
    inner = stream_handler(services, title_record, failures_metric="TitleRecordsFailed")

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        token = _batch.set(_Batch(left=len(event.get("Records") or ())))
        try:
            return inner(event, context)
        finally:
            _batch.reset(token)

    return handler


@cache
def _services() -> Services:
    from shelfwise.services import Services

    return Services(get_settings())


lambda_handler = make_handler(_services)
