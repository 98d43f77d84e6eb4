"""Every `sam local invoke` payload in events/ replayed through the real handler of its function.

- events/api/: ApiFunction's handler, exactly as on Lambda (Cognito mode: the caller comes from the
  authorizer claims in the event), over a moto table built from template.yaml with the demo catalog.
- events/stream/: ChatStreamFunction's response-streaming runtime loop, started through its exec
  wrapper as a subprocess against a fake Lambda Runtime API, over the embedded DynamoDB (a moto
  server the subprocess reaches) and the offline model.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.demo import seed
from infra.local.table import create_table
from shelfwise.entry import api
from shelfwise.observability import logger, metrics
from shelfwise.services import Services
from shelfwise.settings import get_settings
from shelfwise.storage.dynamo import dynamodb_client
from tests.fixtures.runtime_api import (
    USER_SUB,
    StreamStack,
    create_conversation,
    sse_events,
    stream_stack,
)

ALL_EVENTS = Path(__file__).resolve().parents[2] / "events"
EVENTS = ALL_EVENTS / "api"
STREAM_EVENTS = ALL_EVENTS / "stream"
TABLE = "shelfwise-events"

# What each payload must answer: status, and a check on the JSON body a user would look at.
EXPECTED: dict[str, tuple[int, Any]] = {
    "health.json": (200, lambda b: b["status"] == "ok"),
    "products-list.json": (
        200,
        lambda b: len(b["items"]) == 5 and {p["category"] for p in b["items"]} == {"tees"},
    ),
    "products-search.json": (200, lambda b: {p["name"] for p in b["items"]} == {"Essential Tee"}),
    "product-get.json": (200, lambda b: b["sku"] == "TE-0001" and len(b["variants"]) == 5),
    "product-create.json": (201, lambda b: b["sku"] == "TE-0009" and b["name"] == "Garment-Dyed Tee"),
    "product-create-not-admin.json": (403, lambda b: b["error"]["code"] == "forbidden"),
    "product-create-invalid.json": (422, lambda b: b["error"]["fields"][0]["field"] == "price"),
    "product-patch.json": (200, lambda b: b["price"] == 26.0 and b["collection"] == "Core 2026"),
    "product-delete.json": (204, None),
    "variant-put.json": (201, lambda b: (b["size"], b["quantity"]) == ("XXL", 6)),
    "variant-delete.json": (204, None),
    "adjustment-create.json": (201, lambda b: (b["quantity_before"], b["quantity_after"]) == (17, 15)),
    "adjustment-refused.json": (
        409,
        lambda b: (b["error"]["code"], b["error"]["quantity"]) == ("insufficient_stock", 17),
    ),
    "adjustment-stale.json": (
        409,
        lambda b: (
            (b["error"]["code"], b["error"]["quantity"], b["error"]["expected_quantity"])
            == ("stale_quantity", 17, 3)
        ),
    ),
    "adjustments-bulk.json": (
        201,
        lambda b: (
            [
                (a["sku"], a["size"], a["quantity_before"], a["quantity_after"], a["reason"])
                for a in b["lines"]
            ]
            == [
                ("TE-0001", "M", 17, 29, "received"),
                ("TE-0001", "L", 14, 20, "received"),
                ("HO-0001", "M", 19, 23, "received"),
            ]
        ),
    ),
    "adjustments-list.json": (200, lambda b: b["items"] == []),
    "inventory-value.json": (200, lambda b: b["products"] == 40 and b["value"] > 0),
    "inventory-low-stock.json": (200, lambda b: 0 < len(b["items"]) <= 10),
    "prompts-list.json": (200, lambda b: "inventory-assistant" in {p["key"] for p in b["items"]}),
    # POST /mcp with a Cognito access token's claims (what an MCP client's sign-in gets)
    "mcp-tools-list.json": (
        200,
        lambda b: (
            (b["jsonrpc"], b["id"]) == ("2.0", 1)
            and [t["name"] for t in b["result"]["tools"]]
            == ["search_products", "get_product", "list_low_stock", "get_inventory_value"]
        ),
    ),
    "mcp-tools-call.json": (
        200,
        lambda b: (
            b["id"] == 2
            and b["result"]["isError"] is False
            and b["result"]["structuredContent"]["product"]["sku"] == "TE-0001"
            and b["result"]["structuredContent"]["read_at"].endswith("Z")
        ),
    ),
}


class FakeContext:
    function_name = "ApiFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    aws_request_id = "0f5b3a1e-2c4d-4e6f-8a9b-0c1d2e3f4a5b"
    log_group_name = "/aws/lambda/ApiFunction"
    log_stream_name = "2026/11/29/[$LATEST]0123456789abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SHELFWISE_TABLE_NAME", TABLE)
    monkeypatch.setenv("SHELFWISE_AUTH_MODE", "cognito")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "shelfwise")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
    with mock_aws():
        for cached in (get_settings, dynamodb_client, api._handler):
            cached.cache_clear()
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        seed(Services(get_settings()).inventory)
        metrics.clear_metrics()  # the seed's own metrics are not the handler's
        yield
        for cached in (get_settings, dynamodb_client, api._handler):
            cached.cache_clear()


def _answer(payload: bytes) -> str:
    return "".join(data["content"] for name, data in sse_events(payload) if name == "delta")


# The conversation the events/stream/ payloads talk in (created for their caller before the replay).
STREAM_CONVERSATION = "c0ffee0000000000000000000000beef"
# What each streaming payload must answer: status, and a check on the payload after the prelude.
STREAM_EXPECTED: dict[str, tuple[int, Any]] = {
    "message-post.json": (
        200,
        lambda p: (
            [n for n, _ in sse_events(p)][-1] == "done" and "17 Essential Tee in black, size M" in _answer(p)
        ),
    ),
    "message-post-json.json": (
        200,
        lambda p: (json.loads(p)["role"], json.loads(p)["status"]) == ("assistant", "complete"),
    ),
    "message-post-unknown-conversation.json": (404, lambda p: json.loads(p)["error"]["code"] == "not_found"),
}


# The conversation payloads chain, in this order, on one table: the conversation that
# api/conversation-create.json creates (a client-chosen id) is the one stream/message-post.json talks
# in, and the others read, title, rename and delete it. Each step: file, status, check on the body.
CONVERSATION_CHAIN: list[tuple[str, int, Any]] = [
    (
        "api/conversation-create.json",
        201,
        lambda b: (b["id"], b["message_count"], b["title"]) == (STREAM_CONVERSATION, 0, None),
    ),
    ("api/conversations-list.json", 200, lambda b: [c["id"] for c in b["items"]] == [STREAM_CONVERSATION]),
    ("stream/message-post.json", 200, lambda p: [n for n, _ in sse_events(p)][-1] == "done"),
    (
        "api/messages-list.json",
        200,
        lambda b: (
            [(m["role"], m["status"]) for m in b["items"]]
            == [("user", "complete"), ("assistant", "complete")]
            and "17 Essential Tee in black, size M" in b["items"][1]["content"]
        ),
    ),
    (
        "api/conversation-title.json",
        202,
        lambda b: (b["conversation_id"], b["status"]) == (STREAM_CONVERSATION, "requested"),
    ),
    (
        "api/conversation-patch.json",
        200,
        lambda b: (b["title"], b["title_source"]) == ("Black tee stock", "user"),
    ),
    ("api/conversation-get.json", 200, lambda b: (b["title"], b["message_count"]) == ("Black tee stock", 2)),
    ("api/conversation-create.json", 409, lambda b: b["error"]["code"] == "already_exists"),
    ("api/conversation-delete.json", 204, None),
    ("api/conversation-get.json", 404, lambda b: b["error"]["code"] == "not_found"),
]
# Files under events/ that are not payloads: the --env-vars files of `sam local` (tests/e2e checks them).
NOT_EVENTS = {"env.local.json", "env.start-api.json"}

# Folders of events/ whose payloads another module replays (through their own function's handler).
REPLAYED_ELSEWHERE = {
    "titles": Path(__file__).with_name("test_titles_events.py"),
    "purge": Path(__file__).with_name("test_purge_events.py"),
}


def test_every_event_file_is_covered() -> None:
    """Every payload under events/ (any folder) is replayed: api/ and stream/ below, the rest by the
    module REPLAYED_ELSEWHERE names. A new folder fails here until something replays it."""
    for module in REPLAYED_ELSEWHERE.values():
        assert module.is_file(), module
    replayed = {EVENTS / name for name in EXPECTED} | {STREAM_EVENTS / name for name in STREAM_EXPECTED}
    replayed |= {ALL_EVENTS / name for name, _, _ in CONVERSATION_CHAIN}
    here = [
        p
        for p in ALL_EVENTS.rglob("*")
        if p.is_file() and p.parent.name not in REPLAYED_ELSEWHERE and p.name not in NOT_EVENTS
    ]
    assert sorted(here) == sorted(replayed)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The handler's log lines as Powertools formats them. (Its own handler writes to the stdout it
    found at import, which pytest's capture never sees.)"""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    std_logger = logging.getLogger(logger.name)  # the logging.Logger under Powertools' Logger
    std_logger.addHandler(handler)
    yield buffer
    std_logger.removeHandler(handler)


@pytest.mark.usefixtures("lambda_env")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_replays_through_the_real_handler(
    name: str, capsys: pytest.CaptureFixture[str], log_lines: io.StringIO
) -> None:
    event = json.loads((EVENTS / name).read_text())
    response = api.lambda_handler(event, FakeContext())
    status, check = EXPECTED[name]
    assert response["statusCode"] == status, response.get("body")
    if check is not None:
        assert check(json.loads(response["body"])), response["body"]
    # Powertools: structured logs carry the API Gateway request id as correlation id, and the
    # metrics flush as EMF on stdout.
    out = capsys.readouterr().out
    emf = [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]
    assert emf, "no EMF metrics were flushed"
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shelfwise"
    assert [e["ApiRequests"] for e in emf if "ApiRequests" in e] == [[1.0]]
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    answered = [r for r in lines if r["message"] == "answered"]
    assert len(answered) == 1
    assert answered[0]["status"] == status
    assert all(r["correlation_id"] == event["requestContext"]["requestId"] for r in lines)
    assert all(r["function_request_id"] == FakeContext.aws_request_id for r in lines)


@pytest.fixture(scope="module")
def stream_function(offline_model: Any) -> Iterator[StreamStack]:
    offline_model.reset()
    with stream_stack(offline_model, table="stream-events") as stack:
        create_conversation(stack.services, STREAM_CONVERSATION)
        yield stack


@pytest.mark.parametrize("name", sorted(STREAM_EXPECTED))
def test_stream_event_replays_through_the_streaming_loop(name: str, stream_function: StreamStack) -> None:
    event = json.loads((STREAM_EVENTS / name).read_text())
    request_id = stream_function.api.invoke(event)
    response = stream_function.api.wait_response(request_id)
    status, check = STREAM_EXPECTED[name]
    assert response.complete
    assert response.trailers == {}
    assert response.prelude["statusCode"] == status, response.payload
    assert check(response.payload), response.payload
    log = stream_function.process.wait_for_log(request_id, "streamed")
    assert log["correlation_id"] == event["requestContext"]["requestId"]
    assert log["status"] == status
    if status == 200:
        stored = stream_function.services.chat.list_messages(
            USER_SUB, STREAM_CONVERSATION, limit=50, cursor=None
        ).items
        assert stored[-1].role == "assistant"
        assert stored[-1].status == "complete"


def test_conversation_events_chain_through_the_real_handlers(
    offline_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conversation payloads in the order a newcomer runs them (README, "Invoke the functions with
    sam local"): ApiFunction's handler in process and ChatStreamFunction's loop as a subprocess, both on
    one embedded DynamoDB table."""
    offline_model.reset()
    with stream_stack(offline_model, table="events-chain") as stack:
        settings = stack.services.settings
        monkeypatch.setenv("SHELFWISE_TABLE_NAME", settings.table_name)
        monkeypatch.setenv("SHELFWISE_DYNAMODB_ENDPOINT_URL", settings.dynamodb_endpoint_url)
        monkeypatch.setenv("SHELFWISE_AUTH_MODE", "cognito")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
        for cached in (get_settings, dynamodb_client, api._handler):
            cached.cache_clear()
        try:
            for step, (name, status, check) in enumerate(CONVERSATION_CHAIN):
                event = json.loads((ALL_EVENTS / name).read_text())
                if name.startswith("stream/"):
                    response = stack.api.wait_response(stack.api.invoke(event))
                    assert response.prelude["statusCode"] == status, (step, name, response.payload)
                    assert check(response.payload), (step, name, response.payload)
                    continue
                answer = api.lambda_handler(event, FakeContext())
                assert answer["statusCode"] == status, (step, name, answer.get("body"))
                if check is not None:
                    assert check(json.loads(answer["body"])), (step, name, answer["body"])
        finally:
            for cached in (get_settings, dynamodb_client, api._handler):
                cached.cache_clear()
