"""The chat's inventory tools over the Model Context Protocol: streamable HTTP, stateless, JSON only.

One POST is one JSON-RPC message and gets one JSON answer: nothing is kept between requests (no
session id, no server-to-client stream), which is what a buffered Lambda route can serve. Two eras
of the protocol are answered on the same URL:

- the handshake era (2025-06-18, 2025-11-25): `initialize` negotiates the version (nothing is
  remembered: every later request stands alone), `notifications/initialized` and every other
  notification is 202 with no body;
- the stateless era (2026-07-28): no handshake; every request names its version and the client's
  capabilities in `params._meta`, and `server/discover` says what this server speaks.

The tools are the chat's own (`shelfwise.chat.tools.TOOLS`, run by `InventoryTools`): the same
names, descriptions and JSON schemas, read-only, each result stamped `read_at`. Arguments are checked
against the tool's schema before it runs. Protocol errors are JSON-RPC errors (HTTP 400, or 404 for
an unknown method in the stateless era, as that era's spec asks; 200 in the handshake era once the
message itself was a valid request), a tool that fails answers `isError: true`. Bad input is never
a 5xx.

Nothing here knows HTTP beyond the status each reply asks for: web/routers/mcp.py is the route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shelfwise import clock
from shelfwise.chat.tools import TOOLS, InventoryTools
from shelfwise.observability import emit, logger

HANDSHAKE_VERSIONS = ("2025-06-18", "2025-11-25")
STATELESS_VERSIONS = ("2026-07-28",)
SUPPORTED_VERSIONS = (*HANDSHAKE_VERSIONS, *STATELESS_VERSIONS)

PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

# The HTTP status of a JSON-RPC error in the stateless era (its spec maps them); in the handshake
# era only a message that is not a valid request is answered with an HTTP error.
_STATELESS_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
INSTRUCTIONS = (
    "Read-only tools over the store's live inventory: search products, one product with its sizes "
    "and stock, the low-stock list and the stock's value. Every result says when it was read "
    "(read_at); stock changes all the time, so look it up again rather than remember it."
)
# Every tool only reads the inventory (MCP's tool annotations say so to the client).
_ANNOTATIONS = {
    "readOnlyHint": True,
    "destructiveHint": False,
    "idempotentHint": True,
    "openWorldHint": False,
}


def tool_definitions() -> list[dict[str, Any]]:
    """The chat's tool definitions as MCP tools: the same names, descriptions and schemas."""
    return [
        {
            "name": spec["name"],
            "description": spec["description"],
            "inputSchema": spec["parameters"],
            "annotations": dict(_ANNOTATIONS),
        }
        for spec in (tool["function"] for tool in TOOLS)
    ]


_SCHEMAS: dict[str, dict[str, Any]] = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def argument_problems(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with `arguments` for a tool's JSON schema (the subset the tools use: an object
    of typed properties with enum, minimum, maximum, required and additionalProperties)."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    problems = [f"{name!r} is required" for name in schema.get("required", []) if name not in arguments]
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            if schema.get("additionalProperties") is False:
                problems.append(f"{name!r} is not an argument of this tool")
            continue
        kind = spec.get("type")
        if kind in _TYPES and not _TYPES[kind](value):
            problems.append(f"{name!r} must be a{'n' if kind[0] in 'aeiou' else ''} {kind}")
            continue
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"{name!r} must be one of {', '.join(map(str, spec['enum']))}")
        if "minimum" in spec and value < spec["minimum"]:
            problems.append(f"{name!r} must be at least {spec['minimum']}")
        if "maximum" in spec and value > spec["maximum"]:
            problems.append(f"{name!r} must be at most {spec['maximum']}")
    return problems


@dataclass(frozen=True)
class Reply:
    """What to answer one POST: an HTTP status and a JSON-RPC message, or 202 and no body."""

    status: int
    body: dict[str, Any] | None = None


ACCEPTED = Reply(202)


class ProtocolError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _error(request_id: Any, error: ProtocolError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class McpServer:
    """Answers one JSON-RPC message at a time with the inventory tools. Holds no per-client state."""

    def __init__(self, tools: Callable[[], InventoryTools], *, version: str, name: str = "shelfwise") -> None:
        """`tools` gives the runner when a tool is first called: listing them needs no storage
        client (on a cold start, building one costs more than the rest of an MCP answer)."""
        self._tools = tools
        self.info = {"name": name, "title": "shelfwise inventory", "version": version}
        self._methods: dict[str, Callable[[dict[str, Any], str | None], dict[str, Any]]] = {
            "initialize": self._initialize,
            "server/discover": self._discover,
            "ping": lambda _params, _version: {},
            "tools/list": self._list_tools,
            "tools/call": self._call_tool,
        }

    def handle(self, raw: bytes, headers: Mapping[str, str]) -> Reply:
        """One POST body (and its headers, any case) -> the reply."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return Reply(400, _error(None, ProtocolError(PARSE_ERROR, "Parse error: the body is not JSON")))
        if isinstance(message, list):
            error = ProtocolError(INVALID_REQUEST, "Invalid Request: send one JSON-RPC message per POST")
            return Reply(400, _error(None, error))
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            error = ProtocolError(INVALID_REQUEST, 'Invalid Request: JSON-RPC 2.0 object ("jsonrpc": "2.0")')
            return Reply(400, _error(None, error))
        method = message.get("method")
        if method is None and ("result" in message or "error" in message):
            return ACCEPTED  # a response to a request of ours: there are none, nothing to do
        if "id" not in message:
            return ACCEPTED if isinstance(method, str) else Reply(400, _error(None, _invalid("method")))
        request_id = message["id"]
        if not _valid_id(request_id):
            return Reply(400, _error(None, _invalid("id (a string or an integer)")))
        if not isinstance(method, str):
            return Reply(400, _error(request_id, _invalid("method")))
        params = message.get("params")
        stateless = (
            isinstance(params, dict)
            and isinstance(params.get("_meta"), dict)
            and (PROTOCOL_VERSION_META_KEY in params["_meta"])
        )
        try:
            if params is not None and not isinstance(params, dict):
                raise ProtocolError(INVALID_PARAMS, "Invalid params: params must be an object")
            version = self._version(method, params or {}, headers, stateless=stateless)
            handler = self._methods.get(method)
            if handler is None:
                raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
            result = handler(params or {}, version)
        except ProtocolError as error:
            status = _STATELESS_STATUS.get(error.code, 200) if stateless else 200
            return Reply(status, _error(request_id, error))
        except Exception:
            logger.exception("MCP request failed", extra={"method": method})
            failure = ProtocolError(INTERNAL_ERROR, "Internal error: something went wrong on our side")
            return Reply(500, _error(request_id, failure))
        if stateless:
            result.setdefault("resultType", "complete")
        return Reply(200, {"jsonrpc": "2.0", "id": request_id, "result": result})

    # -- protocol versions ------------------------------------------------------------------------
    def _version(
        self, method: str, params: Mapping[str, Any], headers: Mapping[str, str], *, stateless: bool
    ) -> str | None:
        """The request's protocol version: its envelope's (stateless era), else its header (handshake
        era, after `initialize`). An unsupported one is refused; no header at all is let through."""
        header = headers.get(PROTOCOL_VERSION_HEADER)
        if stateless:
            meta: Mapping[str, Any] = params["_meta"]
            version = meta[PROTOCOL_VERSION_META_KEY]
            if not isinstance(version, str):
                raise ProtocolError(
                    INVALID_PARAMS, f"Invalid params: {PROTOCOL_VERSION_META_KEY} must be a string"
                )
            if header is not None and header != version:
                raise ProtocolError(
                    HEADER_MISMATCH, "MCP-Protocol-Version does not match the request's protocol version"
                )
            if headers.get(METHOD_HEADER) not in (None, method):
                raise ProtocolError(HEADER_MISMATCH, "Mcp-Method does not match the request's method")
            if version not in STATELESS_VERSIONS:
                raise _unsupported(version)
            if not isinstance(meta.get(CLIENT_CAPABILITIES_META_KEY), dict):
                raise ProtocolError(
                    INVALID_PARAMS, f"Invalid params: _meta needs {CLIENT_CAPABILITIES_META_KEY} (an object)"
                )
            return version
        if method == "server/discover":
            raise ProtocolError(
                INVALID_PARAMS, f"Invalid params: server/discover needs _meta.{PROTOCOL_VERSION_META_KEY}"
            )
        if method != "initialize" and header is not None and header not in SUPPORTED_VERSIONS:
            raise _unsupported(header)
        return header

    def _initialize(self, params: dict[str, Any], _: str | None) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        if not isinstance(asked, str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: protocolVersion (a string) is required")
        # Answer the client's version when it is one we speak, else our newest (the client decides).
        version = asked if asked in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": self.info,
            "instructions": INSTRUCTIONS,
        }

    def _discover(self, _params: dict[str, Any], _version: str | None) -> dict[str, Any]:
        return {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": {"tools": {"listChanged": False}},
            "instructions": INSTRUCTIONS,
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": {SERVER_INFO_META_KEY: self.info},
        }

    # -- tools -------------------------------------------------------------------------------------
    def _list_tools(self, _params: dict[str, Any], version: str | None) -> dict[str, Any]:
        result: dict[str, Any] = {"tools": tool_definitions()}
        if version in STATELESS_VERSIONS:
            result.update(ttlMs=0, cacheScope="private")
        return result

    def _call_tool(self, params: dict[str, Any], _: str | None) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: name (a string) is required")
        schema = _SCHEMAS.get(name)
        if schema is None:
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}", {"tools": sorted(_SCHEMAS)})
        arguments = params.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise ProtocolError(INVALID_PARAMS, "Invalid params: arguments must be an object")
        if problems := argument_problems(schema, arguments):
            raise ProtocolError(
                INVALID_PARAMS, f"Invalid arguments for {name}: {'; '.join(problems)}", {"problems": problems}
            )
        result, ok = self._tools().run(name, json.dumps(arguments))
        emit("McpToolCalls", "Count", 1, tool=name, outcome="ok" if ok else "error")  # bounded: known tools
        read_at = result.pop("as_of", None) or clock.now_iso()
        structured = {"read_at": read_at, **result}
        return {
            "content": [{"type": "text", "text": json.dumps(structured, ensure_ascii=False)}],
            "structuredContent": structured,
            "isError": not ok,
        }


def _invalid(what: str) -> ProtocolError:
    return ProtocolError(INVALID_REQUEST, f"Invalid Request: {what} is missing or malformed")


def _unsupported(version: str) -> ProtocolError:
    return ProtocolError(
        UNSUPPORTED_PROTOCOL_VERSION,
        f"Unsupported protocol version: {version}",
        {"supported": list(SUPPORTED_VERSIONS), "requested": version},
    )


# -- the protected resource's metadata (RFC 9728) ---------------------------------------------------
SCOPES = ("openid", "email", "profile")


def cognito_issuer(user_pool_id: str) -> str:
    """A user pool's token issuer (its region is the pool id's prefix)."""
    region = user_pool_id.split("_", 1)[0]
    return f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"


def protected_resource_metadata(resource: str, *, base_url: str, user_pool_id: str | None) -> dict[str, Any]:
    """What an MCP client reads to find out how to get a token for `resource` (the /mcp URL): the
    user pool's issuer as the authorization server (on AWS), else the app itself at `base_url`
    (local dev tokens, which no OAuth flow hands out: paste one into the client's Authorization
    header)."""
    return {
        "resource": resource,
        "authorization_servers": [cognito_issuer(user_pool_id) if user_pool_id else base_url],
        "bearer_methods_supported": ["header"],
        "scopes_supported": list(SCOPES),
        "resource_name": "shelfwise inventory (MCP)",
    }
