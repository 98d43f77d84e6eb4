"""template.yaml declares every setting the functions read, and the `sam local --env-vars` files of
events/ set only declared variables: SAM silently drops a variable the template does not declare, so
a missing declaration would send a local invoke to AWS's DynamoDB or to OpenAI without a word."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import AliasChoices

from infra.local.template import ROOT, load_template
from shelfwise.settings import Settings

FUNCTIONS = ("ApiFunction", "ChatStreamFunction", "TitleFunction")
# Read by Settings but never meant to be configured: Lambda sets AWS_REGION itself (a reserved name
# that a template may not declare), and the version is the package's own.
NOT_DECLARED = {"AWS_REGION", "AWS_DEFAULT_REGION", "SHELFWISE_VERSION"}
# What a model call needs: declared only on the functions that call a model (ApiFunction calls none).
MODEL_SETTINGS = {
    "SHELFWISE_OPENAI_API_KEY",
    "SHELFWISE_OPENAI_API_KEY_PARAMETER",
    "SHELFWISE_OPENAI_API_KEY_SECRET",
    "SHELFWISE_OPENAI_BASE_URL",
    "SHELFWISE_MAIN_MODEL",
    "SHELFWISE_UTILITY_MODEL",
    "SHELFWISE_CHAT_MAX_COMPLETION_TOKENS",
    "SHELFWISE_SUMMARY_MAX_COMPLETION_TOKENS",
    "SHELFWISE_TITLE_MAX_COMPLETION_TOKENS",
    "SHELFWISE_LLM_TIMEOUT_SECONDS",
    "SHELFWISE_LLM_MAX_RETRIES",
    "SHELFWISE_LLM_FIRST_TOKEN_TIMEOUT_SECONDS",
    "SHELFWISE_LLM_RETRY_BUDGET_SECONDS",
    "SHELFWISE_KEY_CACHE_SECONDS",
}
ENV_FILES = ("env.local.json", "env.start-api.json")


def setting_variables() -> set[str]:
    """The SHELFWISE_ name of every field of Settings (its alias when it has several)."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices if str(choice).startswith("SHELFWISE_")}
        else:
            names.add(f"SHELFWISE_{field_name.upper()}")
    return names - NOT_DECLARED


def declared(function: str) -> dict[str, Any]:
    template = load_template()
    variables: dict[str, Any] = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
    variables.update(own)
    return variables


def test_settings_are_found() -> None:
    found = setting_variables()
    assert {"SHELFWISE_TABLE_NAME", "SHELFWISE_DYNAMODB_ENDPOINT_URL", "SHELFWISE_MAIN_MODEL"} <= found
    assert len(found) > 20


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_setting_is_declared(function: str) -> None:
    wanted = setting_variables()
    if function == "ApiFunction":
        wanted -= MODEL_SETTINGS
    missing = wanted - set(declared(function))
    assert not missing, f"{function} does not declare {sorted(missing)}"
    if function == "ApiFunction":
        assert not MODEL_SETTINGS & set(declared(function)), "ApiFunction calls no model"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_empty_declarations_leave_the_app_defaults(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS the declared "" values reach the app: they must mean "the default", not "" (an empty
    endpoint URL, a model named "") nor a validation error at the first request."""
    empty = [name for name, value in declared(function).items() if value == ""]
    assert "SHELFWISE_DYNAMODB_ENDPOINT_URL" in empty
    for name in setting_variables() | {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
        monkeypatch.delenv(name, raising=False)
    for name in empty:
        monkeypatch.setenv(name, "")
    assert Settings() == Settings.model_validate({})


@pytest.mark.parametrize("name", ENV_FILES)
def test_env_files_set_only_declared_variables(name: str) -> None:
    env = json.loads((ROOT / "events" / name).read_text())
    everywhere = env.pop("Parameters")
    assert all(isinstance(v, str) for v in everywhere.values())
    for variable in everywhere:
        assert any(variable in declared(f) for f in FUNCTIONS), f"no function declares {variable}"
    for function, variables in env.items():
        assert function in FUNCTIONS, function
        for variable in variables:
            assert variable in declared(function), f"{function} does not declare {variable}"


@pytest.mark.parametrize("name", ENV_FILES)
def test_env_files_point_at_make_run_lambda_mode(name: str) -> None:
    """The addresses `make run LAMBDA=1` serves on docker0 (infra/local/run.py)."""
    from infra.local import run

    env = json.loads((ROOT / "events" / name).read_text())["Parameters"]
    assert env["SHELFWISE_TABLE_NAME"] == run.TABLE_NAME
    assert env["SHELFWISE_DYNAMODB_ENDPOINT_URL"] == f"http://172.17.0.1:{run.LAMBDA_DB_PORT}"
    assert env["SHELFWISE_OPENAI_BASE_URL"] == f"http://172.17.0.1:{run.LAMBDA_OFFLINE_PORT}/v1"
    assert env["SHELFWISE_OPENAI_API_KEY_PARAMETER"] == "", "no SSM locally: the offline model takes any key"


def test_start_api_env_switches_api_function_to_dev_tokens() -> None:
    """`sam local start-api` runs no Cognito authorizer, so ApiFunction verifies dev tokens itself."""
    local = json.loads((ROOT / "events" / "env.local.json").read_text())
    start_api = json.loads((ROOT / "events" / "env.start-api.json").read_text())
    assert start_api["Parameters"] == local["Parameters"]
    assert start_api["ApiFunction"]["SHELFWISE_AUTH_MODE"] == "local"
    assert start_api["ApiFunction"]["SHELFWISE_LOCAL_SIGNING_KEY"]
    assert "ApiFunction" not in local, "invokes carry Cognito claims in their events: cognito mode"


def _resources_named(value: Any, resources: set[str]) -> set[str]:
    """The template resources an environment value refers to (`!Ref X`, `!GetAtt X.Y`, `${X}` in a Sub)."""
    import re

    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]} & resources
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return {(target[0] if isinstance(target, list) else target.split(".")[0])} & resources
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)} & resources
        return set().union(*(_resources_named(v, resources) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_resources_named(v, resources) for v in value))
    return set()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_what_sam_local_cannot_resolve_is_set_by_the_env_file(function: str) -> None:
    """`sam local` resolves a reference to a resource to its logical name (a table called "Table", a
    domain "UserPoolDomain.auth...."), which a setting may refuse: the whole function then fails. So
    every variable naming a resource is set by events/env.local.json (the file every local invoke
    passes), if only to "" (unset)."""
    resources = set(load_template()["Resources"])
    env = json.loads((ROOT / "events" / "env.local.json").read_text(encoding="utf-8"))
    given = {**env.get("Parameters", {}), **env.get(function, {})}
    naming = {name for name, value in declared(function).items() if _resources_named(value, resources)}
    assert naming, "the template names resources in environment variables (the table at least)"
    assert naming <= set(given), (
        f"{function}: events/env.local.json leaves {sorted(naming - set(given))} to sam local"
    )
