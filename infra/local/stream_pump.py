"""The local stand-in for a DynamoDB event source mapping: table stream -> filter -> function handler.

moto runs no Lambda without Docker, so the local stack pumps the embedded table's stream itself and
calls TitleFunction's real handler in-process, the way the event source mapping would:

- the mapping's settings come from template.yaml's own `Events` entry (BatchSize, FilterCriteria,
  MaximumRetryAttempts, MaximumRecordAgeInSeconds, BisectBatchOnFunctionError, FunctionResponseTypes,
  StartingPosition) and the function's Timeout and MemorySize, so the two cannot drift;
- each record is turned into Lambda's exact shape (infra.local.stream_records) and the template's
  FilterCriteria are applied to it (infra.local.event_filter); records that match none are dropped;
- records go to the handler in order, per shard, in batches; a `batchItemFailures` answer
  checkpoints the records before the first failed one and retries from it (the later ones come
  again too, as on Lambda), with a short backoff; an exception from the handler retries the batch,
  halved when bisecting is on; after MaximumRetryAttempts retries the batch is dropped and a message
  shaped like Lambda's on-failure record (`DDBStreamBatchInfo`) is logged and kept in
  `dead_letters`, as the SQS dead-letter queue would hold it;
- records older than MaximumRecordAgeInSeconds are dead-lettered without being delivered.

On moto (the fallback database) a cancelled transaction restores a deep copy of the whole table, so
an iterator taken before it reads a stream shard nobody writes to any more: GetRecords answers `[]`
forever. `retake_idle_seconds` re-takes an idle shard's iterator after the last sequence number read
(from TRIM_HORIZON, skipping what came before the pump opened, when nothing was read yet), so titles
keep coming; DynamoDB Local and DynamoDB need no such help.

Not emulated: MaximumBatchingWindowInSeconds (locally every poll delivers what it read, so titles
show up at once), ParallelizationFactor (one batch at a time per shard) and tumbling windows.

    with StreamPump(endpoint_url=db.endpoint_url, table_name="shelfwise-local",
                    handler=make_handler(lambda: services)) as pump:
        ...                     # writes to the table; the handler sees the matching records
        pump.wait_until_idle()  # everything written so far has been delivered (tests)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.local.event_filter import FilterCriteria
from infra.local.stream_records import lambda_event, to_lambda_record
from infra.local.template import load_template

Handler = Callable[[dict[str, Any], Any], Any]

DEFAULT_FUNCTION = "TitleFunction"
_LOG = logging.getLogger("shelfwise.stream_pump")


# ---------------------------------------------------------------------------------------------------
# The event source mapping, as template.yaml defines it


@dataclass(frozen=True)
class StreamSource:
    """One DynamoDB event of one function in template.yaml, with Lambda's defaults filled in."""

    function: str
    event: str
    batch_size: int
    starting_position: str
    max_retry_attempts: int  # -1: until the record expires (Lambda's default)
    max_record_age_seconds: int  # -1: never too old (Lambda's default)
    bisect_on_error: bool
    report_batch_item_failures: bool
    filters: FilterCriteria
    timeout_seconds: int
    memory_mb: int

    @classmethod
    def from_template(
        cls,
        function: str = DEFAULT_FUNCTION,
        event: str | None = None,
        template: dict[str, Any] | None = None,
    ) -> StreamSource:
        template = template if template is not None else load_template()
        resources = template["Resources"]
        if function not in resources:
            raise KeyError(f"template.yaml has no {function}")
        props = resources[function]["Properties"]
        globals_ = (template.get("Globals") or {}).get("Function") or {}
        events = {
            name: spec for name, spec in (props.get("Events") or {}).items() if spec.get("Type") == "DynamoDB"
        }
        if event is None:
            if len(events) != 1:
                raise ValueError(f"{function} has {len(events)} DynamoDB events; name the one to pump")
            event = next(iter(events))
        spec = events[event]["Properties"]
        return cls(
            function=function,
            event=event,
            batch_size=int(spec.get("BatchSize", 100)),
            starting_position=str(spec.get("StartingPosition", "LATEST")),
            max_retry_attempts=int(spec.get("MaximumRetryAttempts", -1)),
            max_record_age_seconds=int(spec.get("MaximumRecordAgeInSeconds", -1)),
            bisect_on_error=bool(spec.get("BisectBatchOnFunctionError", False)),
            report_batch_item_failures="ReportBatchItemFailures" in (spec.get("FunctionResponseTypes") or []),
            filters=FilterCriteria.from_properties(spec.get("FilterCriteria")),
            timeout_seconds=int(props.get("Timeout", globals_.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
        )


@dataclass
class LocalLambdaContext:
    """What Powertools and the handler read from Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass
class PumpStats:
    records_read: int = 0
    records_matched: int = 0
    invocations: int = 0
    function_errors: int = 0
    items_failed: int = 0  # records named in batchItemFailures
    retries: int = 0
    dead_lettered: int = 0  # records dropped after the retries (or too old)
    last_invocation_ms: float = 0.0


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    pending: deque[dict[str, Any]] = field(default_factory=deque)
    last_sequence: str | None = None
    iterator_taken: float = field(default_factory=time.monotonic)
    rewound: bool = False  # re-taken from TRIM_HORIZON in place of a LATEST iterator
    attempts: int = 0  # failed deliveries of the batch at the head of `pending`
    batch_limit: int | None = None  # set while bisecting
    not_before: float = 0.0


class StreamPump:
    """Poll a table's stream and feed matching records to a Lambda handler (see the module doc).

    endpoint_url / table_name  the DynamoDB endpoint (None: boto3's default) and the table
    handler                    `handler(event, context)`; default: TitleFunction's `lambda_handler`
                               (settings from the environment). `make_handler(lambda: services)`
                               from shelfwise.entry.titles runs the same handler over given services.
    function                   whose DynamoDB event in template.yaml to emulate (or pass `source`)
    poll_interval / retry_delay seconds between polls / before a retry (times the attempt number)
    client_kwargs              extra boto3 client arguments (credentials, ...)
    on_record                  called with every record read and whether the filters passed it
    retake_idle_seconds        re-take an iterator that read nothing for this long (moto; see above)

    `start()` returns once the shard iterators are taken, so every write after it is delivered
    (StartingPosition LATEST); `stop()` ends the polling thread (stop it before the database). Or use
    it as a context manager. `stats`, `dead_letters`, `pending` and `wait_until_idle()` tell what it
    did. Without the thread, `open()` then `pump_once()` polls step by step (tests).
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        table_name: str,
        handler: Handler | None = None,
        region: str = "us-east-1",
        function: str = DEFAULT_FUNCTION,
        source: StreamSource | None = None,
        poll_interval: float = 0.1,
        retry_delay: float = 0.2,
        shard_refresh_seconds: float = 5.0,
        client_kwargs: Mapping[str, Any] | None = None,
        on_record: Callable[[dict[str, Any], bool], None] | None = None,
        retake_idle_seconds: float | None = None,
    ) -> None:
        self.table_name = table_name
        self.region = region
        self.source = source or StreamSource.from_template(function)
        self._handler = handler
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.shard_refresh_seconds = shard_refresh_seconds
        kwargs: dict[str, Any] = {"region_name": region, **(client_kwargs or {})}
        if endpoint_url is not None:
            kwargs["endpoint_url"] = endpoint_url
        self._client_kwargs = kwargs
        self._on_record = on_record  # sees every record read, with whether the filters let it through
        self.retake_idle_seconds = retake_idle_seconds
        self._opened_at = 0.0  # epoch seconds: records before it are not ours (LATEST)
        self.stats = PumpStats()
        self.dead_letters: list[dict[str, Any]] = []
        self.stream_arn = ""
        self._shards: dict[str, _Shard] = {}
        self._closed_shards: set[str] = set()
        self._shards_checked = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cycle = 0
        self._cycle_done = threading.Condition()
        self._ddb: Any = None
        self._streams: Any = None

    # -- life cycle ---------------------------------------------------------------------------------
    @property
    def handler(self) -> Handler:
        if self._handler is None:
            from shelfwise.entry.titles import lambda_handler

            self._handler = lambda_handler
        return self._handler

    def open(self) -> StreamPump:
        """Find the stream and take an iterator per open shard (without starting the thread)."""
        import boto3

        self._ddb = boto3.client("dynamodb", **self._client_kwargs)
        self._streams = boto3.client("dynamodbstreams", **self._client_kwargs)
        table = self._ddb.describe_table(TableName=self.table_name)["Table"]
        arn = table.get("LatestStreamArn")
        if not arn:
            raise RuntimeError(f"table {self.table_name} has no stream: template.yaml's Table should")
        self.stream_arn = str(arn)
        self._opened_at = time.time()
        self._refresh_shards(initial=True)
        return self

    def start(self) -> StreamPump:
        if self._streams is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="stream-pump", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def __enter__(self) -> StreamPump:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def pending(self) -> int:
        """Records read and matched but not yet delivered (or being retried)."""
        return sum(len(s.pending) for s in list(self._shards.values()))

    def wait_until_idle(self, timeout: float = 10.0) -> bool:
        """Wait until two full polls have passed since the call and nothing is pending: whatever was
        written before the call has been read, filtered and delivered (or dead-lettered)."""
        deadline = time.monotonic() + timeout
        with self._cycle_done:
            target = self._cycle + 2
            while True:
                if self._cycle >= target and not self.pending:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cycle_done.wait(min(left, 0.05))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pump_once()
            except Exception:
                if self._stop.is_set():
                    return  # the database went away first: we are shutting down
                _LOG.exception("stream pump: polling failed; trying again")
                self._stop.wait(1.0)
            self._stop.wait(self.poll_interval)

    # -- one pass -----------------------------------------------------------------------------------
    def pump_once(self) -> int:
        """Read every shard once, then deliver what is due. Returns the records read."""
        if self._streams is None:
            self.open()
        if time.monotonic() - self._shards_checked > self.shard_refresh_seconds:
            self._refresh_shards(initial=False)
        read = 0
        for shard in list(self._shards.values()):
            read += self._read(shard)
            self._deliver(shard)
            if shard.iterator is None and not shard.pending:
                self._closed_shards.add(shard.shard_id)
                del self._shards[shard.shard_id]
        with self._cycle_done:
            self._cycle += 1
            self._cycle_done.notify_all()
        return read

    def _refresh_shards(self, *, initial: bool) -> None:
        self._shards_checked = time.monotonic()
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id in self._shards or shard_id in self._closed_shards:
                continue
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            if initial and closed and self.source.starting_position == "LATEST":
                self._closed_shards.add(shard_id)
                continue
            # Shards that appear later are read from their start: their records are all new.
            position = self.source.starting_position if initial else "TRIM_HORIZON"
            iterator = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]
            self._shards[shard_id] = _Shard(shard_id, iterator)

    def _read(self, shard: _Shard) -> int:
        if shard.iterator is None:
            return 0
        from botocore.exceptions import ClientError

        try:
            out = self._streams.get_records(ShardIterator=shard.iterator, Limit=1000)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "ExpiredIteratorException",
                "TrimmedDataAccessException",
            ):
                raise
            shard.iterator = self._reopen(shard)
            return 0
        shard.iterator = out.get("NextShardIterator")
        records = out.get("Records", [])
        if records:
            shard.iterator_taken = time.monotonic()
        elif (
            shard.iterator is not None
            and self.retake_idle_seconds is not None
            and time.monotonic() - shard.iterator_taken >= self.retake_idle_seconds
        ):
            shard.iterator = self._reopen(shard)
        for raw in records:
            record = to_lambda_record(raw, stream_arn=self.stream_arn, region=self.region)
            before_open = record["dynamodb"]["ApproximateCreationDateTime"] < int(self._opened_at)
            shard.last_sequence = record["dynamodb"]["SequenceNumber"]
            if shard.rewound and before_open:
                continue  # re-read from TRIM_HORIZON: written before we opened (LATEST skipped it)
            shard.rewound = False
            self.stats.records_read += 1
            matched = self.source.filters.matches(record)
            if matched:
                self.stats.records_matched += 1
                shard.pending.append(record)
            if self._on_record is not None:
                self._on_record(record, matched)
        return len(records)

    def _reopen(self, shard: _Shard) -> str:
        shard.iterator_taken = time.monotonic()
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if shard.last_sequence:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_sequence)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            shard.rewound = self.source.starting_position == "LATEST"
        return str(self._streams.get_shard_iterator(**kwargs)["ShardIterator"])

    # -- delivery -----------------------------------------------------------------------------------
    def _deliver(self, shard: _Shard) -> None:
        while shard.pending and time.monotonic() >= shard.not_before and not self._stop.is_set():
            self._expire(shard)
            if not shard.pending:
                return
            size = min(self.source.batch_size, shard.batch_limit or self.source.batch_size)
            batch = [shard.pending[i] for i in range(min(size, len(shard.pending)))]
            failed_at = self._invoke(batch)
            if failed_at is None:
                for _ in batch:
                    shard.pending.popleft()
                shard.attempts, shard.batch_limit = 0, None
                continue
            index, function_error = failed_at
            for _ in range(index):  # checkpointed: everything before the first failure
                shard.pending.popleft()
            shard.attempts += 1
            retried = batch[index:]
            if function_error and self.source.bisect_on_error and len(retried) > 1:
                shard.batch_limit = max(1, len(retried) // 2)
            limit = self.source.max_retry_attempts
            if limit >= 0 and shard.attempts > limit:
                for _ in retried:
                    shard.pending.popleft()
                self._dead_letter(shard, retried, "RetryAttemptsExhausted", shard.attempts)
                shard.attempts, shard.batch_limit = 0, None
                continue
            self.stats.retries += 1
            shard.not_before = time.monotonic() + self.retry_delay * shard.attempts
            return

    def _invoke(self, batch: list[dict[str, Any]]) -> tuple[int, bool] | None:
        """Call the handler. None: all done; else (index of the first record to retry, whether the
        function itself failed)."""
        context = LocalLambdaContext(
            function_name=self.source.function,
            memory_limit_in_mb=self.source.memory_mb,
            invoked_function_arn=f"arn:aws:lambda:{self.region}:123456789012:function:{self.source.function}",
            aws_request_id=str(uuid.uuid4()),
            timeout_seconds=self.source.timeout_seconds,
            log_group_name=f"/aws/lambda/{self.source.function}",
        )
        self.stats.invocations += 1
        started = time.perf_counter()
        try:
            response = self.handler(lambda_event(batch), context)
        except Exception:
            self.stats.function_errors += 1
            _LOG.exception("stream pump: %s failed on a batch of %d", self.source.function, len(batch))
            return 0, True
        finally:
            self.stats.last_invocation_ms = (time.perf_counter() - started) * 1000
        if not self.source.report_batch_item_failures:
            return None
        failures = (response.get("batchItemFailures") if isinstance(response, dict) else None) or []
        if not failures:
            return None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in sequences:  # Lambda treats a bad identifier as a failed batch
                _LOG.warning("stream pump: unknown itemIdentifier %r: the whole batch is retried", identifier)
                return 0, False
            indexes.append(sequences.index(identifier))
        self.stats.items_failed += len(indexes)
        return min(indexes), False

    def _expire(self, shard: _Shard) -> None:
        limit = self.source.max_record_age_seconds
        if limit < 0:
            return
        now = time.time()
        expired: list[dict[str, Any]] = []
        while shard.pending and now - shard.pending[0]["dynamodb"]["ApproximateCreationDateTime"] > limit:
            expired.append(shard.pending.popleft())
        if expired:
            self._dead_letter(shard, expired, "RecordAgeExceeded", shard.attempts)
            shard.attempts, shard.batch_limit = 0, None

    def _dead_letter(
        self, shard: _Shard, records: list[dict[str, Any]], condition: str, attempts: int
    ) -> None:
        """What the on-failure destination (the SQS dead-letter queue) would receive: the batch's
        position in the stream, not the records (they stay readable in the stream for 24 h)."""

        def at(record: dict[str, Any]) -> str:
            when = datetime.fromtimestamp(record["dynamodb"]["ApproximateCreationDateTime"], UTC)
            return when.isoformat().replace("+00:00", "Z")

        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self.region}:123456789012:function:{self.source.function}",
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": at(records[0]),
                "approximateArrivalOfLastRecord": at(records[-1]),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.dead_letters.append(message)
        self.stats.dead_lettered += len(records)
        _LOG.warning(
            "stream pump: %d record(s) dead-lettered (%s): %s",
            len(records),
            condition,
            [r["dynamodb"]["SequenceNumber"] for r in records],
        )
