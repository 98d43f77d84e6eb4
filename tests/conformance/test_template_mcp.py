"""MCP on AWS: POST /mcp a buffered route of ApiFunction behind the Cognito authorizer (taking the
user's access token), GET and DELETE answered by the app (405), the protected-resource document
public, API Gateway's own 401 naming that document, an app client for MCP clients (code + PKCE, no
secret, callback URLs a parameter), and ApiFunction told the user pool its document names."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.template import load_template, resource
from shelfwise.mcp import SCOPES as DOCUMENT_SCOPES
from shelfwise.mcp import cognito_issuer
from shelfwise.settings import Settings
from shelfwise.web.routers.mcp import METADATA_PATH

Template = dict[str, Any]
STAGE_URL = "https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/"
SCOPES = ["openid", "aws.cognito.signin.user.admin"]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


def _events() -> dict[str, Any]:
    events: dict[str, Any] = resource("ApiFunction")["Properties"]["Events"]
    return events


def test_the_mcp_routes_are_apifunctions_own() -> None:
    """Each its own route (API Gateway never falls back to /{proxy+} for a resource it has)."""
    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"]): e["Properties"].get("Auth")
        for e in _events().values()
        if e["Properties"]["Path"] in ("/mcp", METADATA_PATH)
    }
    assert routes == {
        ("/mcp", "POST"): {"Authorizer": "CognitoAuthorizer", "AuthorizationScopes": SCOPES},
        ("/mcp", "GET"): {"Authorizer": "NONE"},
        ("/mcp", "DELETE"): {"Authorizer": "NONE"},
        (METADATA_PATH, "GET"): {"Authorizer": "NONE"},
    }


def test_the_mcp_app_client_is_public_with_the_code_flow_and_pkce(template: Template) -> None:
    client = resource("McpClient")
    assert client["Type"] == "AWS::Cognito::UserPoolClient"
    props = client["Properties"]
    assert props["UserPoolId"] == {"Ref": "UserPool"}
    assert props["GenerateSecret"] is False  # an MCP client on a user's machine keeps no secret
    assert props["AllowedOAuthFlowsUserPoolClient"] is True
    assert props["AllowedOAuthFlows"] == ["code"]
    assert set(props["AllowedOAuthScopes"]) == {"openid", "email", "profile"}
    assert props["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]  # no password sign-in: the login page
    assert props["SupportedIdentityProviders"] == ["COGNITO"]
    assert props["CallbackURLs"] == {"Ref": "McpCallbackUrls"}
    assert props["PreventUserExistenceErrors"] == "ENABLED"
    parameter = template["Parameters"]["McpCallbackUrls"]
    assert parameter["Type"] == "CommaDelimitedList"
    assert all(u.startswith(("https://", "http://localhost")) for u in parameter["Default"].split(","))
    # the scopes the client grants are those the document advertises, and one POST /mcp accepts
    assert set(props["AllowedOAuthScopes"]) == set(DOCUMENT_SCOPES)
    assert set(props["AllowedOAuthScopes"]) & set(SCOPES)


def test_api_gateways_401_names_the_protected_resource_document() -> None:
    response = resource("UnauthorizedResponse")
    assert response["Type"] == "AWS::ApiGateway::GatewayResponse"
    props = response["Properties"]
    assert props["RestApiId"] == {"Ref": "Api"}
    assert (props["ResponseType"], props["StatusCode"]) == ("UNAUTHORIZED", "401")
    header = props["ResponseParameters"]["gatewayresponse.header.WWW-Authenticate"]
    assert header == {"Fn::Sub": f"'Bearer resource_metadata=\"{STAGE_URL}{METADATA_PATH.lstrip('/')}\"'"}
    assert props["ResponseTemplates"]["application/json"] == (
        '{"error": {"code": "unauthenticated", "message": $context.error.messageString}}'
    )


def test_api_function_is_told_the_user_pool(template: Template) -> None:
    env = resource("ApiFunction")["Properties"]["Environment"]["Variables"]
    assert env["SHELFWISE_COGNITO_USER_POOL_ID"] == {"Ref": "UserPool"}
    # a pool id as Cognito makes them is a setting the app accepts, and names its issuer
    settings = Settings(cognito_user_pool_id="eu-west-1_AbC123xyz")
    assert settings.cognito_user_pool_id is not None
    assert cognito_issuer(settings.cognito_user_pool_id) == (
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123xyz"
    )


def test_outputs_name_the_endpoint_the_client_and_the_document(template: Template) -> None:
    outputs = template["Outputs"]
    assert outputs["McpUrl"]["Value"] == {"Fn::Sub": f"{STAGE_URL}mcp"}
    assert outputs["McpClientId"]["Value"] == {"Ref": "McpClient"}
    assert outputs["McpResourceMetadataUrl"]["Value"] == {
        "Fn::Sub": f"{STAGE_URL}{METADATA_PATH.lstrip('/')}"
    }


def _rest_api_body(translated: Template) -> dict[str, Any]:
    body: dict[str, Any] = translated["Resources"]["Api"]["Properties"]["Body"]
    return body


@pytest.mark.slow
def test_translated_mcp_routes(translated: Template) -> None:
    paths = _rest_api_body(translated)["paths"]
    assert set(paths["/mcp"]) == {"post", "get", "delete"}
    assert paths["/mcp"]["post"]["security"] == [{"CognitoAuthorizer": SCOPES}]
    for method in ("get", "delete"):
        assert all("CognitoAuthorizer" not in s for s in paths["/mcp"][method].get("security", []))
    assert all("CognitoAuthorizer" not in s for s in paths[METADATA_PATH]["get"].get("security", []))
    for operation in (*paths["/mcp"].values(), paths[METADATA_PATH]["get"]):
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"  # buffered, ApiFunction
        assert "/functions/${ApiFunction.Arn}/invocations" in integration["uri"]["Fn::Sub"]
        assert "responseTransferMode" not in integration
    responses = [
        r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"
    ]
    assert [r["Properties"]["ResponseType"] for r in responses] == ["UNAUTHORIZED"]
