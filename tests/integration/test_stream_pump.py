"""The local event source mapping (infra.local.stream_pump): Lambda's retry semantics with partial
batch responses, bisecting, the dead-letter record, record age and LATEST; then the whole path as
`make run` wires it: embedded DynamoDB (moto server) + offline model + the app + the pump's thread."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from infra.local.embedded_dynamodb import EmbeddedDynamoDB
from infra.local.stream_pump import StreamPump, StreamSource
from infra.local.table import create_table
from shelfwise.entry.titles import make_handler
from shelfwise.storage.codec import encode_item
from shelfwise.storage.items import ConversationItem
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_settings

TABLE = "shelfwise-pump"
SOURCE = StreamSource.from_template("TitleFunction")
PASS_EVERYTHING = dataclasses.replace(SOURCE, filters=dataclasses.replace(SOURCE.filters, patterns=()))


@pytest.fixture(scope="module")
def db() -> Iterator[EmbeddedDynamoDB]:
    with EmbeddedDynamoDB() as embedded:
        yield embedded


@pytest.fixture
def table(db: EmbeddedDynamoDB) -> Iterator[Any]:
    client = boto3.client("dynamodb", endpoint_url=db.endpoint_url, region_name="us-east-1")
    create_table(client, TABLE)
    yield client
    client.delete_table(TableName=TABLE)


def put(client: Any, n: int) -> None:
    client.put_item(TableName=TABLE, Item=encode_item({"pk": f"ITEM#{n}", "sk": "X", "n": n}))


def n_of(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["NewImage"]["n"]["N"])


def seq(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


class Recorder:
    """A handler that fails the records named in `fail` (n -> how many more times), and records
    every batch it is given."""

    def __init__(self, fail: dict[int, int] | None = None, *, raise_on: set[int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.raise_on = raise_on or set()
        self.batches: list[list[int]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.get_remaining_time_in_millis() > 0
        assert context.function_name == "TitleFunction"
        records = event["Records"]
        self.batches.append([n_of(r) for r in records])
        if self.raise_on & {n_of(r) for r in records}:
            raise RuntimeError("the function crashed")
        failures = []
        for record in records:
            left = self.fail.get(n_of(record), 0)
            if left:
                self.fail[n_of(record)] = left - 1
                failures.append({"itemIdentifier": seq(record)})
        return {"batchItemFailures": failures}


def pump_for(db: EmbeddedDynamoDB, handler: Any, **source: Any) -> StreamPump:
    return StreamPump(
        endpoint_url=db.endpoint_url,
        table_name=TABLE,
        handler=handler,
        source=dataclasses.replace(PASS_EVERYTHING, **source),
        retry_delay=0.01,
    ).open()


def drain(pump: StreamPump) -> None:
    for _ in range(200):
        pump.pump_once()
        if not pump.pending:
            pump.pump_once()
            if not pump.pending:
                return
        time.sleep(0.01)
    raise AssertionError("the pump did not drain")


@pytest.mark.usefixtures("table")
def test_the_template_is_the_source_of_the_mapping() -> None:
    assert (SOURCE.batch_size, SOURCE.starting_position) == (10, "LATEST")
    assert (SOURCE.max_retry_attempts, SOURCE.max_record_age_seconds) == (3, 3600)
    assert SOURCE.bisect_on_error is True
    assert SOURCE.report_batch_item_failures is True
    assert len(SOURCE.filters.patterns) == 2
    assert SOURCE.timeout_seconds == 60


def test_latest_then_a_partial_failure_retries_from_the_failed_record(
    db: EmbeddedDynamoDB, table: Any
) -> None:
    put(table, 0)  # before the pump: LATEST never delivers it
    recorder = Recorder(fail={3: 2})
    pump = pump_for(db, recorder)
    for n in range(1, 6):
        put(table, n)
    drain(pump)
    # [1..5] -> 3 fails: 1, 2 are checkpointed; [3, 4, 5] again (twice), then all good.
    assert recorder.batches == [[1, 2, 3, 4, 5], [3, 4, 5], [3, 4, 5]]
    assert (pump.stats.retries, pump.stats.items_failed, pump.stats.dead_lettered) == (2, 2, 0)


def test_batches_are_at_most_batch_size(db: EmbeddedDynamoDB, table: Any) -> None:
    recorder = Recorder()
    pump = pump_for(db, recorder, batch_size=3)
    for n in range(1, 8):
        put(table, n)
    drain(pump)
    assert recorder.batches == [[1, 2, 3], [4, 5, 6], [7]]


def test_after_the_retries_the_batch_is_dead_lettered_and_the_stream_moves_on(
    db: EmbeddedDynamoDB, table: Any
) -> None:
    recorder = Recorder(fail={2: 1000})
    pump = pump_for(db, recorder)
    for n in range(1, 4):
        put(table, n)
    drain(pump)
    assert recorder.batches == [[1, 2, 3]] + [[2, 3]] * SOURCE.max_retry_attempts
    (message,) = pump.dead_letters
    info = message["DDBStreamBatchInfo"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == SOURCE.max_retry_attempts + 1
    assert info["batchSize"] == 2
    assert info["streamArn"] == pump.stream_arn
    assert info["startSequenceNumber"] < info["endSequenceNumber"]
    assert pump.stats.dead_lettered == 2
    put(table, 4)
    drain(pump)
    assert recorder.batches[-1] == [4]


def test_a_crashing_function_is_bisected_down_to_the_poisoned_record(
    db: EmbeddedDynamoDB, table: Any
) -> None:
    recorder = Recorder(raise_on={3})
    pump = pump_for(db, recorder)
    for n in range(1, 5):
        put(table, n)
    drain(pump)
    # Halved on each crash ([1, 2] goes through), down to the poisoned record alone, retried until
    # the retries run out (splitting does not count as a retry), then dead-lettered; 4 goes on.
    assert recorder.batches == [[1, 2, 3, 4], [1, 2], [3, 4]] + [[3]] * SOURCE.max_retry_attempts + [[4]]
    crashed = Counter(n for batch in recorder.batches for n in batch)[3]
    assert pump.stats.function_errors == crashed
    assert [m["DDBStreamBatchInfo"]["batchSize"] for m in pump.dead_letters] == [1]


def test_records_older_than_the_maximum_age_are_dead_lettered_unseen(
    db: EmbeddedDynamoDB, table: Any
) -> None:
    recorder = Recorder()
    pump = pump_for(db, recorder, max_record_age_seconds=0)
    put(table, 1)
    time.sleep(1.1)
    drain(pump)
    assert recorder.batches == []
    assert pump.dead_letters[0]["requestContext"]["condition"] == "RecordAgeExceeded"


def test_a_new_conversation_is_titled_through_the_running_pump(
    db: EmbeddedDynamoDB, table: Any, model: Any
) -> None:
    """What `make run` does: the app on the embedded database, the pump's thread calling the real
    TitleFunction handler; the title shows up on GET /conversations shortly after the first answer,
    a renamed conversation keeps its name, and a broken utility model changes nothing for the chat."""
    settings = make_settings(TABLE, dynamodb_endpoint_url=db.endpoint_url, **chat_settings(model))
    app = create_app(settings)
    headers = bearer("ada")
    with (
        TestClient(app) as client,
        StreamPump(
            endpoint_url=db.endpoint_url, table_name=TABLE, handler=make_handler(lambda: app.state.services)
        ) as pump,
    ):

        def listed() -> dict[str, dict[str, Any]]:
            return {c["id"]: c for c in client.get("/conversations", headers=headers).json()["items"]}

        def ask(conversation_id: str, content: str) -> float:
            response = client.post(
                f"/conversations/{conversation_id}/messages",
                json={"content": content},
                headers={**headers, "Accept": "application/json"},
            )
            assert response.status_code == 200, response.text
            return time.perf_counter()

        def wait_for_title(conversation_id: str, timeout: float = 5.0) -> float:
            deadline = time.perf_counter() + timeout
            while not listed()[conversation_id]["title"]:
                assert time.perf_counter() < deadline, "no title within 5 s of the answer"
                time.sleep(0.02)
            return time.perf_counter()

        fresh = client.post("/conversations", json={}, headers=headers).json()["id"]
        answered = ask(fresh, "How many black hoodies in M do we have?")
        latency = wait_for_title(fresh) - answered
        assert listed()[fresh]["title"] == "Black hoodie stock check"
        assert latency < 3.0, f"title {latency:.2f} s after the answer"

        renamed = client.post("/conversations", json={}, headers=headers).json()["id"]
        client.patch(f"/conversations/{renamed}", json={"title": "My hoodie question"}, headers=headers)
        ask(renamed, "What is low on stock?")

        model.fail("server_error", times=10, task="title")
        broken = client.post("/conversations", json={}, headers=headers).json()["id"]
        ask(broken, "What is the inventory worth?")
        wait_for_title(broken)
        assert pump.wait_until_idle(timeout=10)

        final = listed()
        assert (final[renamed]["title"], final[renamed]["title_source"]) == ("My hoodie question", "user")
        assert (final[broken]["title"], final[broken]["title_source"]) == (
            "What is the inventory worth",
            "generated",
        )
        item = table.get_item(TableName=TABLE, Key=encode_item(ConversationItem.key("ada", broken)))["Item"]
        assert item["title_generated_by"] == {"S": "fallback"}
        assert pump.stats.dead_lettered == 0
        assert pump.stats.items_failed == 0
        print(f"\ntitle latency after the first answer: {latency * 1000:.0f} ms")
