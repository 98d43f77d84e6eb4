"""`/docs` works with no internet: the page and everything it loads come from the app itself, with
no token (a browser cannot send one when it opens a page), and relative to the page, so they also
resolve under API Gateway's stage prefix (https://.../Prod/docs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from shelfwise.web.app import create_app
from tests.fixtures.app import make_settings

PAGE = "http://testserver/docs"
STAGE_PAGE = "https://abc123.execute-api.eu-west-1.amazonaws.com/Prod/docs"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings("unused"))) as test_client:
        yield test_client


def _references(html: str) -> list[str]:
    """What the page makes the browser fetch: stylesheets, icons, scripts and the spec URL."""
    return re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(r"\burl: '([^']*)'", html)


def test_docs_page_loads_only_what_the_app_serves(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z]", page.text), "the page names another host"
    references = [ref for ref in _references(page.text) if not ref.startswith("data:")]
    kinds: dict[str, str] = {}
    for ref in references:
        url = urljoin(PAGE, ref)
        assert urlsplit(url).netloc == "testserver", ref
        answer = client.get(urlsplit(url).path)  # no Authorization header
        assert answer.status_code == 200, f"{ref}: {answer.status_code}"
        kinds[ref] = answer.headers["content-type"].split(";")[0]
        if kinds[ref] == "application/json":
            assert answer.json()["info"]["title"] == "shelfwise"
        if kinds[ref] == "text/javascript":
            assert "SwaggerUIBundle" in answer.text[:5000]
    assert sorted(kinds.values()) == ["application/json", "text/css", "text/javascript"], kinds


def test_docs_references_resolve_under_the_api_gateway_stage(client: TestClient) -> None:
    for ref in _references(client.get("/docs").text):
        if not ref.startswith("data:"):
            assert urljoin(STAGE_PAGE, ref).startswith(STAGE_PAGE.removesuffix("docs")), ref


def test_docs_assets_are_cacheable_and_nothing_else_is_served_from_there(client: TestClient) -> None:
    css = client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200
    assert "max-age" in css.headers["cache-control"]
    for name in ("__init__.py", "html.py", "..%2Fhtml.py", "swagger-ui-bundle.min.js.map"):
        assert client.get(f"/docs/assets/{name}").status_code == 404, name


def test_redoc_is_off_rather_than_a_blank_page(client: TestClient) -> None:
    # FastAPI's ReDoc page loads its bundle from a CDN and no package here ships ReDoc.
    assert client.get("/redoc").status_code == 404
