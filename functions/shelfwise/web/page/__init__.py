"""The chat page at GET /, served entirely by the app: its assets come from this package (no CDN, no
build step), so it works on a machine with no internet. The page needs no token; everything it calls
is the API with the caller's token.

Every URL on the page is relative to it, so it also works under API Gateway's stage prefix
(https://.../Prod/). With SHELFWISE_AUTH_MODE=local the app also offers POST /local/sign-in, which
mints a dev token for the page's "Sign in (local)" button; the route does not exist otherwise (a 404),
and local auth never runs on Lambda itself (identity.refuse_local_auth_on_lambda).

GET /app/config (no token) tells the page how to sign in: {"auth": "local" | "cognito", "cognito":
{"domain", "client_id"} | null}. With a Cognito domain and app client configured the page offers
Cognito's managed login (authorization code + PKCE, the code exchanged by the page itself), and the
page's Content-Security-Policy lets it reach that domain's token endpoint.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, StringConstraints

from shelfwise.errors import InvalidInput, NotFound
from shelfwise.identity import issue_dev_token
from shelfwise.settings import Settings

PAGE_PATH = "/"
ASSETS_PATH = "/app/assets"
SIGN_IN_PATH = "/local/sign-in"
CONFIG_PATH = "/app/config"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# The assets change with a deploy: revalidate rather than trust a stale copy.
CACHE_CONTROL = "no-cache"
_HERE = Path(__file__).resolve().parent


def cognito_client_id(settings: Settings) -> str | None:
    """The page's app client: from the settings, else from SSM Parameter Store (cached like the
    model's key)."""
    if settings.cognito_client_id:
        return settings.cognito_client_id
    if not settings.cognito_client_id_parameter:
        return None
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_parameter(settings.cognito_client_id_parameter, max_age=settings.key_cache_seconds)
    return str(value).strip() or None


def page_config(settings: Settings) -> dict[str, object]:
    client_id = cognito_client_id(settings) if settings.cognito_domain else None
    cognito = (
        {"domain": settings.cognito_domain, "client_id": client_id}
        if settings.cognito_domain and client_id
        else None
    )
    return {"auth": settings.auth_mode, "cognito": cognito}


def security_headers(settings: Settings) -> dict[str, str]:
    """For the page and its assets: scripts and styles only from the app itself, no inline script,
    no framing, no referrer sent along; calls only to the app (and to the Cognito domain's token
    endpoint when one is configured)."""
    connect = "connect-src 'self'"
    if settings.cognito_domain:
        connect += f" https://{settings.cognito_domain}"
    csp = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            connect,
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@cache
def _page(auth_mode: str) -> str:
    return (_HERE / "index.html").read_text(encoding="utf-8").replace("{{AUTH_MODE}}", auth_mode)


def _stage_without_slash(request: Request) -> str | None:
    """On API Gateway, the last segment of the path the browser asked for when it lacks the trailing
    slash (`/Prod` for the page at `/`): the page must then be reached at `Prod/`."""
    event = request.scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    path = context.get("path") if isinstance(context, dict) else None
    if not isinstance(path, str) or not path.strip("/") or path.endswith("/"):
        return None
    return path.rsplit("/", 1)[1]


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    user: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    admin: bool = False


def install(app: FastAPI, settings: Settings) -> None:
    """Add the page, its assets and (local auth only) the sign-in route."""

    @app.get(PAGE_PATH, include_in_schema=False, response_model=None)
    async def chat_page(request: Request) -> HTMLResponse | RedirectResponse:
        if slashless := _stage_without_slash(request):
            # https://.../Prod would resolve the page's relative URLs against the host's root
            return RedirectResponse(f"{slashless}/", status_code=308, headers=security_headers(settings))
        return HTMLResponse(
            _page(settings.auth_mode),
            headers={**security_headers(settings), "Cache-Control": CACHE_CONTROL},
        )

    @app.get(CONFIG_PATH, include_in_schema=False)
    def chat_page_config() -> JSONResponse:
        """How the page signs in: local dev tokens, or Cognito's managed login (domain, client)."""
        return JSONResponse(
            page_config(settings),
            headers={**security_headers(settings), "Cache-Control": "no-store"},
        )

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def chat_page_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound(f"no page asset {name!r}")
        return FileResponse(
            _HERE / name,
            media_type=ASSETS[name],
            headers={**security_headers(settings), "Cache-Control": CACHE_CONTROL},
        )

    if settings.auth_mode != "local":
        return

    @app.post(SIGN_IN_PATH, include_in_schema=False)
    def local_sign_in(body: SignIn) -> dict[str, str]:
        """A dev token for `user` (an admin when asked): local auth only, never on Lambda."""
        try:
            token = issue_dev_token(settings, body.user, admin=body.admin)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="user") from exc
        return {"token": token}
