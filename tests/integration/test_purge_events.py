"""Every `sam local invoke PurgeFunction` payload in events/purge/ replayed through the real
`lambda_handler` (settings from the environment, as on Lambda) over a moto table holding the hidden
product the record names, its variants and its stock history."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.stream_pump import StreamSource
from infra.local.table import create_table
from shelfwise.entry import purge
from shelfwise.observability import metrics
from shelfwise.settings import get_settings
from shelfwise.storage.codec import decode_item, encode_item
from shelfwise.storage.dynamo import dynamodb_client
from shelfwise.storage.items import VariantItem

EVENTS = Path(__file__).resolve().parents[2] / "events" / "purge"
TABLE = "shelfwise-purge-events"


class FakeContext:
    function_name = "PurgeFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:PurgeFunction"
    aws_request_id = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
    log_group_name = "/aws/lambda/PurgeFunction"
    log_stream_name = "2026/11/29/[$LATEST]0123456789abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def _clear() -> None:
    for cached in (get_settings, dynamodb_client, purge._services):
        cached.cache_clear()


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SHELFWISE_TABLE_NAME", TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise")
    with mock_aws():
        _clear()
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        metrics.clear_metrics()  # what other tests' services added, unflushed
        yield client
        _clear()


def _names() -> list[str]:
    return sorted(p.name for p in EVENTS.glob("*.json"))


def test_there_are_payloads() -> None:
    assert _names() == ["batch-recorded.json", "product-hidden.json"]


@pytest.mark.parametrize("name", _names())
def test_the_template_filter_passes_every_record(name: str) -> None:
    filters = StreamSource.from_template("PurgeFunction").filters
    assert all(filters.matches(r) for r in json.loads((EVENTS / name).read_text())["Records"])


def test_a_bulk_adjustments_record_files_its_lines(table: Any) -> None:
    event = json.loads((EVENTS / "batch-recorded.json").read_text())
    context: Any = FakeContext()
    for _ in range(2):  # the stream may deliver a record twice: the same items again
        assert purge.lambda_handler(event, context) == {"batchItemFailures": []}
    filed = table.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :adjustment)",
        ExpressionAttributeValues={":pk": {"S": "PRODUCT#TE-0001"}, ":adjustment": {"S": "ADJUSTMENT#"}},
    )["Items"]
    lines = sorted(
        (a["size"], a["quantity_before"], a["quantity_after"], a["reason"]) for a in map(decode_item, filed)
    )
    assert lines == [("L", 14, 20, "received"), ("M", 17, 29, "received")]


@pytest.mark.parametrize("name", ["product-hidden.json"])
def test_event_replays_through_the_real_handler(
    name: str, table: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    event = json.loads((EVENTS / name).read_text())
    for record in event["Records"]:
        product = decode_item(record["dynamodb"]["NewImage"])
        table.put_item(TableName=TABLE, Item=record["dynamodb"]["NewImage"])
        sku = product["sku"]
        for size in ("S", "M"):
            table.put_item(
                TableName=TABLE,
                Item=encode_item({**VariantItem.key(sku, size), "type": "variant", "sku": sku, "size": size}),
            )
            for n in range(30):
                at = f"2026-11-29T09:{n:02d}:00.000Z"
                table.put_item(
                    TableName=TABLE,
                    Item=encode_item(
                        {**{"pk": f"PRODUCT#{sku}", "sk": f"ADJUSTMENT#{size}#{at}#a{n}"}, "type": "x"}
                    ),
                )
    context: Any = FakeContext()
    assert purge.lambda_handler(event, context) == {"batchItemFailures": []}
    for record in event["Records"]:
        left = table.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": record["dynamodb"]["Keys"]["pk"]},
        )["Items"]
        assert left == []
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert sum(sum(r.get("ProductsPurged", [])) for r in emf) == len(event["Records"])


def test_every_invocation_reports_its_records(table: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch with nothing else to count published no metric: Powertools warned ("No application
    metrics to publish") into the function's logs on every such invocation, and the dashboard could
    not tell a quiet stream from a stalled one."""
    event = json.loads((EVENTS / "batch-recorded.json").read_text())
    context: Any = FakeContext()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            assert purge.lambda_handler(event, context) == {"batchItemFailures": []}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    counted = [sum(r["PurgeRecords"]) for r in emf if "PurgeRecords" in r]
    assert counted == [len(event["Records"])] * 2
