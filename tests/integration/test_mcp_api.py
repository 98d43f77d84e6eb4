"""POST /mcp on the real app (moto and DynamoDB Local): both protocol eras, every tool, the same
definitions as the chat's, identity, and bad input answered as JSON-RPC errors, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shelfwise.chat.tools import TOOLS
from shelfwise.inventory.service import InventoryService
from shelfwise.mcp import (
    CLIENT_CAPABILITIES_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from shelfwise.observability import metrics
from shelfwise.web.app import create_app
from tests.fixtures.app import bearer, make_services
from tests.fixtures.catalog import black_tee
from tests.fixtures.dynamodb import DynamoTarget

MODERN = "2026-07-28"
HANDSHAKE = "2025-06-18"


@pytest.fixture
def tee(inventory: InventoryService) -> str:
    return inventory.create_product(black_tee(("M", 17), ("L", 2)), actor="test").sku


def rpc(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        message["params"] = params
    return message


def modern(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> dict[str, Any]:
    meta = {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}
    return rpc(method, {**(params or {}), "_meta": meta}, id_)


def post(client: TestClient, body: Any, *, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/mcp",
        content=raw,
        headers={"Content-Type": "application/json", **bearer("ada"), **(headers or {})},
    )


def test_initialize_then_notifications_then_tools_stateless(client: TestClient) -> None:
    response = post(
        client,
        rpc("initialize", {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "t"}}),
    )
    assert response.status_code == 200
    assert "mcp-session-id" not in response.headers  # stateless: no session to keep
    result = response.json()["result"]
    assert result["protocolVersion"] == HANDSHAKE
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "shelfwise"
    # a version we do not speak is answered with our newest (the client decides)
    old = post(client, rpc("initialize", {"protocolVersion": "2024-11-05", "capabilities": {}}))
    assert old.json()["result"]["protocolVersion"] == "2025-11-25"
    done = post(client, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (done.status_code, done.content) == (202, b"")
    ping = post(client, rpc("ping", id_="p-1"), headers={"MCP-Protocol-Version": HANDSHAKE})
    assert ping.json() == {"jsonrpc": "2.0", "id": "p-1", "result": {}}


def test_the_tools_are_the_chats_own_definitions(client: TestClient) -> None:
    tools = post(client, rpc("tools/list"), headers={"MCP-Protocol-Version": HANDSHAKE}).json()["result"]
    assert [(t["name"], t["description"], t["inputSchema"]) for t in tools["tools"]] == [
        (t["function"]["name"], t["function"]["description"], t["function"]["parameters"]) for t in TOOLS
    ]
    assert all(t["annotations"]["readOnlyHint"] is True for t in tools["tools"])


@pytest.mark.parametrize("era", ["handshake", "stateless"])
def test_every_tool_answers_with_its_result_and_when_it_was_read(
    client: TestClient, tee: str, era: str
) -> None:
    calls = {
        "search_products": {"query": "essential"},
        "get_product": {"sku": tee},
        "list_low_stock": {"limit": 5},
        "get_inventory_value": {},
    }
    make = modern if era == "stateless" else rpc
    for name, arguments in calls.items():
        response = post(client, make("tools/call", {"name": name, "arguments": arguments}))
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["isError"] is False, result
        structured = result["structuredContent"]
        assert structured["read_at"].endswith("Z")
        assert "as_of" not in structured
        assert json.loads(result["content"][0]["text"]) == structured
        assert (result.get("resultType") == "complete") is (era == "stateless")
    found = post(client, make("tools/call", {"name": "get_product", "arguments": {"sku": tee}}))
    variants = found.json()["result"]["structuredContent"]["product"]["variants"]
    assert {v["size"]: v["quantity"] for v in variants} == {"M": 17, "L": 2}
    low = post(client, make("tools/call", {"name": "list_low_stock"})).json()["result"]
    assert [(i["sku"], i["size"]) for i in low["structuredContent"]["items"]] == [(tee, "L")]


def test_a_tool_that_fails_is_an_error_result(client: TestClient) -> None:
    response = post(client, rpc("tools/call", {"name": "get_product", "arguments": {"sku": "TE-9999"}}))
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert "error" in result["structuredContent"]
    assert result["structuredContent"]["read_at"]


def test_discover_and_versions_of_the_stateless_era(client: TestClient) -> None:
    found = post(client, modern("server/discover"), headers={"MCP-Protocol-Version": MODERN})
    assert found.status_code == 200
    result = found.json()["result"]
    assert MODERN in result["supportedVersions"]
    assert HANDSHAKE in result["supportedVersions"]
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["resultType"] == "complete"
    assert result["_meta"][SERVER_INFO_META_KEY]["name"] == "shelfwise"
    later = modern("tools/list")
    later["params"]["_meta"][PROTOCOL_VERSION_META_KEY] = "2099-01-01"
    refused = post(client, later)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == -32022
    assert error["data"]["requested"] == "2099-01-01"
    assert MODERN in error["data"]["supported"]
    mismatch = post(client, modern("tools/list"), headers={"MCP-Protocol-Version": "2025-11-25"})
    assert (mismatch.status_code, mismatch.json()["error"]["code"]) == (400, -32020)
    unknown = post(client, modern("resources/list"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, -32601)
    listed = post(client, modern("tools/list")).json()["result"]
    assert (listed["resultType"], listed["ttlMs"], listed["cacheScope"]) == ("complete", 0, "private")


BAD_INPUT: list[tuple[str, Any, int, int, Any]] = [
    # name, body, HTTP status, JSON-RPC code, id answered
    ("not json", b"{nope", 400, -32700, None),
    ("not utf-8", b"\xff\xfe", 400, -32700, None),
    ("empty body", b"", 400, -32700, None),
    ("a batch", [rpc("ping")], 400, -32600, None),
    ("a string", "ping", 400, -32600, None),
    ("no jsonrpc", {"id": 1, "method": "ping"}, 400, -32600, None),
    ("jsonrpc 1.0", {"jsonrpc": "1.0", "id": 1, "method": "ping"}, 400, -32600, None),
    ("null id", {"jsonrpc": "2.0", "id": None, "method": "ping"}, 400, -32600, None),
    ("bool id", {"jsonrpc": "2.0", "id": True, "method": "ping"}, 400, -32600, None),
    ("no method", {"jsonrpc": "2.0", "id": 7}, 400, -32600, 7),
    ("method not a string", {"jsonrpc": "2.0", "id": 7, "method": 3}, 400, -32600, 7),
    ("unknown method", rpc("resources/list", id_=8), 200, -32601, 8),
    (
        "params not an object",
        {"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": [1]},
        200,
        -32602,
        9,
    ),
    ("unknown tool", rpc("tools/call", {"name": "delete_everything"}), 200, -32602, 1),
    ("tool name missing", rpc("tools/call", {"arguments": {}}), 200, -32602, 1),
    ("arguments not an object", rpc("tools/call", {"name": "get_product", "arguments": "x"}), 200, -32602, 1),
    (
        "required argument missing",
        rpc("tools/call", {"name": "get_product", "arguments": {}}),
        200,
        -32602,
        1,
    ),
    (
        "wrong argument type",
        rpc("tools/call", {"name": "list_low_stock", "arguments": {"limit": "5"}}),
        200,
        -32602,
        1,
    ),
    (
        "argument out of range",
        rpc("tools/call", {"name": "list_low_stock", "arguments": {"limit": 500}}),
        200,
        -32602,
        1,
    ),
    (
        "argument not in the enum",
        rpc("tools/call", {"name": "search_products", "arguments": {"query": "x", "category": "hats"}}),
        200,
        -32602,
        1,
    ),
    (
        "unexpected argument",
        rpc("tools/call", {"name": "get_inventory_value", "arguments": {"sku": "TE-0001"}}),
        200,
        -32602,
        1,
    ),
    ("initialize without a version", rpc("initialize", {"capabilities": {}}), 200, -32602, 1),
    ("discover without an envelope", rpc("server/discover"), 200, -32602, 1),
    (
        "unsupported version header",
        rpc("tools/list"),
        200,
        -32022,
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "status", "code", "answered_id"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT]
)
def test_bad_input_is_a_json_rpc_error_never_a_5xx(
    client: TestClient, name: str, body: Any, status: int, code: int, answered_id: Any
) -> None:
    headers = {"MCP-Protocol-Version": "1999-01-01"} if name == "unsupported version header" else None
    response = post(client, body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == answered_id
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


def test_notifications_and_responses_are_accepted_without_a_body(client: TestClient) -> None:
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        {"jsonrpc": "2.0", "method": "notifications/whatever"},
        {"jsonrpc": "2.0", "id": 5, "result": {}},
    ):
        response = post(client, message)
        assert (response.status_code, response.content) == (202, b""), message


def test_get_and_delete_are_405(client: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = client.request(method, "/mcp", headers=bearer("ada"))
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_no_token_is_401_naming_the_resource_metadata(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YTpi"}):
        response = client.post("/mcp", json=rpc("tools/list"), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            'Bearer resource_metadata="http://testserver/.well-known/oauth-protected-resource"'
        )
        assert response.json()["error"]["code"] == "unauthenticated"
    other = client.get("/products")  # the other routes keep their plain challenge
    assert other.headers["www-authenticate"] == "Bearer"
    document = client.get("/.well-known/oauth-protected-resource")
    assert document.status_code == 200
    assert document.json() == {
        "resource": "http://testserver/mcp",
        "authorization_servers": ["http://testserver"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["openid", "email", "profile"],
        "resource_name": "shelfwise inventory (MCP)",
    }


def test_on_aws_the_document_names_the_user_pool_and_the_stage_url(ddb: DynamoTarget) -> None:
    services = make_services(ddb, auth_mode="cognito", cognito_user_pool_id="eu-west-1_AbC123xyz")
    event = {
        "path": "/.well-known/oauth-protected-resource",
        "headers": {"Host": "abc123.execute-api.eu-west-1.amazonaws.com", "X-Forwarded-Proto": "https"},
        "requestContext": {"path": "/prod/.well-known/oauth-protected-resource", "stage": "prod"},
    }
    app = create_app(services=services)

    async def with_event(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "aws.event": event}, receive, send)

    with TestClient(with_event) as client:
        document = client.get("/.well-known/oauth-protected-resource").json()
        unauthenticated = client.post("/mcp", json=rpc("tools/list"))
    base = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
    assert document["resource"] == f"{base}/mcp"
    assert document["authorization_servers"] == [
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123xyz"
    ]
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource"'
    )


def test_tool_calls_are_counted_by_tool_and_outcome(
    client: TestClient, tee: str, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics.clear_metrics()
    capsys.readouterr()
    post(client, rpc("tools/call", {"name": "get_product", "arguments": {"sku": tee}}))
    post(client, rpc("tools/call", {"name": "get_product", "arguments": {"sku": "TE-9999"}}))
    post(client, rpc("tools/call", {"name": "nope"}))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"McpToolCalls"' in line]
    assert [(line["tool"], line["outcome"], line["McpToolCalls"]) for line in lines] == [
        ("get_product", "ok", [1.0]),
        ("get_product", "error", [1.0]),
    ]
