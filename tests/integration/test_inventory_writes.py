"""Inventory writes a store can trust, through HTTP on a template-built table (moto and DynamoDB
Local): Idempotency-Key on every write, compare-and-set, the fixed reasons with a note, and the
all-or-nothing bulk adjustment."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.app import bearer

TEE = {
    "category": "tees",
    "name": "Essential Tee",
    "color": "black",
    "price": 24,
    "variants": [{"size": "S", "quantity": 10, "reorder_level": 3}, {"size": "M", "quantity": 20}],
}
HOODIE = {**TEE, "category": "hoodies", "name": "Zip Hoodie", "variants": [{"size": "M", "quantity": 5}]}
SALE = {"delta": -3, "reason": "sale", "note": "order #1001"}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def create(client: TestClient, admin: dict[str, str], product: dict[str, Any] = TEE) -> str:
    response = client.post("/products", json=product, headers=admin)
    assert response.status_code == 201, response.text
    sku: str = response.json()["sku"]
    return sku


def quantities(client: TestClient, admin: dict[str, str], sku: str) -> dict[str, int]:
    product = client.get(f"/products/{sku}", headers=admin).json()
    return {v["size"]: v["quantity"] for v in product["variants"]}


def history(client: TestClient, admin: dict[str, str], sku: str, size: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"/products/{sku}/variants/{size}/adjustments", headers=admin
    ).json()["items"]
    return items


# -- Idempotency-Key -------------------------------------------------------------------------------


def test_a_retried_adjustment_with_the_same_key_applies_once(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    first = client.post(url, json=SALE, headers={**admin, **key("sale-1001")})
    again = client.post(
        url,
        json={"note": "order #1001", "reason": "sale", "delta": -3},
        headers={**admin, **key("sale-1001")},
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # the first answer, key order of the body notwithstanding
    assert quantities(client, admin, sku)["M"] == 17
    assert [a["id"] for a in history(client, admin, sku, "M")] == [first.json()["id"]]


def test_a_key_reused_with_another_body_is_refused_and_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    assert client.post(url, json=SALE, headers={**admin, **key("k1")}).status_code == 201
    reused = client.post(url, json={**SALE, "delta": -5}, headers={**admin, **key("k1")})
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = client.post(
        f"/products/{sku}/variants/S/adjustments", json=SALE, headers={**admin, **key("k1")}
    )
    assert elsewhere.json()["error"]["code"] == "idempotency_key_reused"  # same body, another variant
    assert quantities(client, admin, sku) == {"S": 10, "M": 17}


def test_keys_are_per_caller(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    grace = bearer("grace", admin=True)
    ada_sale = client.post(url, json=SALE, headers={**admin, **key("till-7")})
    grace_sale = client.post(url, json=SALE, headers={**grace, **key("till-7")})
    assert (ada_sale.status_code, grace_sale.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in grace_sale.headers
    assert quantities(client, admin, sku)["M"] == 14


def test_a_retried_product_create_makes_one_product(client: TestClient, admin: dict[str, str]) -> None:
    first = client.post("/products", json=TEE, headers={**admin, **key("new-tee")})
    again = client.post("/products", json=TEE, headers={**admin, **key("new-tee")})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"] == f"/products/{first.json()['sku']}"
    listed = client.get("/products", params={"category": "tees"}, headers=admin).json()["items"]
    assert [p["sku"] for p in listed] == [first.json()["sku"]]


def test_every_inventory_write_answers_a_retry_with_its_first_answer(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)
    writes: list[tuple[str, str, dict[str, Any] | None, int]] = [
        ("PATCH", f"/products/{sku}", {"price": 26}, 200),
        ("PUT", f"/products/{sku}/variants/XL", {"quantity": 4, "reorder_level": 1}, 201),
        ("DELETE", f"/products/{sku}/variants/S", None, 204),
        (
            "POST",
            "/inventory/adjustments",
            {"reason": "received", "lines": [{"sku": sku, "size": "M", "delta": 6}]},
            201,
        ),
        ("DELETE", f"/products/{sku}", None, 204),
    ]
    for n, (method, url, body, status) in enumerate(writes):
        headers = {**admin, **key(f"write-{n}")}
        first = client.request(method, url, json=body, headers=headers)
        assert first.status_code == status, (method, url, first.text)
        again = client.request(method, url, json=body, headers=headers)
        assert again.status_code == status, (method, url, again.text)
        assert again.headers.get("Idempotent-Replayed") == "true", (method, url)
        assert again.content == first.content, (method, url)
    # each applied once: the variant put is 201 (new) on the retry too, the deleted size stays deleted
    assert client.get(f"/products/{sku}", headers=admin).status_code == 404


def test_a_retry_answers_the_first_answer_though_it_could_not_apply_now(
    client: TestClient, admin: dict[str, str]
) -> None:
    """The retry of a sale that took the last units, or of a sale or a variant put on a product since
    deleted, is still the first answer, not a refusal."""
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    everything = {"delta": -20, "reason": "sale", "expected_quantity": 20}
    first = client.post(url, json=everything, headers={**admin, **key("all-of-it")})
    assert first.status_code == 201
    again = client.post(url, json=everything, headers={**admin, **key("all-of-it")})
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (
        201,
        first.json(),
        "true",
    )
    size = f"/products/{sku}/variants/XL"
    stocked = client.put(size, json={"quantity": 3}, headers={**admin, **key("new-size")})
    assert client.delete(f"/products/{sku}", headers=admin).status_code == 204
    late = client.post(url, json=everything, headers={**admin, **key("all-of-it")})
    assert (late.status_code, late.json()) == (201, first.json())
    late_put = client.put(size, json={"quantity": 3}, headers={**admin, **key("new-size")})
    assert (late_put.status_code, late_put.json()) == (201, stocked.json())
    reused = client.post(url, json={**everything, "delta": -1}, headers={**admin, **key("all-of-it")})
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_a_failed_write_is_not_remembered(client: TestClient, admin: dict[str, str]) -> None:
    """A refusal changed nothing, so a retry with the key runs again (and may now apply)."""
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    headers = {**admin, **key("big-sale")}
    refused = client.post(url, json={"delta": -25, "reason": "sale"}, headers=headers)
    assert refused.status_code == 409
    client.post(url, json={"delta": 10, "reason": "received"}, headers=admin)
    assert client.post(url, json={"delta": -25, "reason": "sale"}, headers=headers).status_code == 201
    assert quantities(client, admin, sku)["M"] == 5


@pytest.mark.parametrize("value", ["", "k" * 256])
def test_a_bad_key_is_422_naming_the_header(client: TestClient, admin: dict[str, str], value: str) -> None:
    sku = create(client, admin)
    response = client.post(
        f"/products/{sku}/variants/M/adjustments", json=SALE, headers={**admin, **key(value)}
    )
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["Idempotency-Key"]
    assert quantities(client, admin, sku)["M"] == 20


class _Clock:
    """Stands in for the `time` module where write records read the time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def test_a_key_is_remembered_for_a_day(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from shelfwise.storage import writes

    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    assert client.post(url, json=SALE, headers={**admin, **key("daily")}).status_code == 201
    later = time.time() + 23.9 * 3600
    monkeypatch.setattr(writes, "time", _Clock(later))
    assert (
        client.post(url, json=SALE, headers={**admin, **key("daily")}).headers["Idempotent-Replayed"]
        == "true"
    )
    after_a_day = time.time() + 24.1 * 3600  # expired, though TTL may not have removed it yet
    monkeypatch.setattr(writes, "time", _Clock(after_a_day))
    fresh = client.post(url, json=SALE, headers={**admin, **key("daily")})
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers
    assert quantities(client, admin, sku)["M"] == 14


# -- compare-and-set -------------------------------------------------------------------------------


def test_an_adjustment_with_a_stale_expected_quantity_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    stale = client.post(url, json={**SALE, "expected_quantity": 19}, headers=admin)
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert (error["code"], error["quantity"], error["expected_quantity"]) == ("stale_quantity", 20, 19)
    assert quantities(client, admin, sku)["M"] == 20
    assert history(client, admin, sku, "M") == []
    fresh = client.post(url, json={**SALE, "expected_quantity": 20}, headers=admin)
    assert (fresh.status_code, fresh.json()["quantity_after"]) == (201, 17)


def test_a_variant_put_with_a_stale_expected_quantity_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M"
    stale = client.put(url, json={"quantity": 0, "expected_quantity": 21}, headers=admin)
    assert (stale.status_code, stale.json()["error"]["code"], stale.json()["error"]["quantity"]) == (
        409,
        "stale_quantity",
        20,
    )
    assert quantities(client, admin, sku)["M"] == 20
    assert client.put(url, json={"quantity": 0, "expected_quantity": 20}, headers=admin).status_code == 200
    # a size not stocked yet holds 0
    new = f"/products/{sku}/variants/XL"
    assert client.put(new, json={"quantity": 5, "expected_quantity": 1}, headers=admin).status_code == 409
    assert client.put(new, json={"quantity": 5, "expected_quantity": 0}, headers=admin).status_code == 201


# -- reasons and notes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delta": -1, "reason": "sale #1001"}, "reason"),
        ({"delta": -1}, "reason"),
        ({"delta": -1, "reason": "sale", "note": "n" * 501}, "note"),
        ({"delta": -1, "reason": "sale", "expected_quantity": -1}, "expected_quantity"),
    ],
)
def test_bad_reasons_and_notes_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    sku = create(client, admin)
    response = client.post(f"/products/{sku}/variants/M/adjustments", json=body, headers=admin)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert quantities(client, admin, sku)["M"] == 20


def test_the_history_shows_reason_and_note(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)
    url = f"/products/{sku}/variants/M/adjustments"
    client.post(url, json={"delta": -2, "reason": "damaged", "note": "  torn seam  "}, headers=admin)
    client.post(url, json={"delta": 1, "reason": "return"}, headers=admin)
    assert [(a["reason"], a["note"]) for a in history(client, admin, sku, "M")] == [
        ("return", None),
        ("damaged", "torn seam"),
    ]


# -- bulk ------------------------------------------------------------------------------------------


def test_a_bulk_adjustment_applies_every_line_and_files_each_in_its_history(
    client: TestClient, admin: dict[str, str]
) -> None:
    tee, hoodie = create(client, admin), create(client, admin, HOODIE)
    body = {
        "reason": "received",
        "note": "PO 2291",
        "lines": [
            {"sku": tee, "size": "S", "delta": 5},
            {"sku": tee.lower(), "size": "m", "delta": -2, "expected_quantity": 20},
            {"sku": hoodie, "size": "M", "delta": 7},
        ],
    }
    response = client.post("/inventory/adjustments", json=body, headers=admin)
    assert response.status_code == 201, response.text
    batch = response.json()
    assert [(a["sku"], a["size"], a["quantity_before"], a["quantity_after"]) for a in batch["lines"]] == [
        (tee, "S", 10, 15),
        (tee, "M", 20, 18),
        (hoodie, "M", 5, 12),
    ]
    assert quantities(client, admin, tee) == {"S": 15, "M": 18}
    assert quantities(client, admin, hoodie) == {"M": 12}
    filed = history(client, admin, tee, "M")
    assert [(a["batch_id"], a["reason"], a["note"], a["delta"]) for a in filed] == [
        (batch["batch_id"], "received", "PO 2291", -2)
    ]


def test_a_bulk_adjustment_with_one_refusing_line_changes_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    tee, hoodie = create(client, admin), create(client, admin, HOODIE)
    value_before = client.get("/inventory/value", headers=admin).json()["units"]
    body = {
        "reason": "cycle_count",
        "lines": [
            {"sku": tee, "size": "S", "delta": 5},
            {"sku": hoodie, "size": "M", "delta": -6},  # only 5 there
            {"sku": tee, "size": "M", "delta": 1, "expected_quantity": 3},  # 20 there
            {"sku": tee, "size": "XXL", "delta": 1},  # not stocked
        ],
    }
    response = client.post("/inventory/adjustments", json=body, headers=admin)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "adjustments_refused"
    assert error["lines"] == [
        {"index": 1, "code": "insufficient_stock", "quantity": 5},
        {"index": 2, "code": "stale_quantity", "quantity": 20},
        {"index": 3, "code": "not_found", "quantity": None},
    ]
    assert quantities(client, admin, tee) == {"S": 10, "M": 20}
    assert quantities(client, admin, hoodie) == {"M": 5}
    assert history(client, admin, tee, "S") == []
    assert client.get("/inventory/value", headers=admin).json()["units"] == value_before


def test_a_bulk_adjustment_of_99_lines_applies_at_once(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin, {**TEE, "variants": [{"size": f"{n}", "quantity": 1} for n in range(1, 34)]})
    skus = [
        sku,
        create(
            client,
            admin,
            {**TEE, "color": "white", "variants": [{"size": f"{n}", "quantity": 1} for n in range(1, 34)]},
        ),
    ]
    skus.append(
        create(
            client,
            admin,
            {**TEE, "color": "red", "variants": [{"size": f"{n}", "quantity": 1} for n in range(1, 34)]},
        )
    )
    lines = [{"sku": s, "size": f"{n}", "delta": 2} for s in skus for n in range(1, 34)]
    response = client.post(
        "/inventory/adjustments", json={"reason": "received", "lines": lines}, headers=admin
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["lines"]) == 99
    assert all(set(quantities(client, admin, s).values()) == {3} for s in skus)
    too_many = client.post(
        "/inventory/adjustments", json={"reason": "received", "lines": [*lines, lines[0]]}, headers=admin
    )
    assert too_many.status_code == 422
    assert [f["field"] for f in too_many.json()["error"]["fields"]] == ["lines"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "received", "lines": []}, "lines"),
        ({"reason": "delivery", "lines": [{"sku": "TE-0001", "size": "S", "delta": 1}]}, "reason"),
        ({"reason": "received", "lines": [{"sku": "TE-0001", "size": "S", "delta": 0}]}, "lines.0.delta"),
        (
            {
                "reason": "received",
                "lines": [
                    {"sku": "TE-0001", "size": "S", "delta": 1},
                    {"sku": "te-0001", "size": "s", "delta": 2},
                ],
            },
            "lines",
        ),
        (
            {"reason": "received", "note": "n" * 501, "lines": [{"sku": "TE-0001", "size": "S", "delta": 1}]},
            "note",
        ),
    ],
)
def test_a_bad_bulk_adjustment_is_422_naming_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    sku = create(client, admin)
    response = client.post("/inventory/adjustments", json=body, headers=admin)
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert quantities(client, admin, sku) == {"S": 10, "M": 20}


def test_bulk_adjustments_need_the_admin_group(client: TestClient, admin: dict[str, str]) -> None:
    sku = create(client, admin)
    body = {"reason": "received", "lines": [{"sku": sku, "size": "S", "delta": 1}]}
    assert client.post("/inventory/adjustments", json=body, headers=bearer("bob")).status_code == 403
    assert quantities(client, admin, sku)["S"] == 10
