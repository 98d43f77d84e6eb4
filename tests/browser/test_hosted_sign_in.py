"""The chat page's sign-in with Cognito's managed login (authorization code + PKCE), in Chromium
against `make run`'s stack told a managed-login domain and app client. The domain is a stand-in
served by the browser test itself (the login page is Cognito's, not ours): its authorize endpoint
sends the browser back with a code, its token endpoint answers with an ID token the local stack
accepts (a dev token), the way Cognito answers with one API Gateway's authorizer accepts.

What is checked is what the page does: the PKCE parameters it sends (S256, a challenge that is the
hash of the verifier it later sends), the state it checks, the code gone from the address bar, the
token kept in the tab's sessionStorage and never in a URL, and Sign out ending the hosted session.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.browser.test_chat_page import ARTIFACTS, CHROMIUM
from tests.fixtures.local_stack import LocalStack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOMAIN = "login.shelfwise.test"
CLIENT_ID = "pageclient42"  # Cognito client ids are [\w+]+


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(
        data_dir=tmp_path_factory.mktemp("hosted-sign-in-data"),
        SHELFWISE_COGNITO_DOMAIN=DOMAIN,
        SHELFWISE_COGNITO_CLIENT_ID=CLIENT_ID,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class ManagedLogin:
    """The stand-in managed login: what the page sent to each endpoint."""

    def __init__(self, id_token: str) -> None:
        self.id_token = id_token
        self.authorize: list[dict[str, str]] = []
        self.token: list[dict[str, str]] = []
        self.logout: list[dict[str, str]] = []

    def handle(self, route: Route) -> None:
        request = route.request
        parsed = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if parsed.path == "/oauth2/authorize" and request.method == "GET":
            self.authorize.append(query)
            back = f"{query['redirect_uri']}?{urlencode({'code': 'the-code', 'state': query['state']})}"
            route.fulfill(status=302, headers={"Location": back})
        elif parsed.path == "/oauth2/token" and request.method == "POST":
            form = {k: v[0] for k, v in parse_qs(request.post_data or "").items()}
            self.token.append(form)
            origin = request.headers.get("origin", "")
            route.fulfill(
                status=200,
                headers={"Access-Control-Allow-Origin": origin, "Content-Type": "application/json"},
                body=json.dumps(
                    {"id_token": self.id_token, "access_token": "not-for-the-api", "token_type": "Bearer"}
                ),
            )
        elif parsed.path == "/logout":
            self.logout.append(query)
            route.fulfill(status=302, headers={"Location": query["logout_uri"]})
        else:
            route.fulfill(status=404, body="no such endpoint")


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _login(page: Page, stack: LocalStack, user: str) -> ManagedLogin:
    minted = httpx.post(f"{stack.url}/local/sign-in", json={"user": user})
    assert minted.status_code == 200, minted.text
    login = ManagedLogin(minted.json()["token"])
    page.route(f"https://{DOMAIN}/**", login.handle)
    return login


def _base64url_sha256(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


def test_sign_in_with_the_managed_login_uses_pkce_and_keeps_the_token_out_of_the_url(
    page: Page, stack: LocalStack
) -> None:
    login = _login(page, stack, "hosted-user")
    page.goto(stack.url + "/")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("Signed in as hosted-user")).to_be_visible()

    (sent,) = login.authorize
    page_url = stack.url + "/"
    assert sent["response_type"] == "code"
    assert sent["client_id"] == CLIENT_ID
    assert sent["redirect_uri"] == page_url
    assert set(sent["scope"].split()) == {"openid", "email", "profile"}
    assert sent["code_challenge_method"] == "S256"
    assert len(sent["state"]) >= 16
    (exchanged,) = login.token
    assert exchanged["grant_type"] == "authorization_code"
    assert exchanged["code"] == "the-code"
    assert exchanged["client_id"] == CLIENT_ID
    assert exchanged["redirect_uri"] == page_url
    verifier = exchanged["code_verifier"]
    assert 43 <= len(verifier) <= 128
    assert sent["code_challenge"] == _base64url_sha256(verifier)
    assert verifier not in json.dumps(sent), "the verifier itself never leaves before the exchange"

    # the code is gone from the address bar; the ID token is in sessionStorage, never in a URL
    assert page.url == page_url
    stored = page.evaluate("({...sessionStorage})")
    assert stored["shelfwise.token"] == login.id_token
    assert "shelfwise.pkce" not in stored
    # and the API takes it: the signed-in page works
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("textbox", name="Message", exact=True)).to_be_enabled()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    (ended,) = login.logout
    assert ended == {"client_id": CLIENT_ID, "logout_uri": page_url}
    assert page.evaluate("sessionStorage.getItem('shelfwise.token')") is None
    assert page.url == page_url


def test_a_code_that_did_not_start_in_this_tab_is_refused(page: Page, stack: LocalStack) -> None:
    login = _login(page, stack, "forged-user")
    page.goto(stack.url + "/?" + urlencode({"code": "stolen-code", "state": "forged"}))
    expect(page.get_by_role("alert")).to_contain_text("That sign-in did not start in this tab")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert login.token == [], "a code with a state this tab never made is never exchanged"
    assert page.url == stack.url + "/"
    assert page.evaluate("sessionStorage.getItem('shelfwise.token')") is None


def test_an_error_from_the_managed_login_is_explained(page: Page, stack: LocalStack) -> None:
    _login(page, stack, "denied-user")
    denied = {"error": "access_denied", "error_description": "User is disabled"}
    page.goto(stack.url + "/?" + urlencode(denied))
    expect(page.get_by_role("alert")).to_contain_text("Signing in did not complete: User is disabled.")
    assert page.url == stack.url + "/"
