"""The chat page's routes in process: the page and its assets carry their security headers and need
no token; the local sign-in route exists only with local auth."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from shelfwise.web.app import create_app
from tests.fixtures.app import make_settings


def _client(auth_mode: str) -> TestClient:
    return TestClient(create_app(make_settings("shelfwise-page-test", auth_mode=auth_mode)))


def test_the_page_and_its_assets_need_no_token_and_come_with_a_strict_policy() -> None:
    client = _client("local")
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "app/assets/app.js" in sources
    assert "app/assets/app.css" in sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//", "/"))], sources
    for response in (page, client.get("/app/assets/app.js"), client.get("/app/assets/app.css")):
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert "connect-src 'self'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/app/assets/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/app/assets/../__init__.py").status_code == 404
    assert client.get("/app/assets/index.html").status_code == 404


def test_local_sign_in_mints_a_working_token_only_with_local_auth() -> None:
    local = _client("local")
    token = local.post("/local/sign-in", json={"user": "alice", "admin": False}).json()["token"]
    assert local.get("/prompts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    refused = local.post("/local/sign-in", json={"user": "not a user id!"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_input"

    cognito = _client("cognito")
    assert cognito.post("/local/sign-in", json={"user": "alice"}).status_code == 404
    assert cognito.get("/").status_code == 200
    assert 'data-auth-mode="cognito"' in cognito.get("/").text
