"""The table gateway: every DynamoDB call goes through `Dynamo`, which names the table once, speaks
plain items (storage.codec), builds expressions (storage.expressions) and translates errors:

- a failed condition is `ConditionFailed`, a cancelled transaction `TransactionCancelled`, each with
  the item as it is (ALL_OLD);
- throttles and conflicts with running transactions are retried with full-jitter backoff, then one
  `StorageUnavailable` (503, Retry-After) everywhere;
- a retried write recognises its own success (botocore resends a request whose answer was lost after
  DynamoDB applied it): transactions carry a ClientRequestToken, and every conditional write and every
  ADD stamps a fresh `write_id` that a retry finds in the old image (emulators that ignore the token
  included).

So an answer of failure means nothing was written, and success means written once. boto3 is imported
on first use: a cold start that never touches the table does not pay for it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from shelfwise.errors import StorageError, StorageUnavailable
from shelfwise.storage.codec import Item, decode_item, encode_item
from shelfwise.storage.expressions import Cond, Placeholders, Update, absent, ne

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

Key = dict[str, str]
WRITE_ID = "write_id"  # stamped by every conditional write, so a retry can recognise its own success

_THROTTLED = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
}
_TRANSIENT = _THROTTLED | {"TransactionConflictException", "InternalServerError", "ServiceUnavailable"}
_TRANSIENT_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
# Largest requests DynamoDB takes.
_BATCH_WRITE = 25
_BATCH_GET = 100


class ConditionFailed(Exception):
    """A conditional write's condition did not hold; `item` is the item as it is (None: absent)."""

    def __init__(self, item: Item | None = None) -> None:
        super().__init__("condition failed")
        self.item = item


class TransactionCancelled(Exception):
    """A transaction was cancelled by a condition: one reason code per action ("None" when that one
    was fine), and the item as it is for the actions whose condition failed."""

    def __init__(self, reasons: tuple[str, ...], items: tuple[Item | None, ...] = ()) -> None:
        super().__init__(f"transaction cancelled: {', '.join(reasons)}")
        self.reasons = reasons
        self.items = items

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"

    def item(self, index: int) -> Item | None:
        return self.items[index] if index < len(self.items) else None

    @property
    def transient(self) -> bool:
        return bool(set(self.reasons) & _TRANSIENT_REASONS) and "ConditionalCheckFailed" not in self.reasons


# -- transaction actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """One action of a transaction: the item it puts or the key it updates, deletes or checks."""

    kind: Literal["Put", "Update", "Delete", "ConditionCheck"]
    target: Item
    condition: Cond | None = None
    update: Update | None = None


def Put(item: Item, condition: Cond | None = None) -> Action:
    return Action("Put", item, condition)


def Change(key: Key, update: Update, condition: Cond | None = None) -> Action:
    return Action("Update", key, condition, update)


def Delete(key: Key, condition: Cond | None = None) -> Action:
    return Action("Delete", key, condition)


def Check(key: Key, condition: Cond) -> Action:
    return Action("ConditionCheck", key, condition)


@dataclass
class QueryPage:
    items: list[Item]
    last_key: Key | None  # where the next page starts (plain strings: cursors encode it)


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


def backoff_seconds(attempt: int, *, base: float = 0.01, cap: float = 1.0) -> float:
    """Full-jitter exponential backoff: a random pause in [0, min(cap, base * 2**attempt))."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Dynamo:
    """The one gateway to the table (see the module doc). `call` is the single low-level seam."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.table = table_name
        self.attempts = attempts
        self.sleep = sleep

    # -- the seam -------------------------------------------------------------------------------------
    def call(self, operation: str, /, **kwargs: Any) -> Any:
        """One DynamoDB operation, errors translated; transient ones retried, then `StorageUnavailable`."""
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(self.attempts):
            try:
                return getattr(self.client, operation)(**kwargs)
            except ClientError as exc:
                error = _translate(exc)
            except BotoCoreError as exc:  # connection refused, timeouts after botocore's own retries
                raise StorageUnavailable(
                    "the database could not be reached", reason=type(exc).__name__
                ) from exc
            transient = isinstance(error, _Transient) or (
                isinstance(error, TransactionCancelled) and error.transient
            )
            if not transient:
                raise error
            if "ClientRequestToken" in kwargs:  # cancelled, so nothing was applied: a new attempt
                kwargs["ClientRequestToken"] = uuid.uuid4().hex
            self.sleep(backoff_seconds(attempt, base=0.02))
        reason = error.code if isinstance(error, _Transient) else "TransactionConflict"
        raise StorageUnavailable("the database is busy, retry shortly", reason=reason)

    # -- reads ----------------------------------------------------------------------------------------
    def get(self, key: Key, *, consistent: bool = True, attributes: Sequence[str] = ()) -> Item | None:
        names = Placeholders()
        request = {"Key": encode_item(key), "ConsistentRead": consistent, **_projection(names, attributes)}
        out = self.call("get_item", **self._request(names, **request))
        return decode_item(out["Item"]) if "Item" in out else None

    def query(
        self,
        key: Cond,
        *,
        index: str | None = None,
        forward: bool = True,
        limit: int | None = None,
        start: Key | None = None,
        consistent: bool = False,
        attributes: Sequence[str] = (),
    ) -> QueryPage:
        """One page of a Query."""
        names = Placeholders()
        request: dict[str, Any] = {"KeyConditionExpression": key.render(names), "ScanIndexForward": forward}
        optional = {"IndexName": index, "Limit": limit, "ConsistentRead": consistent or None}
        request.update({k: v for k, v in optional.items() if v})
        if start:
            request["ExclusiveStartKey"] = encode_item(start)
        out = self.call("query", **self._request(names, **request, **_projection(names, attributes)))
        last = out.get("LastEvaluatedKey")
        items = [decode_item(raw) for raw in out.get("Items", [])]
        return QueryPage(items, {k: str(v) for k, v in decode_item(last).items()} if last else None)

    def query_all(self, key: Cond, **options: Any) -> Iterator[QueryPage]:
        """Every page of a Query, in order (callers stop early as they need)."""
        start = options.pop("start", None)
        while True:
            page = self.query(key, start=start, **options)
            yield page
            if page.last_key is None:
                return
            start = page.last_key

    def batch_get(
        self, keys: Iterable[Key], *, attributes: Sequence[str] = (), consistent: bool = False
    ) -> list[Item]:
        """The items at `keys` (missing ones are left out), 100 keys a call, unprocessed keys retried."""
        unique = list({tuple(sorted(k.items())): k for k in keys}.values())
        found: list[Item] = []
        for i in range(0, len(unique), _BATCH_GET):
            names = Placeholders()
            request = {
                "Keys": [encode_item(k) for k in unique[i : i + _BATCH_GET]],
                **_projection(names, attributes),
            }
            if consistent:
                request["ConsistentRead"] = True
            request.update(names.params())
            for out in self._until_processed("batch_get_item", {self.table: request}, "UnprocessedKeys"):
                found += [decode_item(raw) for raw in out.get("Responses", {}).get(self.table, [])]
        return found

    # -- single-item writes ---------------------------------------------------------------------------
    def put(self, item: Item, *, condition: Cond | None = None) -> None:
        """Write a whole item; with a condition, a retry recognises its own earlier success."""
        names, stamp = Placeholders(), uuid.uuid4().hex
        item = {**item, WRITE_ID: stamp} if condition is not None else item
        self._write("put_item", stamp, self._request(names, condition, Item=encode_item(item)))

    def update(
        self, key: Key, update: Update, *, condition: Cond | None = None, returning: bool = False
    ) -> Item | None:
        """Update an item (`returning`: answer the item as it is afterwards); with a condition, or an
        ADD (applied twice it counts twice), a retry recognises its own earlier success."""
        names, stamp = Placeholders(), uuid.uuid4().hex
        if condition is None and update.adds:
            condition = absent(WRITE_ID) | ne(WRITE_ID, stamp)  # fails only on our own resend
        update = _stamped(update, stamp) if condition is not None else update
        request = self._request(names, condition, Key=encode_item(key), UpdateExpression=update.render(names))
        if returning:
            request["ReturnValues"] = "ALL_NEW"
        return self._write("update_item", stamp, request)

    def put_if(self, item: Item, condition: Cond) -> bool:
        """A conditional put; False (nothing written) when the condition does not hold."""
        try:
            self.put(item, condition=condition)
        except ConditionFailed:
            return False
        return True

    def update_if(self, key: Key, update: Update, condition: Cond) -> bool:
        """A conditional update; False (nothing written) when the condition does not hold."""
        try:
            self.update(key, update, condition=condition)
        except ConditionFailed:
            return False
        return True

    def _write(self, operation: str, stamp: str, request: dict[str, Any]) -> Item | None:
        try:
            out = self.call(operation, **request)
        except ConditionFailed as exc:
            if not _ours(exc.item, stamp):
                raise
            return exc.item  # our own write, found by the retry: the item as it now is
        return decode_item(out["Attributes"]) if "Attributes" in out else None

    def _request(self, names: Placeholders, condition: Cond | None = None, **parts: Any) -> dict[str, Any]:
        """A request (or transaction action) on the table, with its condition and placeholders."""
        request: dict[str, Any] = {"TableName": self.table, **parts}
        if condition is not None:
            request["ConditionExpression"] = condition.render(names)
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        return {**request, **names.params()}

    def delete(self, key: Key) -> None:
        """Delete an item, whether or not it is there (a conditional delete is a `transact` of one
        `Delete`: its token makes a retry after it applied answer success, not "condition failed")."""
        self.call("delete_item", TableName=self.table, Key=encode_item(key))

    # -- many items -----------------------------------------------------------------------------------
    def transact(self, actions: Sequence[Action]) -> None:
        """All actions or none (at most 100). Raises TransactionCancelled when a condition failed."""
        stamp = uuid.uuid4().hex
        items = [self._action(action, stamp) for action in actions]
        try:
            self.call("transact_write_items", TransactItems=items, ClientRequestToken=stamp)
        except TransactionCancelled as exc:
            # An emulator that ignores the token re-runs an applied transaction and fails its own
            # conditions: the stamp on a failed action's item says the first run went through.
            if any(exc.failed(i) and _ours(exc.item(i), stamp) for i in range(len(actions))):
                return
            raise

    def _action(self, action: Action, stamp: str) -> dict[str, Any]:
        names = Placeholders()
        parts: dict[str, Any] = (
            {"Item": encode_item({**action.target, WRITE_ID: stamp})}
            if action.kind == "Put"
            else {"Key": encode_item(action.target)}
        )
        if action.update is not None:
            parts["UpdateExpression"] = _stamped(action.update, stamp).render(names)
        return {action.kind: self._request(names, action.condition, **parts)}

    def batch_write(self, *, puts: Iterable[Item] = (), deletes: Iterable[Key] = ()) -> int:
        """Unconditional puts and deletes, 25 a call, unprocessed items retried with backoff.
        Returns how many were written; `StorageUnavailable` when DynamoDB keeps leaving some unprocessed
        (what was written stays written: these writes are idempotent, a repeat finishes the job)."""
        requests = [{"PutRequest": {"Item": encode_item(i)}} for i in puts]
        requests += [{"DeleteRequest": {"Key": encode_item(k)}} for k in deletes]
        for i in range(0, len(requests), _BATCH_WRITE):
            for _ in self._until_processed(
                "batch_write_item", {self.table: requests[i : i + _BATCH_WRITE]}, "UnprocessedItems"
            ):
                pass
        return len(requests)

    def delete_found(self, key: Cond, *, spare: Key | None = None, workers: int = 8) -> int:
        """Delete every item a Query finds (all but `spare`), in parallel batches; returns how many."""
        batches: list[list[Key]] = []
        for page in self.query_all(key, attributes=("pk", "sk")):
            found = [k for k in page.items if k != spare]
            batches += [found[i : i + _BATCH_WRITE] for i in range(0, len(found), _BATCH_WRITE)]
        if not batches:
            return 0
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(batches))) as pool:
            return sum(pool.map(lambda batch: self.batch_write(deletes=batch), batches))

    def _until_processed(self, operation: str, pending: dict[str, Any], unprocessed: str) -> Iterator[Any]:
        """Call a batch operation until DynamoDB has processed every part of it (what it leaves,
        `unprocessed`, is sent again with backoff), yielding each answer; then `StorageUnavailable`."""
        for attempt in range(self.attempts + 2):
            out = self.call(operation, RequestItems=pending)
            yield out
            pending = out.get(unprocessed) or {}
            if not pending:
                return
            self.sleep(backoff_seconds(attempt, base=0.05))
        raise StorageUnavailable("the database is busy, retry shortly", reason=unprocessed)


def _projection(names: Placeholders, attributes: Sequence[str]) -> dict[str, Any]:
    return {"ProjectionExpression": ", ".join(names.name(a) for a in attributes)} if attributes else {}


def _stamped(update: Update, stamp: str) -> Update:
    return update.copy().set(**{WRITE_ID: stamp})


def _ours(item: Mapping[str, Any] | None, stamp: str) -> bool:
    return item is not None and item.get(WRITE_ID) == stamp


class _Transient(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _translate(exc: Any) -> Exception:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code == "ConditionalCheckFailedException":
        raw = exc.response.get("Item")
        return ConditionFailed(decode_item(raw) if raw else None)
    if code == "TransactionCanceledException":
        details = exc.response.get("CancellationReasons", [])
        reasons = tuple(r.get("Code", "None") for r in details)
        if not reasons:  # some emulators only put the reasons in the message
            message = error.get("Message", "")
            inner = message[message.find("[") + 1 : message.rfind("]")] if "[" in message else ""
            reasons = tuple(part.strip() for part in inner.split(",") if part.strip())
        items = tuple(decode_item(r["Item"]) if r.get("Item") else None for r in details)
        return TransactionCancelled(reasons, items)
    if code in _TRANSIENT:
        return _Transient(code)
    return StorageError("a storage operation failed", reason=code)
