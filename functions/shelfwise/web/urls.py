"""The app's public base URL, as the caller reached it (no trailing slash)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from shelfwise.settings import Settings


def public_base_url(request: Request, settings: Settings) -> str:
    """SHELFWISE_PUBLIC_URL when set; on API Gateway the scheme and host the client used plus the
    stage (or a custom domain's base path): what the request context's path has before the route's
    own path; otherwise (uvicorn) the request's base URL."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    event: Any = request.scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext") or {}
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        host = headers.get("host") or context.get("domainName")
        if host:
            scheme = headers.get("x-forwarded-proto", "https").split(",")[0].strip() or "https"
            full, path = context.get("path"), event.get("path")
            prefix = ""
            if isinstance(full, str) and isinstance(path, str) and path and full.endswith(path):
                prefix = full[: len(full) - len(path)].rstrip("/")
            return f"{scheme}://{host}{prefix}"
    return str(request.base_url).rstrip("/")
