"""Every `sam local invoke TitleFunction` payload in events/titles/ replayed through the real
`lambda_handler` (settings from the environment, as on Lambda) over a moto table holding the
conversations the records name, with the offline model as the utility model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.stream_pump import StreamSource
from infra.local.table import create_table
from shelfwise.entry import titles
from shelfwise.observability import metrics
from shelfwise.settings import get_settings
from shelfwise.storage.codec import decode_item
from shelfwise.storage.dynamo import dynamodb_client
from tests.fixtures.conversations import seed_first_exchange

EVENTS = Path(__file__).resolve().parents[2] / "events" / "titles"
TABLE = "shelfwise-title-events"
FIRST_QUESTIONS = {
    "8d2f61c04b7e4a9e9f3a5c1d7e0b2a64": "How many black hoodies in M do we have?",
    "c5e07a9d31f24b8c8e6d4f2a1b9c0e37": "What is low on stock?",
    # events/api/conversation-create.json's, asked by events/stream/message-post.json
    "c0ffee0000000000000000000000beef": "How many black Essential Tees in M do we have?",
}
# What each payload must leave behind: conversation id -> title.
EXPECTED: dict[str, dict[str, str]] = {
    "stream-batch.json": {
        "8d2f61c04b7e4a9e9f3a5c1d7e0b2a64": "Black hoodie stock check",  # a first title
        "c5e07a9d31f24b8c8e6d4f2a1b9c0e37": "Low stock review",  # a refresh
    },
    # after events/api/conversation-title.json asked for one
    "conversation-title.json": {"c0ffee0000000000000000000000beef": "Black tee stock check"},
}


class FakeContext:
    function_name = "TitleFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:TitleFunction"
    aws_request_id = "6a1f0c2e-3b4d-4e5f-8a9b-7c6d5e4f3a2b"
    log_group_name = "/aws/lambda/TitleFunction"
    log_stream_name = "2026/11/29/[$LATEST]0123456789abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


CONTEXT: Any = FakeContext()


def _clear() -> None:
    for cached in (get_settings, dynamodb_client, titles._services):
        cached.cache_clear()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, model: Any) -> Iterator[Any]:
    monkeypatch.setenv("SHELFWISE_TABLE_NAME", TABLE)
    monkeypatch.setenv("SHELFWISE_OPENAI_BASE_URL", model.base_url)
    monkeypatch.setenv("SHELFWISE_UTILITY_MODEL", "offline-utility")
    monkeypatch.setenv("SHELFWISE_LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("SHELFWISE_LLM_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "shelfwise")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "TitleFunction")
    with mock_aws():
        _clear()
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        metrics.clear_metrics()
        yield client
        _clear()


def seed(client: Any, event: dict[str, Any]) -> None:
    """The conversations as the records' NewImages show them, with their first exchange."""
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        seed_first_exchange(client, TABLE, image, FIRST_QUESTIONS[decode_item(image)["id"]])


def test_every_event_file_is_covered() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_template_filter_passes_every_record_of_the_payloads(name: str) -> None:
    filters = StreamSource.from_template("TitleFunction").filters
    event = json.loads((EVENTS / name).read_text())
    assert all(filters.matches(record) for record in event["Records"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_replays_through_the_real_handler(
    name: str, lambda_env: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    event = json.loads((EVENTS / name).read_text())
    seed(lambda_env, event)
    response = titles.lambda_handler(event, CONTEXT)
    assert response == {"batchItemFailures": []}
    for record in event["Records"]:
        key = record["dynamodb"]["Keys"]
        item = decode_item(lambda_env.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"])
        assert item["title"] == EXPECTED[name][item["id"]]
        assert item["title_source"] == "generated"
        assert "title_requested" not in item
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    emf = [r for r in records if "_aws" in r]
    generated = sum(sum(r.get("TitlesGenerated", [])) for r in emf)
    assert generated == len(event["Records"])
    assert all(r["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shelfwise" for r in emf)
    # (Powertools' Logger writes to the stdout it found at import, which capsys does not see.)
    assert [r.getMessage() for r in caplog.records].count("title generated") == len(event["Records"])
    # replayed again (at-least-once delivery): nothing changes
    assert titles.lambda_handler(event, CONTEXT) == {"batchItemFailures": []}
