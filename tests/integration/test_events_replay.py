"""Every `sam local invoke` payload in events/api/ replayed through the real ApiFunction handler.

The handler runs exactly as on Lambda (Cognito mode: the caller comes from the authorizer claims in
the event), over a moto table built from template.yaml and loaded with the demo catalog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.demo import seed
from infra.local.table import create_table
from shelfwise.entry import api
from shelfwise.observability import metrics
from shelfwise.services import Services
from shelfwise.settings import get_settings
from shelfwise.storage.dynamo import dynamodb_client

EVENTS = Path(__file__).resolve().parents[2] / "events" / "api"
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
    "adjustments-list.json": (200, lambda b: b["items"] == []),
    "inventory-value.json": (200, lambda b: b["products"] == 40 and b["value"] > 0),
    "inventory-low-stock.json": (200, lambda b: 0 < len(b["items"]) <= 10),
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


def test_every_event_file_is_covered() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.usefixtures("lambda_env")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_replays_through_the_real_handler(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    event = json.loads((EVENTS / name).read_text())
    response = api.lambda_handler(event, FakeContext())
    status, check = EXPECTED[name]
    assert response["statusCode"] == status, response.get("body")
    if check is not None:
        assert check(json.loads(response["body"])), response["body"]
    # Powertools: structured logs carry the API Gateway request id as correlation id, and the
    # metrics flush as EMF on stdout.
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    emf = [r for r in records if "_aws" in r]
    assert emf, "no EMF metrics were flushed"
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shelfwise"
    logs = [r for r in records if "correlation_id" in r]
    assert all(r["correlation_id"] == event["requestContext"]["requestId"] for r in logs)
