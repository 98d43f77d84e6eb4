"""The inventory API through HTTP, on a template-built table (moto and DynamoDB Local)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.app import bearer

TEE = {
    "category": "tees",
    "name": "Essential Tee",
    "color": "black",
    "price": 24.5,
    "collection": "Core",
    "variants": [
        {"size": "S", "quantity": 10, "reorder_level": 3},
        {"size": "m", "quantity": 2, "reorder_level": 5},
    ],
}


def create(client: TestClient, admin: dict[str, str], **changes: Any) -> dict[str, Any]:
    response = client.post("/products", json={**TEE, **changes}, headers=admin)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}


def test_create_product_generates_sequential_skus_per_category(
    client: TestClient, admin: dict[str, str]
) -> None:
    first = create(client, admin)
    second = create(client, admin, color="white")
    hoodie = create(client, admin, category="hoodies", name="Zip Hoodie", variants=[])
    assert (first["sku"], second["sku"], hoodie["sku"]) == ("TE-0001", "TE-0002", "HO-0001")
    assert first["price"] == 24.5
    assert [(v["size"], v["quantity"], v["reorder_level"]) for v in first["variants"]] == [
        ("S", 10, 3),
        ("M", 2, 5),
    ]
    fetched = client.get("/products/te-0001", headers=admin).json()
    assert fetched["sku"] == "TE-0001"
    assert fetched["variants"] == first["variants"]


def test_deleted_product_sku_is_never_reused(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)["sku"]
    assert client.delete(f"/products/{sku}", headers=admin).status_code == 204
    assert create(client, admin)["sku"] == "TE-0002"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"price": 0}, "price"),
        ({"price": -3}, "price"),
        ({"price": 1.234}, "price"),
        ({"category": "spaceships"}, "category"),
        ({"name": "   "}, "name"),
        ({"variants": [{"size": "M", "quantity": -1}]}, "variants.0.quantity"),
        ({"variants": [{"size": "M", "quantity": 1}, {"size": "m", "quantity": 2}]}, "variants"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_product_input_names_the_field_and_writes_nothing(
    client: TestClient, admin: dict[str, str], changes: dict[str, Any], field: str
) -> None:
    response = client.post("/products", json={**TEE, **changes}, headers=admin)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [f["field"] for f in error["fields"]]
    assert client.get("/products", headers=admin).json() == {"items": [], "next_cursor": None}


def test_missing_bad_or_expired_tokens_are_401(client: TestClient) -> None:
    assert client.get("/products").status_code == 401
    assert client.get("/products", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
    forged = bearer("eve", admin=True, local_signing_key="another-key-" + "y" * 32)
    assert client.get("/products", headers=forged).status_code == 401
    expired = bearer("bob", local_token_ttl_seconds=1)
    import time

    time.sleep(1.1)
    response = client.get("/products", headers=expired)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "the token has expired"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_inventory_writes_need_the_admin_group(
    client: TestClient, admin: dict[str, str], user: dict[str, str]
) -> None:
    sku = create(client, admin)["sku"]
    forbidden = [
        client.post("/products", json=TEE, headers=user),
        client.patch(f"/products/{sku}", json={"name": "x"}, headers=user),
        client.delete(f"/products/{sku}", headers=user),
        client.put(f"/products/{sku}/variants/L", json={"quantity": 1}, headers=user),
        client.delete(f"/products/{sku}/variants/S", headers=user),
        client.post(
            f"/products/{sku}/variants/S/adjustments", json={"delta": -1, "reason": "other"}, headers=user
        ),
    ]
    assert [r.status_code for r in forbidden] == [403] * len(forbidden)
    assert forbidden[0].json()["error"]["code"] == "forbidden"
    # reads are for every signed-in user, and nothing above changed anything
    product = client.get(f"/products/{sku}", headers=user).json()
    assert product["name"] == "Essential Tee"
    assert {v["size"]: v["quantity"] for v in product["variants"]} == {"S": 10, "M": 2}


def test_patch_and_delete_product(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)["sku"]
    patched = client.patch(f"/products/{sku}", json={"price": 19.99, "coming_soon": True}, headers=admin)
    assert patched.status_code == 200
    assert (patched.json()["price"], patched.json()["coming_soon"]) == (19.99, True)
    assert client.patch(f"/products/{sku}", json={"category": "hoodies"}, headers=admin).status_code == 422
    assert client.patch(f"/products/{sku}", json={"name": None}, headers=admin).status_code == 400
    assert client.delete(f"/products/{sku}", headers=admin).status_code == 204
    missing = client.get(f"/products/{sku}", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert client.get("/inventory/low-stock", headers=admin).json()["items"] == []
    # Repeatable until the product is purged (then it is gone for good).
    assert client.delete(f"/products/{sku}", headers=admin).status_code == 204


def test_put_variant_creates_then_replaces(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)["sku"]
    created = client.put(
        f"/products/{sku}/variants/xl", json={"quantity": 4, "reorder_level": 2}, headers=admin
    )
    assert created.status_code == 201
    assert created.json()["size"] == "XL"
    replaced = client.put(f"/products/{sku}/variants/XL", json={"quantity": 9}, headers=admin)
    assert replaced.status_code == 200
    assert (replaced.json()["quantity"], replaced.json()["reorder_level"]) == (9, 0)
    assert client.put(f"/products/{sku}/variants/XL", json={"quantity": -1}, headers=admin).status_code == 422
    assert client.put("/products/TE-9999/variants/XL", json={"quantity": 1}, headers=admin).status_code == 404
    assert client.delete(f"/products/{sku}/variants/XL", headers=admin).status_code == 204
    sizes = [v["size"] for v in client.get(f"/products/{sku}", headers=admin).json()["variants"]]
    assert sizes == ["S", "M"]


def test_adjustments_change_stock_and_refuse_to_go_negative(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)["sku"]
    url = f"/products/{sku}/variants/S/adjustments"
    sold = client.post(url, json={"delta": -4, "reason": "sale", "note": "order #1001"}, headers=admin)
    assert sold.status_code == 201
    assert (sold.json()["quantity_before"], sold.json()["quantity_after"]) == (10, 6)
    assert sold.json()["actor"] == "ada"

    refused = client.post(url, json={"delta": -7, "reason": "sale", "note": "order #1002"}, headers=admin)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert (error["code"], error["quantity"]) == ("insufficient_stock", 6)

    assert client.post(url, json={"delta": 0, "reason": "correction"}, headers=admin).status_code == 422
    assert client.post(url, json={"delta": 1}, headers=admin).status_code == 422
    assert (
        client.post(
            f"/products/{sku}/variants/XXL/adjustments",
            json={"delta": 1, "reason": "received"},
            headers=admin,
        ).status_code
        == 404
    )

    history = client.get(url, headers=admin).json()["items"]
    assert [(a["delta"], a["reason"], a["note"], a["actor"]) for a in history] == [
        (-4, "sale", "order #1001", "ada")
    ]
    variant = next(
        v for v in client.get(f"/products/{sku}", headers=admin).json()["variants"] if v["size"] == "S"
    )
    assert variant["quantity"] == 6


def test_a_variants_history_pages_newest_first(client: TestClient, admin: dict[str, str]) -> None:
    """The audit trail is a list like every other: it answered one page with no next_cursor, and a
    cursor was ignored (the first page again)."""
    sku = create(client, admin)["sku"]
    url = f"/products/{sku}/variants/M/adjustments"
    for n in range(5):
        sent = {"delta": 1, "reason": "received", "note": f"delivery {n}"}
        assert client.post(url, json=sent, headers=admin).status_code == 201
    notes: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        page = client.get(url, params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=admin)
        assert page.status_code == 200, page.text
        notes += [a["note"] for a in page.json()["items"]]
        if (cursor := page.json()["next_cursor"]) is None:
            break
    assert notes == [f"delivery {n}" for n in reversed(range(5))]
    assert client.get(url, params={"cursor": "abc"}, headers=admin).status_code == 400
    first = client.get(url, params={"limit": 2}, headers=admin).json()["next_cursor"]
    other = client.get(f"/products/{sku}/variants/S/adjustments", params={"cursor": first}, headers=admin)
    assert other.status_code == 400, "a cursor of another variant's history"


def test_low_stock_follows_every_stock_change(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)["sku"]  # S: 10 (reorder 3), M: 2 (reorder 5)

    def low() -> list[tuple[str, str, int, int]]:
        items = client.get("/inventory/low-stock", headers=admin).json()["items"]
        return [(i["sku"], i["size"], i["quantity"], i["shortfall"]) for i in items]

    assert low() == [(sku, "M", 2, 3)]
    client.post(
        f"/products/{sku}/variants/S/adjustments", json={"delta": -7, "reason": "sale"}, headers=admin
    )
    assert low() == [(sku, "M", 2, 3), (sku, "S", 3, 0)]
    client.post(
        f"/products/{sku}/variants/M/adjustments", json={"delta": 20, "reason": "received"}, headers=admin
    )
    assert low() == [(sku, "S", 3, 0)]
    client.put(f"/products/{sku}/variants/S", json={"quantity": 50, "reorder_level": 3}, headers=admin)
    assert low() == []
    item = client.get("/inventory/low-stock", headers=admin).json()
    assert item == {"items": [], "next_cursor": None}


def test_low_stock_tells_apart_products_of_one_name_by_colour(
    client: TestClient, admin: dict[str, str]
) -> None:
    black = create(client, admin)["sku"]
    white = create(client, admin, color="white")["sku"]
    items = client.get("/inventory/low-stock", headers=admin).json()["items"]
    assert [(i["sku"], i["name"], i["color"], i["size"]) for i in items] == [
        (black, "Essential Tee", "black", "M"),
        (white, "Essential Tee", "white", "M"),
    ]


def test_inventory_value_is_price_times_quantity(client: TestClient, admin: dict[str, str]) -> None:
    create(client, admin)  # 24.50 x 12
    create(
        client,
        admin,
        category="footwear",
        name="Canvas Sneaker",
        price=70,
        variants=[{"size": "42", "quantity": 3}],
    )
    value = client.get("/inventory/value", headers=admin).json()
    assert Decimal(str(value["value"])) == Decimal("24.50") * 12 + 70 * 3
    assert (value["units"], value["products"], value["variants"]) == (15, 2, 3)
    assert {c["category"]: c["units"] for c in value["by_category"]} == {"tees": 12, "footwear": 3}


def test_list_pages_through_every_product_exactly_once(client: TestClient, admin: dict[str, str]) -> None:
    made = [create(client, admin, color=f"c{i}")["sku"] for i in range(7)]
    made += [create(client, admin, category="accessories", name="Tote", variants=[])["sku"] for _ in range(3)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/products", params=params, headers=admin).json()
        assert len(page["items"]) <= 3
        seen += [p["sku"] for p in page["items"]]
        for product in page["items"]:
            if product["category"] == "tees":
                assert [v["size"] for v in product["variants"]] == ["S", "M"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))
    assert pages == 4


def test_list_filters(client: TestClient, admin: dict[str, str]) -> None:
    tee = create(client, admin)["sku"]
    create(client, admin, name="Pocket Tee")
    hoodie = create(client, admin, category="hoodies", name="Essential Hoodie")["sku"]

    def skus(**params: Any) -> list[str]:
        response = client.get("/products", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [p["sku"] for p in response.json()["items"]]

    assert skus(category="hoodies") == [hoodie]
    assert skus(q="essential") == [hoodie, tee]
    assert skus(q="ESSENTIAL", category="tees") == [tee]
    assert skus(q=tee.lower()) == [tee]
    assert skus(q="TE-0999") == []
    assert skus(q=hoodie, category="tees") == []
    assert skus(q="essential", limit=1) == [hoodie]
    page = client.get("/products", params={"q": "essential", "limit": 1}, headers=admin).json()
    rest = client.get(
        "/products", params={"q": "essential", "cursor": page["next_cursor"]}, headers=admin
    ).json()
    assert [p["sku"] for p in rest["items"]] == [tee]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 101}, 422, "limit"),
        ({"category": "boats"}, 422, "category"),
        ({"cursor": "%%%"}, 400, "cursor"),
        ({"cursor": "eyJwayI6IngifQ"}, 400, "cursor"),
    ],
)
def test_bad_list_parameters(
    client: TestClient, admin: dict[str, str], params: dict[str, Any], status: int, field: str
) -> None:
    response = client.get("/products", params=params, headers=admin)
    assert response.status_code == status
    error = response.json()["error"]
    assert field in error.get("field", "") or field in [f["field"] for f in error.get("fields", [])]


def test_unknown_route_is_a_json_404(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get("/nope", headers=admin)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
