"""Conversation CRUD and isolation through HTTP (moto and DynamoDB Local)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.app import bearer


def test_create_get_list_patch_delete(client: TestClient, user: dict[str, str]) -> None:
    created = client.post("/conversations", json={}, headers=user)
    assert created.status_code == 201
    conversation = created.json()
    assert conversation["prompt_key"] == "inventory-assistant"
    assert conversation["title"] is None
    assert conversation["message_count"] == 0
    assert conversation["summary"]["through_seq"] == 0
    assert created.headers["Location"] == f"/conversations/{conversation['id']}"

    second = client.post(
        "/conversations", json={"prompt_key": "store-manager", "title": "Monday reorder"}, headers=user
    ).json()
    assert (second["title"], second["title_source"], second["prompt_key"]) == (
        "Monday reorder",
        "user",
        "store-manager",
    )
    listed = client.get("/conversations", headers=user).json()
    assert [c["id"] for c in listed["items"]] == [second["id"], conversation["id"]]  # newest first

    patched = client.patch(f"/conversations/{conversation['id']}", json={"title": "Tee stock"}, headers=user)
    assert (patched.json()["title"], patched.json()["title_source"]) == ("Tee stock", "user")
    assert client.get(f"/conversations/{conversation['id']}", headers=user).json()["title"] == "Tee stock"

    assert client.delete(f"/conversations/{conversation['id']}", headers=user).status_code == 204
    assert client.get(f"/conversations/{conversation['id']}", headers=user).status_code == 404
    assert [c["id"] for c in client.get("/conversations", headers=user).json()["items"]] == [second["id"]]


def test_bad_conversation_input(client: TestClient, user: dict[str, str]) -> None:
    unknown = client.post("/conversations", json={"prompt_key": "pirate"}, headers=user)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["field"] == "prompt_key"
    assert client.post("/conversations", json={"title": ""}, headers=user).status_code == 422
    assert client.get("/conversations", headers=user).json()["items"] == []


def test_a_client_may_choose_the_conversation_id(client: TestClient, user: dict[str, str]) -> None:
    chosen = "c0ffee0000000000000000000000beef"
    created = client.post("/conversations", json={"id": chosen}, headers=user)
    assert created.status_code == 201
    assert created.json()["id"] == chosen
    assert created.headers["Location"] == f"/conversations/{chosen}"
    again = client.post("/conversations", json={"id": chosen, "title": "twice"}, headers=user)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_exists"
    assert client.get(f"/conversations/{chosen}", headers=user).json()["title"] is None  # unchanged
    # Ids live under their user's key: another user may hold the same one, and sees only theirs.
    other = bearer("mallory")
    assert (
        client.post("/conversations", json={"id": chosen, "title": "hers"}, headers=other).status_code == 201
    )
    assert client.get(f"/conversations/{chosen}", headers=user).json()["title"] is None
    for bad in (
        "C0FFEE0000000000000000000000BEEF",
        "c0ffee",
        "../../etc",
        "c0ffee00-0000-0000-0000-00000000beef",
    ):
        refused = client.post("/conversations", json={"id": bad}, headers=user)
        assert refused.status_code == 422, bad
    # Deleted, the id may be used again.
    assert client.delete(f"/conversations/{chosen}", headers=user).status_code == 204
    assert client.post("/conversations", json={"id": chosen}, headers=user).status_code == 201


def test_another_users_conversation_is_404_on_every_route(client: TestClient, user: dict[str, str]) -> None:
    mine = client.post("/conversations", json={"title": "mine"}, headers=user).json()["id"]
    other = bearer("mallory")
    attempts = [
        client.get(f"/conversations/{mine}", headers=other),
        client.patch(f"/conversations/{mine}", json={"title": "hacked"}, headers=other),
        client.delete(f"/conversations/{mine}", headers=other),
        client.get(f"/conversations/{mine}/messages", headers=other),
        client.post(
            f"/conversations/{mine}/messages",
            json={"content": "hi"},
            headers={**other, "Accept": "application/json"},
        ),
    ]
    assert [a.status_code for a in attempts] == [404] * len(attempts)
    assert client.get("/conversations", headers=other).json()["items"] == []
    still = client.get(f"/conversations/{mine}", headers=user).json()
    assert (still["title"], still["message_count"]) == ("mine", 0)


def test_conversation_pages(client: TestClient, user: dict[str, str]) -> None:
    made = [client.post("/conversations", json={}, headers=user).json()["id"] for _ in range(5)]
    first = client.get("/conversations", params={"limit": 2}, headers=user).json()
    seen = [c["id"] for c in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/conversations", params={"limit": 2, "cursor": cursor}, headers=user).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(made))
    # a cursor from one user's list is refused for another's
    foreign = client.get("/conversations", params={"cursor": first["next_cursor"]}, headers=bearer("mallory"))
    assert foreign.status_code == 400


def test_prompts_lists_personas(client: TestClient, user: dict[str, str]) -> None:
    body = client.get("/prompts", headers=user).json()
    assert body["default"] == "inventory-assistant"
    assert body["next_cursor"] is None, "the list shape every list answers"
    assert {"inventory-assistant", "store-manager", "floor-associate"} <= {p["key"] for p in body["items"]}
    assert client.get("/prompts").status_code == 401
