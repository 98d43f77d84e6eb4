"""POST /mcp: the inventory tools over MCP (stateless, JSON answers); the protected-resource
document that tells an MCP client how to get a token for it (RFC 9728, no token needed).

The MCP server (shelfwise.mcp) is imported when one of these routes is first called, not when the
app is created: a function that never serves MCP never loads it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from shelfwise.web.deps import McpCallerDep, ServicesDep, SettingsDep
from shelfwise.web.errors import error_body
from shelfwise.web.urls import public_base_url

router = APIRouter(tags=["mcp"])

MCP_PATH = "/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource"

NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    MCP_PATH,
    responses={
        200: {"description": "a JSON-RPC result, or a JSON-RPC error about a valid request"},
        202: {"description": "a notification (or a response): accepted, no body"},
        400: {"description": "not a JSON-RPC request (parse error, batch, bad envelope): a JSON-RPC error"},
        401: {"description": "no usable token: `WWW-Authenticate` names the resource metadata document"},
    },
    # the body is read raw (a parse error is the server's JSON-RPC answer, not a 422): documented here
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "title": "JSON-RPC 2.0 message"}}},
        }
    },
)
async def mcp(
    request: Request,
    services: ServicesDep,
    _: McpCallerDep,
) -> Response:
    """MCP's streamable HTTP transport, stateless: one JSON-RPC message in, one JSON answer out
    (protocol 2025-06-18 and later: `initialize`, `server/discover`, `ping`, `tools/list`,
    `tools/call`). The tools are the chat assistant's read-only inventory tools."""
    raw = await request.body()
    reply = await run_in_threadpool(services.mcp.handle, raw, request.headers)
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status, headers=NO_STORE)


@router.api_route(MCP_PATH, methods=["GET", "DELETE"], include_in_schema=False)
def mcp_no_stream() -> JSONResponse:
    """No server-to-client stream and no session to end: a stateless server answers 405 (a client
    would otherwise keep reconnecting)."""
    return JSONResponse(
        error_body("method_not_allowed", "this MCP server is stateless: POST one JSON-RPC message"),
        status_code=405,
        headers={"Allow": "POST"},
    )


@router.get(METADATA_PATH)
def resource_metadata(request: Request, settings: SettingsDep) -> JSONResponse:
    """The MCP endpoint's protected-resource metadata (RFC 9728): where to get a token for it (the
    Cognito user pool on AWS), the header it is sent in, the scopes. No token needed."""
    from shelfwise.mcp import protected_resource_metadata

    base = public_base_url(request, settings)
    pool = settings.cognito_user_pool_id if settings.auth_mode == "cognito" else None
    document = protected_resource_metadata(base + MCP_PATH, base_url=base, user_pool_id=pool)
    return JSONResponse(document, headers=NO_STORE)
