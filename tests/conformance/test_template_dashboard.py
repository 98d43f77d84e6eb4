"""The CloudWatch dashboard and alarms in template.yaml: every Shelfwise metric they show is one the
code emits (no widget for a metric nothing sends), with the dimensions the code gives it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.local.template import load_template

Template = dict[str, Any]

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
# How the code emits a metric: metrics.add_metric(name="X", ...) (dimension: service only) or
# observability.emit("X", ..., dimension=value) (service and the named dimensions).
_PLAIN = re.compile(r'add_metric\(\s*name="(\w+)"')
_DIMENSIONED = re.compile(r'emit\(\s*"(\w+)"(.*)')  # the rest of the line holds its keywords
_VARIABLE_NAME = re.compile(r"add_metric\(\s*name=(\w+)")


@pytest.fixture(scope="module")
def template() -> Template:
    loaded: Template = load_template()
    return loaded


def emitted() -> dict[str, set[str]]:
    """Metric name -> the dimensions (besides `service`) the code emits it with."""
    found: dict[str, set[str]] = {}
    for path in FUNCTIONS.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for name in _PLAIN.findall(source):
            found.setdefault(name, set())
        for name, rest in _DIMENSIONED.findall(source):
            found.setdefault(name, set()).update(re.findall(r"\b(\w+)=", rest))
    # stream_batch.py emits its failures metric by the name each consumer passes
    for consumer in ("titles.py", "purge.py"):
        source = (FUNCTIONS / "shelfwise" / "entry" / consumer).read_text(encoding="utf-8")
        for name in re.findall(r'failures_metric="(\w+)"', source):
            found.setdefault(name, set())
    return found


def dashboard(template: Template) -> dict[str, Any]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    text = body["Fn::Sub"] if isinstance(body, dict) else body
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def shown(template: Template) -> dict[str, set[str]]:
    """Shelfwise metric name -> the dimensions a widget reads it by (besides `service`)."""
    found: dict[str, set[str]] = {}
    for widget in dashboard(template)["widgets"]:
        for entry in widget["properties"]["metrics"]:
            if isinstance(entry, dict):  # SEARCH('{Shelfwise,service,model} MetricName="X"', ...)
                match = re.match(r"SEARCH\('\{Shelfwise,([\w,]+)\} MetricName=\"(\w+)\"", entry["expression"])
                assert match, entry
                dimensions = set(match.group(1).split(",")) - {"service"}
                found.setdefault(match.group(2), set()).update(dimensions)
            elif entry[0] == "Shelfwise":
                assert entry[2:4] == ["service", "shelfwise"], entry
                found.setdefault(entry[1], set())
    return found


def test_every_dashboard_metric_is_emitted_with_its_dimensions(template: Template) -> None:
    code = emitted()
    for name, dimensions in shown(template).items():
        assert name in code, f"the dashboard shows {name}, which nothing emits"
        assert dimensions <= code[name], f"{name} is read by {dimensions}, emitted with {code[name]}"


def test_the_dashboard_covers_what_an_operator_watches(template: Template) -> None:
    names = set(shown(template))
    assert {"TimeToFirstToken", "TurnLatency", "PromptTokens", "CompletionTokens", "CostUSD"} <= names
    assert {
        "TurnsInterrupted",
        "ToolCalls",
        "BudgetRejections",
        "TitleOutcomes",
        "StreamDisconnects",
        "FiguresChecked",
        "UnsupportedFigures",
    } <= names
    text = json.dumps(dashboard(template))
    for aws in ("AWS/ApiGateway", "AWS/Lambda", "AWS/SQS", "ConcurrentExecutions", "Throttles", "5XXError"):
        assert aws in text


def test_dimensions_are_bounded(template: Template) -> None:
    """Never a user id or a conversation id: a dimension multiplies the metrics billed."""
    for dimensions in emitted().values():
        assert dimensions <= {"model", "reason", "tool", "outcome"}, dimensions


def test_alarms_notify_the_alarm_topic(template: Template) -> None:
    alarms = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert {
        "ApiServerErrorsAlarm",
        "ChatStreamErrorsAlarm",
        "ThrottlesAlarm",
        "BudgetRejectionsAlarm",
    } <= set(alarms)
    assert {"TitleDLQAlarm", "PurgeDLQAlarm"} <= set(alarms)
    for name, props in alarms.items():
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }, name
        assert props["TreatMissingData"] == "notBreaching", name
    budget = alarms["BudgetRejectionsAlarm"]
    assert budget["Namespace"] == "Shelfwise"
    assert budget["MetricName"] in emitted()


def test_message_routes_are_throttled_and_concurrency_can_be_reserved(template: Template) -> None:
    settings = template["Resources"]["Api"]["Properties"]["MethodSettings"]
    throttled = {(s["ResourcePath"], s["HttpMethod"]) for s in settings if "ThrottlingRateLimit" in s}
    assert throttled == {
        ("/~1conversations~1{conversation_id}~1messages", "POST"),
        ("/~1conversations~1{conversation_id}~1messages~1{message_id}~1events", "GET"),
    }
    stream = template["Resources"]["ChatStreamFunction"]["Properties"]
    assert stream["ReservedConcurrentExecutions"]["Fn::If"][0] == "HasStreamReservedConcurrency"
    assert template["Parameters"]["ChatStreamReservedConcurrency"]["Default"] == ""
