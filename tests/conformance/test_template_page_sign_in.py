"""The chat page's sign-in on AWS: Cognito's managed login (authorization code + PKCE) with the app
client of template.yaml, its callback and logout URLs parameters that default to the API's own stage
URL, a managed-login domain, and ApiFunction told the domain and where to read the client's id (it
cannot name the client itself: the client's callback URL names the API, which names ApiFunction)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.template import load_template, resource
from shelfwise.settings import Settings

Template = dict[str, Any]
STAGE_URL = "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/"
CLIENT_ID_PARAMETER = "/${AWS::StackName}/page-client-id"
STACK_ID = {"Ref": "AWS::StackId"}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def test_the_app_client_offers_the_code_flow_with_pkce_and_no_secret() -> None:
    client = resource("UserPoolClient")["Properties"]
    assert client["GenerateSecret"] is False  # a page cannot keep a secret: PKCE instead
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["AllowedOAuthFlows"] == ["code"]  # never the implicit flow (tokens in the URL)
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email", "profile"}
    assert client["SupportedIdentityProviders"] == ["COGNITO"]


@pytest.mark.parametrize(
    ("prop", "parameter", "condition"),
    [
        ("CallbackURLs", "PageCallbackUrls", "HasPageCallbackUrls"),
        ("LogoutURLs", "PageLogoutUrls", "HasPageLogoutUrls"),
    ],
)
def test_callback_and_logout_urls_are_parameters_defaulting_to_the_stage_url(
    template: Template, prop: str, parameter: str, condition: str
) -> None:
    declared = template["Parameters"][parameter]
    assert declared["Type"] == "CommaDelimitedList"
    assert declared["Default"] == ""
    assert template["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": [",", {"Ref": parameter}]}, ""]}]
    }
    value = resource("UserPoolClient")["Properties"][prop]
    assert value == {"Fn::If": [condition, {"Ref": parameter}, [{"Fn::Sub": STAGE_URL}]]}
    # the very URL the stack prints as ApiUrl, where the page is
    assert template["Outputs"]["ApiUrl"]["Value"] == {"Fn::Sub": STAGE_URL}


def test_the_managed_login_domain(template: Template) -> None:
    domain = resource("UserPoolDomain")
    assert domain["Type"] == "AWS::Cognito::UserPoolDomain"
    assert domain["Properties"]["UserPoolId"] == {"Ref": "UserPool"}
    prefix = template["Parameters"]["AuthDomainPrefix"]
    assert prefix["Default"] == ""
    pattern = re.compile(prefix["AllowedPattern"])
    for good in ("", "shelfwise-shop", "a1"):
        assert pattern.fullmatch(good), good
    for bad in ("Shop", "-shop", "shop-", "a" * 64, "shop.example"):
        assert not pattern.fullmatch(bad), bad
    # empty: derived from the stack's id, lowercase hex and hyphens, unique and valid as a prefix
    assert domain["Properties"]["Domain"] == {
        "Fn::If": [
            "HasAuthDomainPrefix",
            {"Ref": "AuthDomainPrefix"},
            {"Fn::Join": ["", ["shelfwise-", {"Fn::Select": [2, {"Fn::Split": ["/", STACK_ID]}]}]]},
        ]
    }
    assert len("shelfwise-") + 36 <= 63
    assert template["Outputs"]["SignInDomain"]["Value"] == {
        "Fn::Sub": "https://${UserPoolDomain}.auth.${AWS::Region}.amazoncognito.com"
    }


def test_api_function_knows_the_domain_and_reads_the_client_id_from_the_stack_parameter() -> None:
    function = resource("ApiFunction")["Properties"]
    env = function["Environment"]["Variables"]
    assert env["SHELFWISE_COGNITO_DOMAIN"] == {
        "Fn::Sub": "${UserPoolDomain}.auth.${AWS::Region}.amazoncognito.com"
    }
    assert env["SHELFWISE_COGNITO_CLIENT_ID_PARAMETER"] == {"Fn::Sub": CLIENT_ID_PARAMETER}
    assert "SHELFWISE_COGNITO_CLIENT_ID" not in env, "naming the client here is a circular dependency"
    parameter = resource("PageClientIdParameter")
    assert parameter["Type"] == "AWS::SSM::Parameter"
    assert parameter["Properties"]["Name"] == {"Fn::Sub": CLIENT_ID_PARAMETER}
    assert parameter["Properties"]["Value"] == {"Ref": "UserPoolClient"}
    assert parameter["Properties"]["Type"] == "String"
    grants = [
        statement
        for policy in function["Policies"]
        for statement in policy["Statement"]
        if "ssm:GetParameter" in statement["Action"]
    ]
    assert grants == [
        {
            "Sid": "PageClientId",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": {
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
                + CLIENT_ID_PARAMETER
            },
        }
    ]
    # what the function is told fits what the app accepts
    settings = Settings(
        cognito_domain="shelfwise-0f1e2d3c-4b5a-6978-8899-aabbccddeeff.auth.eu-west-1.amazoncognito.com",
        cognito_client_id_parameter="/shelfwise-prod/page-client-id",
    )
    assert settings.cognito_domain
    assert settings.cognito_client_id is None


def _references(node: Any) -> Iterator[str]:
    """Every logical id a piece of CloudFormation names (Ref, GetAtt, ${...} in Sub)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield (value[0] if isinstance(value, list) else str(value).split(".", 1)[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                bound = set(value[1]) if isinstance(value, list) else set()
                for name in re.findall(r"\$\{([^}!]+)\}", text):
                    name = name.split(".", 1)[0]
                    if name not in bound:
                        yield name
                if isinstance(value, list):
                    yield from _references(value[1])
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


@pytest.mark.slow
def test_the_translated_stack_has_no_circular_dependency(translated: Template) -> None:
    """CloudFormation refuses a template whose resources depend on each other in a circle; the
    linters do not see one through the API's generated body, so walk the graph here."""
    resources = translated["Resources"]
    graph: dict[str, set[str]] = {}
    for name, body in resources.items():
        depends = body.get("DependsOn", [])
        named = set(_references(body.get("Properties", {}))) | set(_as_list(depends))
        graph[name] = {n for n in named if n in resources}
    # the edges that make the circle if ApiFunction named the client
    assert "UserPoolClient" in graph["PageClientIdParameter"]
    assert "Api" in graph["UserPoolClient"]
    assert "ApiFunction" in graph["Api"]

    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("circular dependency: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
