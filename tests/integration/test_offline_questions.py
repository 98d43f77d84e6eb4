"""The offline stand-in, asked as a newcomer asks it: a fixed set of questions in English, Spanish,
German and French, each in a conversation of its own, through the whole turn (HTTP, the real openai
client, the inventory tools over the demo catalogue on moto). Each answer is graded by the same
grounding check the service stores with every message: no answer may state a figure that no tool of
its turn returned. "Not understood" is an acceptable answer; a false figure never is. Where the right
tool is plain, the test names it, and where the truth is easy to read from the catalogue, the test
checks the answer against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from infra.local.demo import seed
from infra.local.dynamodb_local import DEFAULT_REGION, FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY
from infra.local.offline_answers import LOW_STOCK_SHOWN
from infra.local.table import create_table
from shelfwise.inventory.models import Product
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, chat_settings, make_services
from tests.fixtures.dynamodb import DynamoTarget, unique_table_name

JSON = {"Accept": "application/json"}
NOT_UNDERSTOOD = "did not understand"
CANNOT_CHANGE = "cannot change stock"
VALUE, LOW, SEARCH, PRODUCT = "get_inventory_value", "list_low_stock", "search_products", "get_product"


@dataclass(frozen=True)
class Q:
    text: str
    tools: tuple[str, ...] | None = ()  # the tools the answer must have used (None: any, or none)
    says: tuple[str, ...] = ()  # words the answer must hold (case-insensitive)
    may_not_understand: bool = False  # "not understood" is an acceptable answer to it
    category: str | None = None  # a search that must be by this category


QUESTIONS: list[Q] = [
    # English
    Q("how many medium black tees are in stock?", (SEARCH,), ("17", "TE-0001")),
    Q("which products are out of stock?", (LOW,), ("out of stock",)),
    Q("what is running low?", (LOW,), ("reorder level",)),
    Q("which hoodies are out of stock?", (SEARCH,), category="hoodies"),
    Q("compare stock of jackets vs pants", (VALUE,), ("jackets", "pants")),
    Q("what is our total inventory value?", (VALUE,), ("usd",)),
    Q("how many units do we have in total?", (VALUE,), ("units",)),
    Q("how many products do we carry?", (VALUE,), ("products",)),
    Q("what's the stock of TE-0001?", (PRODUCT,), ("TE-0001",)),
    Q("stock of TE-0001 and TE-0002?", (PRODUCT,), ("TE-0001", "TE-0002")),
    Q("set the stock of TE-0001 size M to 20", None, (CANNOT_CHANGE, "/adjustments")),
    Q("add 5 black tees in size M", None, (CANNOT_CHANGE,)),
    Q("please delete the Zip Hoodie", None, (CANNOT_CHANGE,)),
    Q("can you change the price of the canvas tote to $30?", None, (CANNOT_CHANGE,)),
    Q("do we have white sneakers in size 42?", (SEARCH,), ("sneaker",)),
    Q("how much is the Suede Chelsea Boot?", (SEARCH,), ("160.00",)),
    Q("show me all jackets", (SEARCH,), ("Rain Shell",), category="jackets"),
    Q("which pants are low on stock?", (SEARCH,), category="pants"),
    Q("list low stock items", (LOW,), ("reorder level",)),
    Q("how many hoodies do we have?", (VALUE,), ("hoodies", "units")),
    Q("which category is worth the most?", (VALUE,), ("by value",)),
    Q("are any dresses out of stock?", (SEARCH,), category="dresses"),
    Q("how many navy pocket tees in size L?", (SEARCH,), ("Pocket Tee",)),
    Q("compare tees and shirts", (VALUE,), ("tees", "shirts")),
    Q("what's the price of the canvas tote?", (SEARCH,), ("26.00",)),
    Q("what is in stock?", None, may_not_understand=True),
    Q("do we sell socks?", None, may_not_understand=True),
    Q("what's the weather like tomorrow?", None, (NOT_UNDERSTOOD,)),
    Q("hello", None),
    Q("thanks!", None),
    # Spanish
    Q("¿cuántas camisetas negras talla M tenemos?", (SEARCH,), ("17", "TE-0001")),
    Q("¿Qué productos tienen poco stock?", (LOW,), ("reorder level",)),
    Q("¿Qué productos están agotados?", (LOW,), ("out of stock",)),
    Q("¿Cuál es el valor total del inventario?", (VALUE,), ("usd",)),
    Q("¿Cuántas sudaderas tenemos?", (VALUE,), ("hoodies",)),
    Q("cambia el stock de TE-0001 a 5", None, (CANNOT_CHANGE,)),
    Q("compara chaquetas y pantalones", (VALUE,), ("jackets", "pants")),
    # German
    Q("Wie viele schwarze T-Shirts in Größe M haben wir?", (SEARCH,), ("17", "TE-0001")),
    Q("Welche Produkte sind ausverkauft?", (LOW,), ("out of stock",)),
    Q("Was ist der Gesamtwert des Lagers?", (VALUE,), ("usd",)),
    Q("Welche Artikel haben wenig Bestand?", (LOW,), ("reorder level",)),
    Q("Wie viele Jacken haben wir?", (VALUE,), ("jackets",)),
    Q("Setze den Bestand von TE-0001 auf 3", None, (CANNOT_CHANGE,)),
    # French
    Q("Combien de t-shirts noirs en taille M avons-nous ?", (SEARCH,), ("17", "TE-0001")),
    Q("Quels produits sont en rupture de stock ?", (LOW,), ("out of stock",)),
    Q("Quelle est la valeur totale du stock ?", (VALUE,), ("usd",)),
    Q("Quels articles ont un stock faible ?", (LOW,), ("reorder level",)),
    Q("Combien de vestes avons-nous ?", (VALUE,), ("jackets",)),
]


@dataclass
class Stack:
    client: TestClient
    headers: dict[str, str]
    products: list[Product]
    low_stock: int
    graded: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def stack(offline_model: Any) -> Iterator[Stack]:
    from moto import mock_aws

    offline_model.reset()
    offline_model.token_delay_ms = 0
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name=DEFAULT_REGION,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        )
        table = unique_table_name()
        create_table(client, table)
        services = make_services(DynamoTarget("moto", client, table, None), **chat_settings(offline_model))
        seed(services.inventory)
        products = list(services.inventory.repo.catalog())
        low = len(services.inventory.low_stock(limit=100, cursor=None).items)
        with TestClient(create_app(services=services), raise_server_exceptions=False) as test_client:
            yield Stack(test_client, bearer("newcomer"), products, low)


def ask(stack: Stack, question: str) -> dict[str, Any]:
    conversation = stack.client.post("/conversations", json={}, headers=stack.headers).json()["id"]
    response = stack.client.post(
        f"/conversations/{conversation}/messages",
        json={"content": question},
        headers={**stack.headers, **JSON},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_question_set_is_large_and_multilingual() -> None:
    assert len(QUESTIONS) >= 40
    assert len({q.text for q in QUESTIONS}) == len(QUESTIONS)


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: q.text[:40])
def test_no_answer_states_an_unsupported_figure(stack: Stack, question: Q) -> None:
    answer = ask(stack, question.text)
    content = answer["content"]
    assert answer["grounding"]["unsupported"] == [], content
    used = [c["name"] for c in answer["tool_calls"]]
    not_understood = NOT_UNDERSTOOD in content.lower() or "which product" in content.lower()
    if question.may_not_understand and not_understood:
        return
    if question.tools is not None:
        if question.tools:
            assert set(question.tools) <= set(used), (used, content)
        else:
            assert not used, content
    for word in question.says:
        assert word.lower() in content.lower(), content
    if question.category:
        searches = [c["arguments"] for c in answer["tool_calls"] if c["name"] == SEARCH]
        assert any(s.get("category") == question.category for s in searches), searches


def _variants(stack: Stack, category: str) -> list[tuple[Product, str, int, int]]:
    return [
        (p, v.size, v.quantity, v.reorder_level)
        for p in stack.products
        if p.category.value == category
        for v in p.variants
    ]


def test_out_of_stock_in_a_category_names_exactly_the_sizes_at_zero(stack: Stack) -> None:
    content = ask(stack, "which hoodies are out of stock?")["content"]
    variants = _variants(stack, "hoodies")
    out = {(p.sku, size) for p, size, quantity, _ in variants if quantity == 0}
    if not out:
        assert "none" in content.lower() or "no " in content.lower(), content
    for line in content.splitlines():
        sku = re.search(r"\b(HO-\d{4})\b", line)
        if sku:  # a product's line: only its sizes at 0
            named = set(re.findall(r"\b(XS|S|M|L|XL)\b", line.split(")", 1)[-1]))
            assert named == {size for s, size in out if s == sku.group(1)}, line
    names_without_hoodie = {p.sku for p, *_ in variants if "hoodie" not in p.name.lower()}
    assert names_without_hoodie, "the demo has hoodies whose names lack the word"
    assert {s for s, _ in out} <= set(re.findall(r"HO-\d{4}", content))


def test_low_stock_says_how_many_there_are(stack: Stack) -> None:
    content = ask(stack, "what is running low?")["content"]
    assert f"{stack.low_stock} variants are at or below their reorder level" in content, content
    assert stack.low_stock > LOW_STOCK_SHOWN, "the demo's list is longer than an answer shows"
    assert content.count("\n- ") == LOW_STOCK_SHOWN, content
    assert "the rest are not listed here" in content  # cut, and said to be


def test_a_write_is_refused_and_nothing_changes(stack: Stack) -> None:
    before = stack.client.get("/products/TE-0001", headers=stack.headers).json()
    answer = ask(stack, "set the stock of TE-0001 size M to 20")
    assert answer["tool_calls"] == []
    assert CANNOT_CHANGE in answer["content"].lower()
    assert stack.client.get("/products/TE-0001", headers=stack.headers).json() == before
