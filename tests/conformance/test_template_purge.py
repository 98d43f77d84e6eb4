"""Conformance of PurgeFunction in template.yaml: its stream mapping, the filter that passes only a
product that has just been hidden, a role limited to this table and its stream, the dead-letter
queue and its alarm."""

from __future__ import annotations

from typing import Any

from infra.local.event_filter import FilterCriteria
from infra.local.stream_pump import StreamSource
from infra.local.template import resource
from tests.conformance.test_template import _getatt, _ref

STREAM_EVENT = "TableStream"


def _props() -> dict[str, Any]:
    props: dict[str, Any] = resource("PurgeFunction")["Properties"]
    return props


def _record(event: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"Keys": {"pk": {"S": "PRODUCT#TE-0001"}, "sk": {"S": "PRODUCT"}}}
    if old is not None:
        data["OldImage"] = old
    if new is not None:
        data["NewImage"] = new
    return {"eventName": event, "dynamodb": data}


PRODUCT = {"type": {"S": "product"}, "sku": {"S": "TE-0001"}}
HIDDEN = {**PRODUCT, "deleted_at": {"S": "2026-12-01T00:00:00Z"}}
VARIANT = {"type": {"S": "variant"}, "sku": {"S": "TE-0001"}}


def test_purge_function_and_its_mapping() -> None:
    props = _props()
    assert props["Handler"] == "shelfwise.entry.purge.lambda_handler"
    assert props["Role"] == _getatt("PurgeFunctionRole", "Arn")
    assert props["LoggingConfig"] == {"LogGroup": _ref("PurgeFunctionLogGroup")}
    assert props["Timeout"] >= 120, "room for a long stock history"
    event = props["Events"][STREAM_EVENT]
    assert event["Type"] == "DynamoDB"
    mapping = event["Properties"]
    assert mapping["Stream"] == _getatt("Table", "StreamArn")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 <= mapping["MaximumRetryAttempts"] <= 10
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": _getatt("PurgeDLQ", "Arn")}}
    alarm = resource("PurgeDLQAlarm")["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": _getatt("PurgeDLQ", "QueueName")}]


BATCH = {"type": {"S": "batch"}, "result": {"S": "{}"}}
SINGLE_WRITE = {"type": {"S": "write"}, "result": {"S": "{}"}}


def _write(event: str, new: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"Keys": {"pk": {"S": "BATCH#b1"}, "sk": {"S": "WRITE"}}}
    if new is not None:
        data["NewImage"] = new
    return {"eventName": event, "dynamodb": data}


def test_the_filter_passes_only_a_product_just_hidden_and_a_bulk_adjustment_written() -> None:
    patterns = _props()["Events"][STREAM_EVENT]["Properties"]["FilterCriteria"]
    filters = FilterCriteria.from_properties(patterns)
    local = StreamSource.from_template("PurgeFunction").filters
    assert [p.source for p in local.patterns] == [p.source for p in filters.patterns]
    assert filters.matches(_record("MODIFY", PRODUCT, HIDDEN))
    assert not filters.matches(_record("MODIFY", HIDDEN, HIDDEN))  # a repeated DELETE changes nothing
    assert not filters.matches(_record("MODIFY", PRODUCT, {**PRODUCT, "price": {"N": "3"}}))
    assert not filters.matches(_record("INSERT", None, PRODUCT))
    assert not filters.matches(_record("REMOVE", HIDDEN, None))  # the purge's own last delete
    assert not filters.matches(_record("MODIFY", VARIANT, {**VARIANT, "deleted_at": {"S": "x"}}))
    assert filters.matches(_write("INSERT", BATCH))
    assert filters.matches(_write("MODIFY", BATCH))  # a key's expired record written over
    assert not filters.matches(_write("REMOVE", None))  # TTL removing it
    assert not filters.matches(_write("INSERT", SINGLE_WRITE))  # a single write has nothing to file


def test_the_role_reaches_only_this_table_and_its_stream() -> None:
    role = resource("PurgeFunctionRole")["Properties"]
    statements = [st for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]]
    by_sid = {st["Sid"]: st for st in statements}
    assert set(by_sid["TableItems"]["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
    }
    assert by_sid["TableItems"]["Resource"] == _getatt("Table", "Arn")
    assert by_sid["TableStream"]["Resource"] == _getatt("Table", "StreamArn")
    assert by_sid["DeadLetters"]["Resource"] == _getatt("PurgeDLQ", "Arn")
    assert not any("*" in str(st["Action"]) for st in statements)
