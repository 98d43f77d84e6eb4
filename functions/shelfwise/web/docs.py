"""The interactive API docs (Swagger UI at /docs), served entirely by the app: no CDN, so the page
works offline, and no token (a browser opening a page sends none; the spec is no secret, the data
stays behind the token).

The Swagger UI assets are the ones the aws-lambda-powertools package ships (already in the
dependency layer). Every URL on the page is relative to it, so it also works under API Gateway's
stage prefix (https://.../Prod/docs). ReDoc is off: FastAPI's ReDoc page needs a CDN and no package
here ships ReDoc.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import aws_lambda_powertools
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from shelfwise.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
# name served -> (file in Powertools' swagger_ui folder, content type)
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.min.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.min.css", "text/css; charset=utf-8"),
}
# The files change only with the Powertools version (the layer): a day in the browser's cache.
CACHE_CONTROL = "public, max-age=86400"


@cache
def _assets_dir() -> Path:
    return Path(aws_lambda_powertools.__file__).parent / "event_handler" / "openapi" / "swagger_ui"


def install(app: FastAPI) -> None:
    """Add /docs and its assets to an app created with `docs_url=None, redoc_url=None`."""
    assets = ASSETS_PATH.removeprefix("/")  # relative to the page, as the spec's URL is
    spec = (app.openapi_url or "/openapi.json").removeprefix("/")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec,
            title=f"{app.title} API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url="data:,",  # no icon rather than one from another host
            swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
        )

    @app.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
    async def swagger_ui_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFound(f"no docs asset {name!r}")
        filename, media_type = ASSETS[name]
        return FileResponse(
            _assets_dir() / filename, media_type=media_type, headers={"Cache-Control": CACHE_CONTROL}
        )
