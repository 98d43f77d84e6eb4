"""Concurrent stock writes never oversell or double: 50 buyers, 20 in stock -> exactly 20 sales, with
or without Idempotency-Keys; a retry racing its first attempt applies once; a bulk receipt racing its
retry and single sales leaves every quantity exact.

Run against DynamoDB Local (AWS's emulator, the strict judge) and against the local stack's embedded
DynamoDB (moto server behind a request lock), each with real HTTP between threads and the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

from infra.local.dynamodb_local import FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, DynamoDBLocal
from infra.local.embedded_dynamodb import EmbeddedDynamoDB
from infra.local.table import create_table
from shelfwise.errors import InsufficientStock
from shelfwise.idempotency import IdempotentRequest, fingerprint
from shelfwise.inventory.models import (
    Adjustment,
    AdjustmentReason,
    BulkAdjustmentIn,
    BulkLine,
)
from shelfwise.inventory.service import InventoryService
from shelfwise.services import Services
from shelfwise.storage.dynamo import Dynamo, dynamodb_client
from tests.fixtures.app import make_settings
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import unique_table_name

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BUYERS = 50
STOCK = 20


@pytest.fixture(scope="module")
def own_dynamodb_local() -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local of this module's own: the session's has served other tests' big tables (a
    10,000-item history), and its clean-up of them would stall 50 writers into read timeouts."""
    with DynamoDBLocal() as emulator:
        yield emulator


def _patient_client(endpoint_url: str) -> DynamoDBClient:
    """The app's client settings but a 60 s read timeout: the embedded DynamoDB answers one request
    at a time (moto behind a lock), so 50 writers queue there for longer than the 5 s the app allows
    a real table (seen: a read timeout on a clean 2-core CI run). DynamoDB Local serves them at once
    and keeps the app's own client."""
    return boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=60,
            max_pool_connections=64,
        ),
    )


@pytest.fixture(params=[pytest.param("dynamodb-local", marks=pytest.mark.slow), "embedded"])
def concurrent_inventory(request: pytest.FixtureRequest) -> Iterator[InventoryService]:
    table = unique_table_name()
    if request.param == "dynamodb-local":
        emulator: DynamoDBLocal = request.getfixturevalue("own_dynamodb_local")
        endpoint = emulator.endpoint_url
        client = dynamodb_client("us-east-1", endpoint)
        create_table(client, table)
        yield Services(make_settings(table), dynamo=Dynamo(client, table)).inventory
        client.delete_table(TableName=table)
        return
    with EmbeddedDynamoDB() as db:
        client = _patient_client(db.endpoint_url)
        create_table(client, table)
        yield Services(make_settings(table), dynamo=Dynamo(client, table)).inventory


def test_fifty_concurrent_decrements_on_twenty_leave_zero(concurrent_inventory: InventoryService) -> None:
    inventory = concurrent_inventory
    product = inventory.create_product(black_tee(("M", STOCK)), actor="test")

    def buy(i: int) -> str:
        try:
            inventory.adjust_stock(
                product.sku, "M", delta=-1, reason="sale", note=f"order {i}", actor=f"buyer-{i}"
            )
        except InsufficientStock as exc:
            return f"refused at {exc.details['quantity']}"
        return "sold"

    with ThreadPoolExecutor(max_workers=BUYERS) as pool:
        outcomes = list(pool.map(buy, range(BUYERS)))

    assert outcomes.count("sold") == STOCK
    # refused only once the stock was really gone
    assert outcomes.count("refused at 0") == BUYERS - STOCK
    variant = inventory.get_product(product.sku).variants[0]
    assert variant.quantity == 0
    # every sale left exactly one audit record, each with a distinct before/after step
    history = inventory.adjustments(product.sku, "M", limit=100)
    assert len(history) == STOCK
    assert sorted(a.quantity_before for a in history) == list(range(1, STOCK + 1))
    assert {a.actor for a in history} <= {f"buyer-{i}" for i in range(BUYERS)}
    low = inventory.low_stock(limit=10, cursor=None).items
    assert [(i.sku, i.size, i.quantity) for i in low] == [(product.sku, "M", 0)]


def _tee(inventory: InventoryService, quantity: int = STOCK, *sizes: str) -> str:
    return inventory.create_product(black_tee(*((s, quantity) for s in sizes or ("M",))), actor="test").sku


def _request(key: str, body: object) -> IdempotentRequest:
    return IdempotentRequest("till-user", key, fingerprint("POST", "/sale", body))


def test_a_retry_racing_the_first_attempt_applies_once(concurrent_inventory: InventoryService) -> None:
    """Eight copies of one sale (a client and its SDK retrying after timeouts), all at once: one
    applies, every other answers the same adjustment, marked replayed."""
    inventory = concurrent_inventory
    sku = _tee(inventory)
    attempts = [_request("sale-1001", {"delta": -3}) for _ in range(8)]

    def sell(once: IdempotentRequest) -> Adjustment:
        return inventory.adjust_stock(sku, "M", delta=-3, reason="sale", actor="till", once=once)

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        answers = list(pool.map(sell, attempts))

    assert inventory.get_product(sku).variants[0].quantity == STOCK - 3
    assert len({a.id for a in answers}) == 1
    assert sorted(once.replayed for once in attempts) == [False] + [True] * 7
    assert [a.id for a in inventory.adjustments(sku, "M", limit=10)] == [answers[0].id]


def test_fifty_concurrent_sales_with_distinct_keys_on_twenty_sell_twenty(
    concurrent_inventory: InventoryService,
) -> None:
    inventory = concurrent_inventory
    sku = _tee(inventory)

    def buy(i: int) -> str:
        try:
            inventory.adjust_stock(
                sku, "M", delta=-1, reason="sale", actor="till", once=_request(f"order-{i}", {"delta": -1})
            )
        except InsufficientStock:
            return "refused"
        return "sold"

    with ThreadPoolExecutor(max_workers=BUYERS) as pool:
        outcomes = list(pool.map(buy, range(BUYERS)))

    assert (outcomes.count("sold"), outcomes.count("refused")) == (STOCK, BUYERS - STOCK)
    assert inventory.get_product(sku).variants[0].quantity == 0
    assert len(inventory.adjustments(sku, "M", limit=100)) == STOCK


def test_a_bulk_receipt_racing_its_retry_and_single_sales_stays_consistent(
    concurrent_inventory: InventoryService,
) -> None:
    """A 20-line receipt sent twice with one key while sales hit the same variants: the receipt
    applies once, every sale applies once, and every quantity is start + receipt - sales."""
    inventory = concurrent_inventory
    sizes = [f"{n}" for n in range(30, 50)]
    sku = _tee(inventory, 10, *sizes)
    receipt = BulkAdjustmentIn(
        reason=AdjustmentReason.RECEIVED,
        lines=[BulkLine(sku=sku, size=size, delta=5) for size in sizes],
    )

    def work(i: int) -> str:
        if i < 2:
            inventory.adjust_many(
                receipt, actor="dock", once=_request("po-1", receipt.model_dump(mode="json"))
            )
            return "receipt"
        inventory.adjust_stock(sku, sizes[i % len(sizes)], delta=-1, reason="sale", actor="till")
        return "sale"

    with ThreadPoolExecutor(max_workers=12) as pool:
        done = list(pool.map(work, range(42)))

    sales = {size: sum(1 for i in range(2, 42) if sizes[i % len(sizes)] == size) for size in sizes}
    stock = {v.size: v.quantity for v in inventory.get_product(sku).variants}
    assert done.count("receipt") == 2
    assert stock == {size: 10 + 5 - sales[size] for size in sizes}
    for size in sizes:
        history = inventory.adjustments(sku, size, limit=50)
        assert [a.delta for a in history].count(5) == 1
        assert len(history) == 1 + sales[size]
