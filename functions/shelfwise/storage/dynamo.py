"""The DynamoDB edge: one low-level client per process, AWS errors turned into domain errors.

boto3 is imported on first use, not at import, so routes that never touch the table (and cold starts
that end before they do) don't pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from shelfwise.errors import StorageError, StorageUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
}


class ConditionFailed(Exception):
    """A conditional write's condition did not hold (storage-internal; repositories translate it)."""

    def __init__(self, item: dict[str, Any] | None = None) -> None:
        super().__init__("condition failed")
        self.item = item


class TransactionCancelled(Exception):
    """A transaction was cancelled; `reasons` has one code per action ("None" when that one was fine)."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__(f"transaction cancelled: {', '.join(reasons)}")
        self.reasons = reasons

    @property
    def conflict(self) -> bool:
        return "TransactionConflict" in self.reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


@cache
def dynamodb_client(region: str, endpoint_url: str | None) -> DynamoDBClient:
    import boto3
    from botocore.config import Config

    from shelfwise.observability import trace_botocore

    trace_botocore()

    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
        tcp_keepalive=True,
        max_pool_connections=64,
    )
    return boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config)


class Dynamo:
    """Thin wrapper over the client: names the table once and translates errors."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table = table_name

    def call(self, operation: str, /, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            raise _translate(exc) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, ...
            raise StorageUnavailable("the database could not be reached", reason=type(exc).__name__) from exc

    def query_pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield raw Query pages until the result is exhausted (callers stop early as they need)."""
        start: Mapping[str, Any] | None = kwargs.pop("ExclusiveStartKey", None)
        while True:
            page = self.call(
                "query", TableName=self.table, **kwargs, **({"ExclusiveStartKey": start} if start else {})
            )
            yield page
            start = page.get("LastEvaluatedKey")
            if not start:
                return


def _translate(exc: Any) -> Exception:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code == "ConditionalCheckFailedException":
        raw = exc.response.get("Item")
        if raw:
            from shelfwise.storage.codec import decode_item

            return ConditionFailed(decode_item(raw))
        return ConditionFailed()
    if code == "TransactionCanceledException":
        reasons = tuple(r.get("Code", "None") for r in exc.response.get("CancellationReasons", []))
        if not reasons:  # some emulators only put the reasons in the message
            message = error.get("Message", "")
            inner = message[message.find("[") + 1 : message.rfind("]")] if "[" in message else ""
            reasons = tuple(part.strip() for part in inner.split(",") if part.strip())
        return TransactionCancelled(reasons)
    if code in _RETRYABLE:
        return StorageUnavailable("the database is busy, retry shortly", reason=code)
    return StorageError("a storage operation failed", reason=code)
