"""TitleFunction against its deadline: the real `lambda_handler` (settings from the environment, as on
Lambda) over a moto table, the offline model as a slow utility model, and a Lambda context whose
remaining time runs down with the clock. However little time is left, the invocation returns before
its deadline, and every record of the batch is either titled or reported for retry: none is lost."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.table import create_table
from infra.local.template import resource
from shelfwise.entry import titles
from shelfwise.observability import metrics
from shelfwise.settings import get_settings
from shelfwise.storage.codec import decode_item
from shelfwise.storage.dynamo import dynamodb_client
from tests.fixtures.conversations import seed_first_exchange

TABLE = "shelfwise-title-deadline"
UTILITY = "offline-utility"
RECORDS = 10
COLORS = ["black", "white", "grey", "navy", "olive", "sand", "red", "blue", "green", "pink"]
# A first-title record (a turn just ended on an untitled conversation), as Lambda delivers it.
SAMPLE = json.loads(
    (Path(__file__).resolve().parents[2] / "events" / "titles" / "stream-batch.json").read_text()
)["Records"][0]
SAMPLE_ID = decode_item(SAMPLE["dynamodb"]["NewImage"])["id"]


class Deadline:
    """A Lambda context for an invocation that has `seconds` left from now."""

    function_name = "TitleFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:TitleFunction"
    aws_request_id = "0d4c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
    log_group_name = "/aws/lambda/TitleFunction"
    log_stream_name = "2026/11/29/[$LATEST]fedcba9876543210"

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def question(index: int) -> str:
    return f"How many {COLORS[index]} hoodies in M do we have?"


def conversation_id(index: int) -> str:
    return f"{index:02x}{SAMPLE_ID[2:]}"


def batch(count: int = RECORDS) -> dict[str, Any]:
    """`count` records, each about its own conversation, in stream order."""
    records = []
    for index in range(count):
        record = json.loads(json.dumps(SAMPLE).replace(SAMPLE_ID, conversation_id(index)))
        record["eventID"] = f"{index:02x}{SAMPLE['eventID'][2:]}"
        record["dynamodb"]["SequenceNumber"] = str(int(SAMPLE["dynamodb"]["SequenceNumber"]) + index)
        records.append(record)
    return {"Records": records}


def _clear() -> None:
    for cached in (get_settings, dynamodb_client, titles._services):
        cached.cache_clear()


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, model: Any) -> Iterator[Any]:
    monkeypatch.setenv("SHELFWISE_TABLE_NAME", TABLE)
    monkeypatch.setenv("SHELFWISE_OPENAI_BASE_URL", model.base_url)
    monkeypatch.setenv("SHELFWISE_UTILITY_MODEL", UTILITY)
    monkeypatch.setenv("SHELFWISE_LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("SHELFWISE_LLM_TIMEOUT_SECONDS", "15")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "shelfwise")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "TitleFunction")
    with mock_aws():
        _clear()
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        for record in batch()["Records"]:
            index = int(decode_item(record["dynamodb"]["NewImage"])["id"][:2], 16)
            seed_first_exchange(client, TABLE, record["dynamodb"]["NewImage"], question(index))
        metrics.clear_metrics()
        yield client
        _clear()


def conversation(client: Any, record: dict[str, Any]) -> dict[str, Any]:
    key = record["dynamodb"]["Keys"]
    return decode_item(client.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"])


def invoke(event: dict[str, Any], seconds: float) -> tuple[dict[str, Any], float, float]:
    """The handler's response, how long it took and how much of its time it had left."""
    context = Deadline(seconds)
    started = time.monotonic()
    response = titles.lambda_handler(event, context)  # type: ignore[arg-type]
    return response, time.monotonic() - started, context.deadline - time.monotonic()


def titled_by(client: Any, event: dict[str, Any]) -> list[str | None]:
    return [conversation(client, r).get("title_generated_by") for r in event["Records"]]


def title_calls(model: Any) -> int:
    return sum(1 for r in model.requests() if r["task"] == "title")


def test_a_roomy_invocation_gets_the_models_titles(table: Any, model: Any) -> None:
    model.token_delay_ms = 50  # a title in about 0.2 s
    event = batch()
    response, took, _ = invoke(event, 60)
    assert response == {"batchItemFailures": []}
    assert titled_by(table, event) == [UTILITY] * RECORDS
    assert conversation(table, event["Records"][0])["title"] == "Black hoodie stock check"
    assert title_calls(model) == RECORDS
    assert took < 10, took


def test_a_cold_process_setting_up_its_model_client_does_not_spend_the_first_titles_budget(
    table: Any, model: Any, monkeypatch: pytest.MonkeyPatch, slow_key_read: Callable[[float], None]
) -> None:
    """A cold TitleFunction imports openai and reads its key before its first model call (seconds
    under emulation: the sam local invoke on CI titled its first record with the fallback); the
    record's model budget is what is left after that, not before."""
    slow_key_read(1.5)  # longer than the record's model budget below
    monkeypatch.setattr(titles, "MODEL_BUDGET_SECONDS", 1.0)
    event = batch(1)
    response, _, left = invoke(event, 20)
    assert response == {"batchItemFailures": []}
    assert titled_by(table, event) == [UTILITY]
    assert left > 0


def test_five_seconds_for_ten_slow_titles_names_every_conversation_before_the_deadline(
    table: Any, model: Any
) -> None:
    model.token_delay_ms = 1000  # a title takes the model about 4 s
    event = batch()
    response, took, left = invoke(event, 5)
    assert left > 1, f"returned {left:.2f} s before its deadline, after {took:.2f} s"
    # Nothing to retry: each conversation is named now, by the user's own first words when there
    # was no time to ask the model.
    assert response == {"batchItemFailures": []}
    for index, record in enumerate(event["Records"]):
        item = conversation(table, record)
        assert (item["title"], item["title_source"]) == (
            f"How many {COLORS[index]} hoodies in M",
            "generated",
        )
        assert item["title_generated_by"] == "fallback"


def test_a_model_that_never_answers_still_lets_the_batch_end_in_time(table: Any, model: Any) -> None:
    model.stall_seconds = 60
    model.fail("timeout", times=RECORDS, task="title")
    event = batch()
    response, took, left = invoke(event, 8)
    assert left > 1, f"returned {left:.2f} s before its deadline, after {took:.2f} s"
    assert response == {"batchItemFailures": []}
    assert titled_by(table, event) == ["fallback"] * RECORDS
    assert title_calls(model) >= 1  # the time the first records left was used to try the model


def test_what_does_not_fit_is_reported_and_titled_on_redelivery(
    table: Any, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = titles._services().titles.repo
    read = repo.read

    def slow_read(*args: Any, **kwargs: Any) -> Any:  # a table answering slowly
        time.sleep(0.4)
        return read(*args, **kwargs)

    monkeypatch.setattr(repo, "read", slow_read)
    event = batch()
    response, took, left = invoke(event, 5)
    assert left > 1, f"returned {left:.2f} s before its deadline, after {took:.2f} s"
    sequence = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed, "the slow table left no time for some records"
    first = sequence.index(failed[0])
    assert first > 0, "the records that fitted were titled"
    assert failed == sequence[first:]  # Lambda redelivers from the first: no gap
    by = titled_by(table, event)
    assert by[:first] == ["fallback"] * first
    assert by[first:] == [None] * (RECORDS - first)  # untouched: not half-done, not lost

    # Lambda's retry: from the first reported record on, with a whole invocation's time.
    monkeypatch.setattr(repo, "read", read)
    retry = {"Records": event["Records"][first:]}
    response, _, _ = invoke(retry, 60)
    assert response == {"batchItemFailures": []}
    assert titled_by(table, event) == ["fallback"] * first + [UTILITY] * (RECORDS - first)


def test_a_full_batch_at_the_start_of_an_invocation_leaves_each_record_room_for_the_model() -> None:
    """With the template's timeout and batch size, every record of a full batch can wait several
    seconds for the model (a batch size raised too far would give every conversation the fallback)."""
    props = resource("TitleFunction")["Properties"]
    batch_size = props["Events"]["TableStream"]["Properties"]["BatchSize"]
    share = titles.title_budget(props["Timeout"], batch_size)
    assert share >= 5, f"{share:.1f} s per record for {batch_size} records in {props['Timeout']} s"
