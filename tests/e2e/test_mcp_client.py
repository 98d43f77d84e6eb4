"""The official MCP Python client (the `mcp` SDK) over HTTP against `make run`'s stack, started in
its own process as a user starts it, with the dev token its banner prints: it lists the inventory
tools and calls each one, in both eras of the protocol (the `initialize` handshake, and 2026-07-28's
`server/discover` with no handshake). Without a token: 401 naming the protected-resource document,
which is served without one; GET and DELETE are 405."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from shelfwise.chat.tools import TOOLS
from tests.fixtures.local_stack import LocalStack

pytestmark = pytest.mark.slow

CALLS: dict[str, dict[str, Any]] = {
    "search_products": {"query": "essential tee"},
    "get_product": {"sku": "TE-0001"},
    "list_low_stock": {"limit": 5},
    "get_inventory_value": {},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data: Path = tmp_path_factory.mktemp("mcp-stack")
    with LocalStack(data_dir=data) as running:
        yield running


async def _session(url: str, token: str, mode: str) -> dict[str, Any]:
    """Connect as an MCP client would, list the tools, call each: what it saw."""
    seen: dict[str, Any] = {}
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        seen["protocol_version"] = client.protocol_version
        seen["tools"] = (await client.list_tools()).tools
        seen["results"] = {name: await client.call_tool(name, args) for name, args in CALLS.items()}
        seen["missing"] = await client.call_tool("get_product", {"sku": "TE-9999"})
        if mode == "legacy":  # ping is gone from the 2026-07-28 protocol (the SDK warns of it anyway)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.send_ping()
    return seen


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
def test_the_official_client_lists_and_calls_every_tool(stack: LocalStack, mode: str, version: str) -> None:
    seen = anyio.run(_session, f"{stack.url}/mcp", stack.token, mode)
    assert seen["protocol_version"] == version
    assert [(t.name, t.description, t.input_schema) for t in seen["tools"]] == [
        (t["function"]["name"], t["function"]["description"], t["function"]["parameters"]) for t in TOOLS
    ]
    for name, result in seen["results"].items():
        assert result.is_error is False, (name, result)
        structured = result.structured_content
        assert structured is not None
        assert structured["read_at"].endswith("Z"), name
        assert json.loads(result.content[0].text) == structured, name
    product = seen["results"]["get_product"].structured_content["product"]
    assert product["sku"] == "TE-0001"
    assert {v["size"]: v["quantity"] for v in product["variants"]}["M"] == 17  # the demo inventory
    assert seen["results"]["get_inventory_value"].structured_content["products"] == 40
    assert seen["results"]["search_products"].structured_content["products"]
    assert seen["missing"].is_error is True


def test_without_a_token_the_answer_names_the_protected_resource_document(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        refused = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
        metadata_url = f"{stack.url}/.well-known/oauth-protected-resource"
        assert refused.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata_url}"'
        document = http.get(metadata_url)
        assert document.status_code == 200
        body = document.json()
        assert body["resource"] == f"{stack.url}/mcp"
        assert body["authorization_servers"] == [stack.url]  # dev tokens: the app itself
        assert body["bearer_methods_supported"] == ["header"]
        assert body["scopes_supported"]
        for method in ("GET", "DELETE"):
            answer = http.request(method, "/mcp", headers=stack.headers)
            assert answer.status_code == 405, method
            assert answer.headers["Allow"] == "POST"


def test_the_official_client_without_a_token_is_refused(stack: LocalStack) -> None:
    async def connect() -> None:
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            Client(streamable_http_client(f"{stack.url}/mcp", http_client=http), mode="legacy") as client,
        ):
            await client.list_tools()

    with pytest.raises(BaseExceptionGroup) as caught:  # the SDK's task groups wrap its error
        anyio.run(connect)
    errors = _leaves(caught.value)
    assert errors
    assert all(isinstance(e, MCPError) for e in errors), errors  # refused, not a crash or a hang


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in _leaves(inner)]
    return [group]
