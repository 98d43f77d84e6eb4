"""FastAPI dependencies: settings, services and the caller, each an Annotated type the routes use."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shelfwise.chat.service import ChatService
from shelfwise.errors import Forbidden, ResourceUnauthenticated, Unauthenticated
from shelfwise.idempotency import IdempotentRequest, fingerprint
from shelfwise.identity import Caller, caller_from_claims, verify_dev_token
from shelfwise.inventory.service import InventoryService
from shelfwise.services import Services
from shelfwise.settings import Settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_inventory(services: ServicesDep) -> InventoryService:
    return services.inventory


InventoryDep = Annotated[InventoryService, Depends(get_inventory)]


def get_chat(services: ServicesDep) -> ChatService:
    return services.chat


ChatDep = Annotated[ChatService, Depends(get_chat)]


def _cognito_claims(request: Request) -> dict[str, Any] | None:
    event = request.scope.get("aws.event") or {}
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = authorizer.get("claims") or (authorizer.get("jwt") or {}).get("claims")
    return claims if isinstance(claims, dict) and claims else None


_bearer = HTTPBearer(auto_error=False, description="Cognito ID token on AWS; `shelfwise dev-token` locally")


def current_caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The one identity dependency. On AWS, API Gateway's Cognito authorizer has already verified the
    token and put its claims in the request context; locally the app verifies its own dev tokens."""
    settings = services.settings
    if settings.auth_mode == "cognito":
        claims = _cognito_claims(request)
        if claims is None:
            raise Unauthenticated("missing or invalid bearer token")
        return caller_from_claims(claims, settings.admin_group)
    if credentials is None or not credentials.credentials.strip():
        raise Unauthenticated("missing bearer token: send `Authorization: Bearer <token>`")
    return verify_dev_token(
        services.local_signing_key, credentials.credentials.strip(), admin_group=settings.admin_group
    )


CallerDep = Annotated[Caller, Depends(current_caller)]


def mcp_caller(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The same identity as every route; a 401 also names the protected-resource document (RFC 9728),
    which is how an MCP client finds where to sign in."""
    try:
        return current_caller(request, services, credentials)
    except Unauthenticated as exc:
        from shelfwise.web.routers.mcp import METADATA_PATH
        from shelfwise.web.urls import public_base_url

        metadata = public_base_url(request, services.settings) + METADATA_PATH
        raise ResourceUnauthenticated(exc.message, resource_metadata=metadata) from exc


McpCallerDep = Annotated[Caller, Depends(mcp_caller)]


async def idempotent_request(
    request: Request,
    caller: CallerDep,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="send the same key to retry a write safely: it is applied once per key "
            "(per caller, 24 h); a repeat answers the first answer with `Idempotent-Replayed: true`",
        ),
    ] = None,
) -> IdempotentRequest | None:
    """The write's Idempotency-Key, with a fingerprint of what it asks (method, path, JSON body)."""
    if key is None:
        return None
    raw = await request.body()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    return IdempotentRequest(caller.user_id, key, fingerprint(request.method, request.url.path, body))


IdempotencyDep = Annotated[IdempotentRequest | None, Depends(idempotent_request)]


def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise Forbidden("this needs the inventory admin group")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
