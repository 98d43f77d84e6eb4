"""The chat page's routes in process: the page and its assets carry their security headers and need
no token; the local sign-in route exists only with local auth; GET /app/config tells the page how
to sign in (and the policy lets it reach the managed login's token endpoint only when there is one)."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

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


def _get_page_on_api_gateway(request_context_path: str) -> tuple[int, dict[str, str]]:
    """GET / as Mangum hands it over from API Gateway (the event in the scope)."""
    app = create_app(make_settings("shelfwise-page-test", auth_mode="cognito"))
    scope: MutableMapping[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.example")],
        "server": ("api.example", 443),
        "client": ("203.0.113.1", 1),
        "aws.event": {"requestContext": {"path": request_context_path, "stage": "Prod"}},
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_the_page_without_the_stages_trailing_slash_redirects_to_it() -> None:
    status, headers = _get_page_on_api_gateway("/Prod")
    assert status == 308
    assert headers["location"] == "Prod/"  # relative: https://.../Prod -> https://.../Prod/
    status, headers = _get_page_on_api_gateway("/Prod/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")


DOMAIN = "shelfwise-test.auth.eu-west-1.amazoncognito.com"


def test_the_page_config_says_how_to_sign_in_and_needs_no_token() -> None:
    local = _client("local").get("/app/config")
    assert local.status_code == 200
    assert local.json() == {"auth": "local", "cognito": None}
    assert local.headers["cache-control"] == "no-store"

    bare = _client("cognito")  # no managed login configured: the page offers no hosted sign-in
    assert bare.get("/app/config").json() == {"auth": "cognito", "cognito": None}
    assert "connect-src 'self';" in bare.get("/").headers["content-security-policy"]

    hosted = TestClient(
        create_app(
            make_settings(
                "shelfwise-page-test",
                auth_mode="cognito",
                cognito_domain=DOMAIN,
                cognito_client_id="client123",
            )
        )
    )
    config = hosted.get("/app/config")
    assert config.status_code == 200
    assert config.json() == {"auth": "cognito", "cognito": {"domain": DOMAIN, "client_id": "client123"}}
    # the page may call the token endpoint of that domain, and nothing else outside the app
    for response in (hosted.get("/"), hosted.get("/app/assets/app.js"), config):
        csp = response.headers["content-security-policy"]
        assert f"connect-src 'self' https://{DOMAIN};" in csp
        assert "unsafe-inline" not in csp


def test_the_page_client_id_is_read_from_the_stacks_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS the function is told the parameter, not the client (template.yaml: a circle otherwise)."""
    from moto import mock_aws

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        import boto3

        boto3.client("ssm", region_name="eu-west-1").put_parameter(
            Name="/shelfwise-page-test/page-client-id", Value="fromssm42", Type="String"
        )
        settings = make_settings(
            "shelfwise-page-test",
            auth_mode="cognito",
            cognito_domain=DOMAIN,
            cognito_client_id_parameter="/shelfwise-page-test/page-client-id",
        )
        client = TestClient(create_app(settings))
        assert client.get("/app/config").json()["cognito"] == {"domain": DOMAIN, "client_id": "fromssm42"}


def test_the_cognito_settings_refuse_what_is_not_a_host_or_a_client_id() -> None:
    for domain in ("https://x.auth.eu-west-1.amazoncognito.com", "x/y", "x.example.com;script-src *", "-x.y"):
        with pytest.raises(ValidationError):
            make_settings("t", cognito_domain=domain)
    with pytest.raises(ValidationError):
        make_settings("t", cognito_client_id="a b")
