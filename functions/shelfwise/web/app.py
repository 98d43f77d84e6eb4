"""The FastAPI application: the same app under uvicorn locally and under Mangum on Lambda."""

from __future__ import annotations

from fastapi import FastAPI

from shelfwise import __version__
from shelfwise.identity import refuse_local_auth_on_lambda
from shelfwise.services import Services
from shelfwise.settings import Settings, get_settings
from shelfwise.web import docs, errors, page
from shelfwise.web.routers import conversations, health, inventory, mcp, titles


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the app. Settings are read here (not at import); storage clients on first use.
    `services` lets a caller (tests, the local runner) hand in an already wired composition root."""
    settings = services.settings if services else (settings or get_settings())
    refuse_local_auth_on_lambda(settings)  # dev tokens never on Lambda itself: a failed init instead
    app = FastAPI(
        title="shelfwise",
        version=__version__,
        summary="Retail inventory API with a chat assistant that can see the stock",
        docs_url=None,  # web.docs serves /docs with its own assets (no CDN)
        redoc_url=None,
    )
    app.state.services = services or Services(settings)
    errors.install(app)
    docs.install(app)
    page.install(app, settings)  # the chat page at / (and POST /local/sign-in with local auth)
    app.include_router(health.router)
    app.include_router(inventory.router)
    app.include_router(conversations.router)
    app.include_router(titles.router)
    app.include_router(mcp.router)  # POST /mcp: the inventory tools over MCP
    return app
